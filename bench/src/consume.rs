//! The plain consumer: what a user of the `pulsar` crate writes to drain a topic, and so the
//! broker-bound limit that Magnetar's own overhead is measured against.
//!
//! One Shared consumer receives each message, acknowledges it individually right away, and
//! records its latency. It does nothing else: no payload parsing, no batch tracking, and no
//! rebuilding of the consumer when its stream ends.

use std::path::PathBuf;

use futures::StreamExt as _;
use pulsar::SubType;
use tokio::sync::watch;

use crate::broker;
use crate::shutdown::stopped;
use crate::stats::{self, Stats};

#[derive(clap::Args)]
pub struct ConsumeArgs {
    /// Broker service URL.
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    broker: String,
    /// Topic to consume, such as `bench-in` or `persistent://public/default/bench-in`.
    #[arg(long)]
    topic: String,
    /// Subscription name. The subscription is Shared and starts at the earliest message.
    #[arg(long)]
    subscription: String,
    /// JSON file that receives the message count and latency percentiles every second and
    /// at the end.
    #[arg(long)]
    stats: PathBuf,
}

/// Consumes until `shutdown` turns true, then writes the stats file and closes the consumer.
pub async fn run(args: ConsumeArgs, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let pulsar = broker::connect(&args.broker).await?;
    let mut consumer = broker::subscribe(
        &pulsar,
        &args.topic,
        &args.subscription,
        SubType::Shared,
        "magnetar-bench-consume",
    )
    .await?;
    tracing::info!(topic = %args.topic, subscription = %args.subscription, "consumer started");

    let mut stats = Stats::new(args.stats);
    stats.write()?;
    let mut write_stats = tokio::time::interval(stats::WRITE_INTERVAL);
    let mut stream_ended = false;

    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            _ = write_stats.tick() => stats.write_or_log(),
            next = consumer.next() => match next {
                Some(Ok(message)) => {
                    let publish_time = message.metadata().publish_time;
                    match consumer.ack(&message).await {
                        Ok(()) => stats.record(publish_time),
                        Err(error) => tracing::warn!(%error, "failed to acknowledge a message; the broker will redeliver it"),
                    }
                }
                Some(Err(error)) => tracing::warn!(%error, "failed to receive a message"),
                None => {
                    stream_ended = true;
                    break;
                }
            },
        }
    }

    stats.write()?;
    if let Err(error) = consumer.close().await {
        tracing::warn!(%error, "failed to close the consumer");
    }
    tracing::info!(processed = stats.processed(), "consumer stopped");
    anyhow::ensure!(
        !stream_ended,
        "the consumer stream ended, because the connection to the broker was lost and could \
         not be restored; the stats file holds the messages acknowledged before that"
    );
    Ok(())
}
