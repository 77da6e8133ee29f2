//! `magnetar-bench`: the baselines that Magnetar is measured against, run on the same broker.
//!
//! # Layout
//!
//! - [`consume`]: the plain `pulsar` crate consumer, the broker-bound limit of the machine.
//! - [`native`]: the movie pipeline of `pipeline.yaml` (store-movies and notify) written in
//!   plain Rust, without wasm.
//! - [`stats`]: the latency histogram and the stats file that both commands write.
//! - [`broker`]: the broker connection and the message fields both commands read.
//! - [`shutdown`]: SIGINT and SIGTERM handling.
//!
//! Both commands run until SIGINT or SIGTERM, then write their stats file a last time and
//! exit 0. A second signal exits at once.

mod broker;
mod consume;
mod native;
mod shutdown;
mod stats;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "magnetar-bench",
    version,
    about = "Benchmark baselines for Magnetar on a running Pulsar broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume a topic with one Shared consumer that acknowledges each message as it arrives.
    Consume(consume::ConsumeArgs),
    /// Run the movie pipeline (store, then notify) natively, without wasm.
    NativePipeline(native::NativeArgs),
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };

    let result = runtime.block_on(async {
        let (stop, stopping) = watch::channel(false);
        tokio::spawn(shutdown::wait_for_signals(stop));
        match cli.command {
            Command::Consume(args) => consume::run(args, stopping).await,
            Command::NativePipeline(args) => native::run(args, stopping).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`). The `log`
/// records of the pulsar crate reach the same output.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
