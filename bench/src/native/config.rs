//! The store-movies config of pipeline.yaml, compiled into the binary and parsed by
//! db-writer's own `Config::parse`, so that both pipelines map fields to columns alike.

use anyhow::Context as _;
use db_writer::config::Config;
use serde::Deserialize;

/// The content of pipeline.yaml at build time. Cargo rebuilds the bench when it changes.
const PIPELINE_YAML: &str = include_str!("../../../pipeline.yaml");

/// The stage whose `config` section the store stage uses.
const STORE_STAGE: &str = "store-movies";

/// The part of pipeline.yaml read here. Other keys are ignored, because the host checks them.
#[derive(Deserialize)]
struct Pipeline {
    stages: Vec<StageEntry>,
}

#[derive(Deserialize)]
struct StageEntry {
    name: String,
    config: Option<serde_json::Value>,
}

/// Parses the `config` section of the store-movies stage in the compiled-in pipeline.yaml.
///
/// The section reaches db-writer as JSON, as the host's `config::get-json` passes it. Unlike
/// the host, this does not replace `${VAR}` references, and rejects a section that has one.
pub fn store_movies() -> anyhow::Result<Config> {
    let pipeline: Pipeline =
        serde_saphyr::from_str(PIPELINE_YAML).context("pipeline.yaml is not valid YAML")?;
    let stage = pipeline
        .stages
        .into_iter()
        .find(|stage| stage.name == STORE_STAGE)
        .with_context(|| format!("pipeline.yaml has no stage named {STORE_STAGE}"))?;
    let section = stage
        .config
        .with_context(|| format!("stage {STORE_STAGE} in pipeline.yaml has no config section"))?;
    let json = section.to_string();
    anyhow::ensure!(
        !json.contains("${"),
        "stage {STORE_STAGE} in pipeline.yaml uses a ${{VAR}} reference in its config, which \
         the native pipeline does not replace"
    );

    Config::parse(&json)
        .map_err(|error| anyhow::anyhow!("stage {STORE_STAGE} in pipeline.yaml: {error}"))
}
