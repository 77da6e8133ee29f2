//! `magnetar check`: everything `run` validates before it subscribes, without the broker.

use std::path::Path;
use std::process::ExitCode;

use crate::config::ConfigErrors;
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
                errors.push(format!("stages[{index}].plugin"), format!("{error:#}"), None);
                continue;
            }
        };
        let spec = stage_spec(stage);
        for problem in grants::check_imports(runtime.engine(), &component, &stage.name, &spec.grants) {
            errors.push(format!("stages[{index}].grants"), problem, None);
        }
    }
    if !errors.is_empty() {
        eprintln!("{} has {} problem(s):\n{errors}", file.display(), errors.len());
        return Ok(ExitCode::FAILURE);
    }

    println!("{}: valid, {} stage(s)", file.display(), pipeline.stages.len());
    for stage in &pipeline.stages {
        let grants: Vec<&str> = stage.grants.iter().map(|grant| grant.interface_name()).collect();
        println!("  {}: {} [{}]", stage.name, stage.plugin.display(), grants.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
