//! The `magnetar` command: run, check and test pipelines, and produce messages to topics.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "magnetar", version, about = "Runs pipelines of sandboxed WebAssembly components over Apache Pulsar")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Subscribe to the pipeline's topics and run its stages until SIGINT or SIGTERM.
    Run {
        /// Pipeline file.
        #[arg(default_value = "pipeline.yaml")]
        file: PathBuf,
        /// Seconds that in-flight messages get to finish after a shutdown signal.
        #[arg(long, default_value_t = magnetar::pipeline::DEFAULT_GRACE.as_secs())]
        grace: u64,
    },
    /// Validate the pipeline file and its plugins without touching the broker.
    Check {
        /// Pipeline file.
        #[arg(default_value = "pipeline.yaml")]
        file: PathBuf,
    },
    /// Run a plugin on messages from a file and print each outcome and capability call.
    Test(magnetar::cli_test::TestArgs),
    /// Publish the records of a JSON, JSON Lines or CSV file to a topic.
    Produce(magnetar::produce::ProduceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(match cli.command {
        Command::Produce(_) => PRODUCE_LOG_FILTER,
        _ => DEFAULT_LOG_FILTER,
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };

    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { file, grace } => run(file, Duration::from_secs(grace)).await,
            Command::Check { file } => magnetar::check::check(&file).await,
            Command::Test(args) => magnetar::cli_test::run(args).await,
            Command::Produce(args) => magnetar::produce::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(file: PathBuf, grace: Duration) -> anyhow::Result<ExitCode> {
    let pipeline = match magnetar::config::load(&file) {
        Ok(pipeline) => pipeline,
        Err(errors) => {
            eprintln!("{} has {} problem(s):\n{errors}", file.display(), errors.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(wait_for_signals(stop));
    tracing::info!(file = %file.display(), stages = pipeline.stages.len(), "starting pipeline");
    magnetar::pipeline::run(pipeline, shutdown, grace).await?;
    Ok(ExitCode::SUCCESS)
}

/// First SIGINT or SIGTERM: stop pulling and drain. Second: exit at once.
async fn wait_for_signals(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        tracing::error!("failed to install signal handlers; stop the host with SIGKILL");
        // Dropping `stop` would close the channel, which the stages read as a shutdown.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutdown signal received; finishing in-flight messages (send it again to exit at once)");
    let _ = stop.send(true);
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tracing::warn!("second shutdown signal; exiting without draining");
    std::process::exit(130);
}

/// Log filter when `RUST_LOG` is unset. The pulsar crate 6.9 logs a warning before every
/// subscribe and producer attempt, the first included, and reports a failed attempt as an
/// error, so its `retry_op` module is shown from the error level up.
const DEFAULT_LOG_FILTER: &str = "info,pulsar::retry_op=error";

/// Log filter of `magnetar produce` when `RUST_LOG` is unset: a command-line tool whose
/// output is its report, so the client's connection messages are left out.
const PRODUCE_LOG_FILTER: &str = "info,pulsar=warn,pulsar::retry_op=error";

/// Log to stderr through `tracing`, filtered by `RUST_LOG` (default `default_filter`), and
/// bridge the `log` records that the pulsar crate emits.
fn init_logging(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}
