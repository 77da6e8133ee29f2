//! `magnetar check`: everything `run` validates before it subscribes, without the broker.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{ConfigErrors, StageConfig, StageInputs, UNREAD_DEAD_LETTERS_ADVICE};
use crate::pipeline::stage_spec;
use crate::runtime::{Runtime, grants};

/// Validate `file` and every plugin it names. Prints all problems, or a summary when valid.
pub async fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let pipeline = match crate::config::load(file) {
        Ok(pipeline) => pipeline,
        Err(errors) => {
            eprintln!("{} has {} problem(s):\n{errors}", file.display(), errors.len());
            return Ok(ExitCode::FAILURE);
        }
    };

    let runtime = Runtime::new(Runtime::default_cache_dir())?;
    let mut errors = ConfigErrors::new();
    for (index, stage) in pipeline.stages.iter().enumerate() {
        let component = match runtime.load_component(&stage.plugin) {
            Ok(component) => component,
            Err(error) => {
                let path = format!("stages[{index}].plugin");
                errors.push_at(&path, stage.plugin_location, format!("{error:#}"), None);
                continue;
            }
        };
        let spec = stage_spec(stage);
        for problem in grants::check_imports(runtime.engine(), &component, &stage.name, &spec.grants) {
            errors.push_at(&format!("stages[{index}].grants"), stage.grants_location, problem, None);
        }
    }
    if !errors.is_empty() {
        eprintln!("{} has {} problem(s):\n{errors}", file.display(), errors.len());
        return Ok(ExitCode::FAILURE);
    }

    println!("{}: valid, {} stage(s)", file.display(), pipeline.stages.len());
    for stage in &pipeline.stages {
        print_stage(stage);
    }
    for stage in pipeline.stages_with_unread_dead_letters() {
        println!(
            "warning: no stage of this pipeline reads `{}`, the dead letter topic of stage `{}`; \
             {UNREAD_DEAD_LETTERS_ADVICE}",
            stage.dead_letter, stage.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a stage's plugin, grants and topics, defaults included, so the topics that a
/// default names can be read before the host creates them.
fn print_stage(stage: &StageConfig) {
    let grants: Vec<&str> = stage.grants.iter().map(|grant| grant.interface_name()).collect();
    println!("  {}: {} [{}]", stage.name, stage.plugin.display(), grants.join(", "));

    let inputs = match &stage.inputs {
        StageInputs::Topics(topics) => topics.join(", "),
        StageInputs::Pattern(pattern) => format!("topics of {} matching {}", pattern.namespace, pattern.regex),
    };
    println!(
        "    consumes {inputs} as subscription {} ({})",
        stage.subscription,
        stage.subscription_type.name()
    );
    for (output, topic) in &stage.outputs {
        println!("    output {output}: {topic}");
    }
    println!("    retry topic: {}", stage.retry_topic);
    match &stage.dead_letter_subscription {
        Some(subscription) => {
            println!("    dead letter topic: {} (kept for subscription {subscription})", stage.dead_letter)
        }
        None => println!("    dead letter topic: {}", stage.dead_letter),
    }
}
