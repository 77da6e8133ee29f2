//! One stage: a consumer loop, its workers, and the acknowledgement of what they finish.
//!
//! The loop owns the consumer, so pulling, acknowledging, stats writes and shutdown are
//! branches of one `select!`. A worker handles a message, publishes its output or its dead
//! letter, waits for the broker's receipt, and only then reports the message finished.
//! Transient failures are retried in place with backoff. Magnetar instead moves them
//! through a retry topic, which frees the worker for other messages during the backoff.

use std::future::Future;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use pulsar::producer::Message as Outbound;
use pulsar::{Consumer, TokioExecutor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::batches::{Batches, Finished};
use super::publish::{self, Publisher};
use crate::broker::Received;
use crate::shutdown::stopped;
use crate::stats::{self, Stats};

/// The failure of a message, whose kind decides whether a retry may help.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// A dependency is unavailable: retry later.
    Transient(String),
    /// The message cannot succeed: dead-letter it.
    Permanent(String),
}

/// The work of a stage on one message.
pub trait Handler: Send + Sync + 'static {
    /// Handles `message` and returns the message to publish to the stage's output, if any.
    fn handle(
        &self,
        message: &Received,
    ) -> impl Future<Output = Result<Option<Outbound>, Failure>> + Send;
}

/// Attempts per message and the backoff between them, which doubles after each attempt.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Retry {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// The way the loop hands messages to workers.
#[derive(Debug, Clone, Copy)]
pub enum Dispatch {
    /// Up to `parallelism` messages at once, in any order.
    Unordered { parallelism: usize },
    /// `lanes` workers, each handling its messages one at a time. Messages with the same key
    /// always go to the same lane, so they are handled in order, as Magnetar does for
    /// Key_Shared subscriptions.
    ByKey { lanes: usize },
}

/// Everything the workers of one stage share.
pub struct Stage<H> {
    pub name: &'static str,
    pub handler: H,
    pub output: Option<Arc<Publisher>>,
    pub dead_letter: Arc<Publisher>,
    pub retry: Retry,
    pub shutdown: watch::Receiver<bool>,
    pub dead_lettered: AtomicU64,
}

/// The outcome of a worker, which decides whether the loop acknowledges the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// Handled, with its output or dead letter confirmed by the broker.
    Ack,
    /// Shutdown came first: leave it unacknowledged, so the broker redelivers it.
    Abandon,
}

struct Done {
    finished: Finished,
    disposition: Disposition,
}

type Lane = mpsc::UnboundedSender<(Received, OwnedSemaphorePermit)>;

/// Runs the stage until shutdown, then gives in-flight messages up to `grace` to finish.
/// Records each acknowledged message in `stats`, when given, and writes the stats file every
/// second and at the end. Returns the number of messages acknowledged.
pub async fn run<H: Handler>(
    stage: Arc<Stage<H>>,
    mut consumer: Consumer<Vec<u8>, TokioExecutor>,
    dispatch: Dispatch,
    mut stats: Option<Stats>,
    grace: Duration,
) -> anyhow::Result<u64> {
    let parallelism = match dispatch {
        Dispatch::Unordered { parallelism } => parallelism,
        Dispatch::ByKey { lanes } => lanes,
    };
    let slots = Arc::new(Semaphore::new(parallelism));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let lanes = match dispatch {
        Dispatch::ByKey { lanes } => start_lanes(&stage, lanes, &done_tx),
        Dispatch::Unordered { .. } => Vec::new(),
    };
    let mut batches = Batches::default();
    let mut shutdown = stage.shutdown.clone();
    let mut write_stats = tokio::time::interval(stats::WRITE_INTERVAL);
    let mut in_flight = 0usize;
    let mut acknowledged = 0u64;
    let mut pulling = !*shutdown.borrow();
    let mut grace_deadline: Option<Instant> = None;
    let mut stream_ended = false;
    tracing::info!(stage = stage.name, ?dispatch, "stage started");

    loop {
        if !pulling {
            if in_flight == 0 {
                break;
            }
            let deadline = *grace_deadline.get_or_insert_with(|| Instant::now() + grace);
            if Instant::now() >= deadline {
                tracing::warn!(
                    stage = stage.name,
                    in_flight,
                    "grace period over; leaving in-flight messages unacknowledged for redelivery"
                );
                break;
            }
        }
        let can_pull = pulling && slots.available_permits() > 0;

        tokio::select! {
            biased;
            _ = stopped(&mut shutdown), if pulling => {
                pulling = false;
                tracing::info!(stage = stage.name, in_flight, "stopping: no new messages are pulled");
            }
            Some(done) = done_rx.recv() => {
                in_flight -= 1;
                if done.disposition == Disposition::Abandon {
                    batches.abandon(done.finished);
                    continue;
                }
                for finished in batches.finish(done.finished) {
                    match consumer.ack_with_id(&finished.topic, finished.id).await {
                        Ok(()) => {
                            acknowledged += 1;
                            if let Some(stats) = &mut stats {
                                stats.record(finished.publish_time);
                            }
                        }
                        Err(error) => tracing::warn!(stage = stage.name, %error, "failed to acknowledge a message; the broker will redeliver it"),
                    }
                }
            }
            next = consumer.next(), if can_pull => match next {
                Some(Ok(message)) => {
                    // Only this loop takes slots, and it saw a free one before pulling.
                    let permit = slots.clone().try_acquire_owned().expect("a slot is free");
                    in_flight += 1;
                    let received = Received::from_message(&message);
                    if lanes.is_empty() {
                        spawn_worker(&stage, received, permit, &done_tx);
                    } else {
                        let lane = lane_of(received.key.as_deref(), lanes.len());
                        let _ = lanes[lane].send((received, permit));
                    }
                }
                Some(Err(error)) => tracing::warn!(stage = stage.name, %error, "failed to receive a message"),
                None => {
                    stream_ended = true;
                    break;
                }
            },
            // Also wakes the loop during the grace period, to check the deadline.
            _ = write_stats.tick() => {
                if let Some(stats) = &stats {
                    stats.write_or_log();
                }
            }
        }
    }

    if let Some(stats) = &stats {
        stats.write()?;
    }
    if let Err(error) = consumer.close().await {
        tracing::debug!(stage = stage.name, %error, "failed to close the consumer");
    }
    let dead_lettered = stage.dead_lettered.load(Ordering::Relaxed);
    tracing::info!(
        stage = stage.name,
        acknowledged,
        dead_lettered,
        "stage stopped"
    );
    // NOTE: Magnetar builds a new consumer when the stream ends; this benchmark stops the stage.
    if stream_ended {
        tracing::error!(
            stage = stage.name,
            "the consumer stream ended; the stage stopped"
        );
        anyhow::bail!(
            "stage {}: the consumer stream ended, because the connection to the broker was \
             lost and could not be restored",
            stage.name
        );
    }
    Ok(acknowledged)
}

fn spawn_worker<H: Handler>(
    stage: &Arc<Stage<H>>,
    received: Received,
    permit: OwnedSemaphorePermit,
    done_tx: &mpsc::UnboundedSender<Done>,
) {
    let stage = stage.clone();
    let done_tx = done_tx.clone();
    tokio::spawn(async move {
        let disposition = process(&stage, &received).await;
        drop(permit);
        let _ = done_tx.send(done(received, disposition));
    });
}

/// Starts `count` lane workers, each handling its messages one at a time.
fn start_lanes<H: Handler>(
    stage: &Arc<Stage<H>>,
    count: usize,
    done_tx: &mpsc::UnboundedSender<Done>,
) -> Vec<Lane> {
    (0..count)
        .map(|_| {
            let (lane_tx, mut lane_rx) =
                mpsc::unbounded_channel::<(Received, OwnedSemaphorePermit)>();
            let stage = stage.clone();
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                while let Some((received, permit)) = lane_rx.recv().await {
                    let disposition = process(&stage, &received).await;
                    drop(permit);
                    let _ = done_tx.send(done(received, disposition));
                }
            });
            lane_tx
        })
        .collect()
}

/// Returns the lane of a message key. Messages without a key share lane 0.
fn lane_of(key: Option<&str>, lanes: usize) -> usize {
    let Some(key) = key else {
        return 0;
    };
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

fn done(received: Received, disposition: Disposition) -> Done {
    Done {
        finished: Finished {
            topic: received.topic,
            id: received.id,
            publish_time: received.publish_time,
        },
        disposition,
    }
}

/// Handles one message to the end: its output or its dead letter is confirmed by the
/// broker, or shutdown came first.
async fn process<H: Handler>(stage: &Stage<H>, received: &Received) -> Disposition {
    let mut attempt = 1;
    loop {
        let failure = match stage.handler.handle(received).await {
            Ok(output) => return publish_output(stage, received, output).await,
            Err(failure) => failure,
        };

        match failure {
            Failure::Transient(reason) if attempt < stage.retry.max_attempts => {
                let backoff = stage.retry.backoff(attempt);
                tracing::warn!(stage = stage.name, message_id = %received.message_id_text(), attempt, ?backoff, %reason, "attempt failed; retrying");
                if !sleep_unless_stopping(&stage.shutdown, backoff).await {
                    return Disposition::Abandon;
                }
                attempt += 1;
            }
            Failure::Transient(reason) => {
                let reason =
                    format!("failed {attempt} of {attempt} attempts; last failure: {reason}");
                return dead_letter(stage, received, attempt, "retries-exhausted", &reason).await;
            }
            Failure::Permanent(reason) => {
                return dead_letter(stage, received, attempt, "permanent", &reason).await;
            }
        }
    }
}

async fn publish_output<H: Handler>(
    stage: &Stage<H>,
    received: &Received,
    output: Option<Outbound>,
) -> Disposition {
    let (Some(mut message), Some(publisher)) = (output, &stage.output) else {
        return Disposition::Ack;
    };
    message.event_time = received.event_time;
    if publisher.send_confirmed(message, &stage.shutdown).await {
        Disposition::Ack
    } else {
        Disposition::Abandon
    }
}

async fn dead_letter<H: Handler>(
    stage: &Stage<H>,
    received: &Received,
    attempts: u32,
    kind: &str,
    reason: &str,
) -> Disposition {
    let message = publish::dead_letter(stage.name, received, attempts, kind, reason);
    if !stage
        .dead_letter
        .send_confirmed(message, &stage.shutdown)
        .await
    {
        return Disposition::Abandon;
    }
    tracing::warn!(stage = stage.name, message_id = %received.message_id_text(), kind, reason, "dead-lettered message");
    stage.dead_lettered.fetch_add(1, Ordering::Relaxed);
    Disposition::Ack
}

/// Sleeps for `wait`, or less when shutdown starts. Returns false on shutdown.
async fn sleep_unless_stopping(shutdown: &watch::Receiver<bool>, wait: Duration) -> bool {
    let mut shutdown = shutdown.clone();
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stopped(&mut shutdown) => false,
    }
}
