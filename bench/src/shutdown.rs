//! Shutdown on SIGINT or SIGTERM, shared by every task through a `watch` channel.

use tokio::sync::watch;

/// Sets `stop` to true on the first SIGINT or SIGTERM, and exits the process at once on the
/// second.
pub async fn wait_for_signals(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};

    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("failed to install signal handlers; stop the benchmark with SIGKILL");
        // Keeps `stop` alive, so that no task takes the closed channel for a shutdown.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutdown signal received; stopping (send it again to exit at once)");
    let _ = stop.send(true);

    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tracing::warn!("second shutdown signal; exiting without writing the stats file");
    std::process::exit(130);
}

/// Waits until shutdown starts.
///
/// Unlike `watch::Receiver::wait_for`, the future's output borrows nothing from the channel,
/// so it can be a branch of a `select!` whose handlers await.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        // The sender lives as long as the process, so this is not reached.
        std::future::pending::<()>().await;
    }
}
