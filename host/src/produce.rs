//! `magnetar produce`: publish the records of a file to a topic.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ProduceArgs {}

pub async fn run(_args: ProduceArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
