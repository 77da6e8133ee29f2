//! Sending messages to the broker at a limited rate and waiting for every receipt.

use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt as _;
use futures::stream::{FuturesUnordered, StreamExt as _};
use indicatif::ProgressBar;
use pulsar::{
    Authentication, ConnectionRetryOptions, Producer, ProducerOptions, Pulsar, TokioExecutor,
};
use tokio::time::Instant;

use super::input::{Position, Problem};

/// Messages per batch. The broker stores a batch as one entry, so batching cuts the
/// per-message cost of a large file.
pub const BATCH_SIZE: u32 = 100;

/// Bytes after which a batch is sent even with fewer than [`BATCH_SIZE`] messages. This is the
/// Java client's default (`batchingMaxBytes`, 128 KiB), well under the broker's 5 MiB default
/// `maxMessageSize`, which a batch must not exceed.
pub const BATCH_MAX_BYTES: usize = 128 * 1024;

/// Time after the first message of a batch when the batch is sent even if it is not full.
/// It bounds the delay that batching adds when `--rate` is low.
pub const BATCH_DELAY: Duration = Duration::from_millis(10);

/// Messages handed to the producer whose receipts have not arrived yet. Past this, sending
/// waits for receipts, so memory stays bounded on large files.
const MAX_PENDING: usize = 1000;

/// Broker connection attempts after the first failed one. The waits double from 100 ms to
/// 1.6 s, and the crate adds a random 0-900 ms to each. So a missing broker is reported after
/// 3 to 8 s, where the crate's defaults (12 retries, up to 30 s apart) take minutes.
const CONNECT_RETRIES: u32 = 5;

/// One message ready to send.
pub struct Outgoing {
    pub position: Position,
    pub payload: String,
    pub key: Option<String>,
}

/// Outcome of the messages handed to the producer.
pub struct Delivery {
    pub confirmed: usize,
    /// Messages that failed to send or whose receipt reported an error, in file order.
    pub unconfirmed: Vec<Problem>,
}

/// Connects to the broker at `url`, with token authentication when `token` is given.
pub async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<Pulsar<TokioExecutor>> {
    let retries = ConnectionRetryOptions {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        max_retries: CONNECT_RETRIES,
        ..ConnectionRetryOptions::default()
    };
    let mut builder = Pulsar::builder(url, TokioExecutor).with_connection_retry_options(retries);
    if let Some(token) = token {
        builder = builder.with_auth(Authentication {
            name: "token".to_owned(),
            data: token.as_bytes().to_vec(),
        });
    }

    builder.build().await.with_context(|| {
        format!(
            "failed to connect to the Pulsar broker at {url}. Check that it is running, or start \
             a local one with `scripts/pulsar-standalone start`"
        )
    })
}

/// Creates a producer for `topic`, batching messages when `batching` is set.
pub async fn create_producer(
    pulsar: &Pulsar<TokioExecutor>,
    topic: &str,
    batching: bool,
) -> anyhow::Result<Producer<TokioExecutor>> {
    let options = ProducerOptions {
        batch_size: batching.then_some(BATCH_SIZE),
        batch_byte_size: batching.then_some(BATCH_MAX_BYTES),
        batch_timeout: batching.then_some(BATCH_DELAY),
        // Wait for room in the client's outbound queue instead of failing with `SlowDown`.
        block_queue_if_full: true,
        ..ProducerOptions::default()
    };

    pulsar
        .producer()
        .with_topic(topic)
        .with_options(options)
        .build()
        .await
        .with_context(|| format!("failed to create a producer for topic {topic}"))
}

/// Settings that apply to every message of a run.
pub struct SendSettings<'a> {
    /// Properties added to every message.
    pub properties: &'a [(String, String)],
    /// Maximum messages per second, or 0 for no limit.
    pub rate: f64,
    /// Whether the producer was created with batching.
    pub batching: bool,
}

/// Sends `messages` in order and waits for the broker's receipt of every one. `progress`
/// advances once per message, when its receipt arrives or its sending fails.
pub async fn send_all(
    producer: &mut Producer<TokioExecutor>,
    messages: Vec<Outgoing>,
    settings: &SendSettings<'_>,
    progress: &ProgressBar,
) -> Delivery {
    let mut delivery = Delivery {
        confirmed: 0,
        unconfirmed: Vec::new(),
    };
    let mut pending = FuturesUnordered::new();
    let start = Instant::now();

    for (index, message) in messages.into_iter().enumerate() {
        // Message `index` leaves no earlier than `index / rate` seconds after the first one.
        if settings.rate > 0.0 {
            let offset = Duration::from_secs_f64(index as f64 / settings.rate);
            tokio::time::sleep_until(start + offset).await;
        }

        let mut builder = producer.create_message().with_content(message.payload);
        if let Some(key) = message.key {
            builder = builder.with_key(key);
        }
        for (name, value) in settings.properties {
            builder = builder.with_property(name, value);
        }
        let position = message.position;
        match builder.send_non_blocking().await {
            Ok(receipt) => pending.push(receipt.map(move |result| (position, result))),
            Err(error) => {
                tracing::debug!(%position, %error, "failed to send a message");
                delivery.unconfirmed.push(Problem {
                    position,
                    reason: format!("not sent: {error}"),
                });
                progress.inc(1);
            }
        }

        // Count the receipts that have arrived, and wait for some when too many are open.
        while pending.len() >= MAX_PENDING {
            if let Some(receipt) = pending.next().await {
                settle(&mut delivery, receipt, progress);
            }
        }
        while let Some(Some(receipt)) = pending.next().now_or_never() {
            settle(&mut delivery, receipt, progress);
        }
    }

    // Send the last, partly filled batch now instead of after `BATCH_DELAY`.
    if settings.batching
        && let Err(error) = producer.send_batch().await
    {
        tracing::debug!(%error, "failed to flush the last batch, so it is sent after its timeout");
    }
    while let Some(receipt) = pending.next().await {
        settle(&mut delivery, receipt, progress);
    }

    delivery
        .unconfirmed
        .sort_by_key(|problem| problem.position.line());
    delivery
}

fn settle(
    delivery: &mut Delivery,
    (position, result): (
        Position,
        Result<pulsar::proto::CommandSendReceipt, pulsar::Error>,
    ),
    progress: &ProgressBar,
) {
    match result {
        Ok(_) => delivery.confirmed += 1,
        Err(error) => {
            tracing::debug!(%position, %error, "the broker did not confirm a message");
            delivery.unconfirmed.push(Problem {
                position,
                reason: format!("not confirmed by the broker: {error}"),
            });
        }
    }
    progress.inc(1);
}
