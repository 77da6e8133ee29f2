//! One consumer loop: pull messages, hand them to workers, and acknowledge what they finish.
//!
//! The loop owns the Pulsar consumer, so pulling, acknowledging, health checks and shutdown
//! are branches of one `select!`. Behaviours of the `pulsar` crate (6.9) this loop allows for:
//! - Acknowledging one message of a producer batch can acknowledge the whole batch on the
//!   broker, so a batch is acknowledged only when all of its messages are finished.
//! - The consumer stream can end after a failed reconnect; the loop then builds a new
//!   consumer with backoff.
//! - Negative acknowledgement redelivers at once and the redelivery count lives only in broker
//!   memory, so retries go through a retry topic instead (see `worker`).
//! - `check_connection` keeps one ping slot per shared connection, so checks from several
//!   consumers cancel each other and drop the connection. Health comes from the consumer
//!   stream instead: its end marks the stage disconnected, a rebuilt consumer or a message
//!   marks it connected again. An error inside a stream that goes on does not count, since an
//!   idle consumer might then never clear it; the broker probe in `health` covers outages.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use pulsar::consumer::{ConsumerOptions, InitialPosition as PulsarPosition, Message};
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, Pulsar, SubType, TokioExecutor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::config::{InitialPosition, SubscriptionType};
use crate::pipeline::worker::{self, Disposition, Received, StageContext};

/// How long closing a consumer may take at shutdown before the host drops it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a consumer reads: the stage's inputs or its retry topic.
#[derive(Debug, Clone)]
pub enum Source {
    Topics(Vec<String>),
    /// Topics matching the regex in one `tenant/namespace`.
    Pattern { regex: regex::Regex, namespace: String },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Topics(topics) => write!(f, "{}", topics.join(", ")),
            Source::Pattern { regex, namespace } => write!(f, "topics of {namespace} matching {regex}"),
        }
    }
}

/// How often an idle loop checks for freed slots and closed breakers.
const TICK: Duration = Duration::from_millis(500);
/// First and longest wait before building a consumer again after the broker refused.
const REBUILD_INITIAL: Duration = Duration::from_millis(500);
const REBUILD_MAX: Duration = Duration::from_secs(10);

/// A message queued for an ordered lane, with the slot it holds and where to report it.
pub type LaneItem = (Received, MessageIdData, OwnedSemaphorePermit, mpsc::UnboundedSender<Done>);

/// Senders of an ordered stage's lanes; messages with one key always use the same lane.
pub type Lanes = Arc<Vec<mpsc::UnboundedSender<LaneItem>>>;

/// A finished message, sent from a worker back to the loop that owns its consumer.
pub struct Done {
    topic: String,
    id: MessageIdData,
    /// Broker publish time of the message, in milliseconds since the Unix epoch.
    publish_time: u64,
    disposition: Disposition,
}

/// Acknowledgement state of the producer batches that are partly finished.
#[derive(Default)]
struct Batches {
    open: HashMap<(String, u64, u64, i32), Batch>,
}

struct Batch {
    size: usize,
    finished: Vec<MessageIdData>,
    abandoned: bool,
}

impl Batches {
    /// Record a finished message and return the ids that may be acknowledged now.
    fn finish(&mut self, done: &Done) -> Vec<MessageIdData> {
        let size = done.id.batch_size.unwrap_or(0).max(0) as usize;
        if size <= 1 {
            return match done.disposition {
                Disposition::Ack => vec![done.id.clone()],
                Disposition::Abandon => Vec::new(),
            };
        }
        let entry = (done.topic.clone(), done.id.ledger_id, done.id.entry_id, done.id.partition.unwrap_or(-1));
        let batch = self.open.entry(entry.clone()).or_insert_with(|| Batch { size, finished: Vec::new(), abandoned: false });
        batch.abandoned |= done.disposition == Disposition::Abandon;
        batch.finished.push(done.id.clone());
        if batch.finished.len() < batch.size {
            return Vec::new();
        }
        let batch = self.open.remove(&entry).expect("batch present");
        if batch.abandoned { Vec::new() } else { batch.finished }
    }
}

/// Run one consumer until shutdown, then wait up to `grace` for in-flight messages.
pub async fn run(
    pulsar: Pulsar<TokioExecutor>,
    ctx: Arc<StageContext>,
    source: Source,
    slots: Arc<Semaphore>,
    lanes: Option<Lanes>,
    grace: Duration,
) {
    let stage = ctx.config.name.clone();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut shutdown = ctx.shutdown.clone();
    let mut batches = Batches::default();
    let mut in_flight = 0usize;

    let Some(mut consumer) = build_with_backoff(&pulsar, &ctx, &source).await else {
        return;
    };
    ctx.connected.store(true, Ordering::Relaxed);
    tracing::info!(%stage, %source, subscription = %ctx.config.subscription, "consumer started");

    let mut tick = tokio::time::interval(TICK);
    let mut pulling = !*shutdown.borrow();
    let mut grace_deadline: Option<tokio::time::Instant> = None;

    loop {
        if !pulling {
            if in_flight == 0 {
                break;
            }
            let deadline = *grace_deadline.get_or_insert_with(|| tokio::time::Instant::now() + grace);
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(%stage, in_flight, "grace period over; leaving in-flight messages unacknowledged for redelivery");
                ctx.counters.abandoned.fetch_add(in_flight as u64, Ordering::Relaxed);
                break;
            }
        }
        let can_pull = pulling && slots.available_permits() > 0 && !ctx.breakers_open() && !ctx.counters.has_problem();

        tokio::select! {
            biased;
            _ = shutdown.changed(), if pulling => {
                pulling = false;
                tracing::info!(%stage, in_flight, "stopping: no new messages are pulled");
            }
            Some(done) = done_rx.recv() => {
                in_flight -= 1;
                if done.disposition == Disposition::Abandon {
                    ctx.counters.abandoned.fetch_add(1, Ordering::Relaxed);
                }
                let acked = batches.finish(&done);
                ctx.counters.record_latency(done.publish_time, acked.len());
                for id in acked {
                    if let Err(error) = consumer.ack_with_id(&done.topic, id).await {
                        // The broker redelivers what it did not record; workers are idempotent.
                        tracing::warn!(%stage, topic = %done.topic, %error, "failed to acknowledge a message; it will be redelivered");
                    }
                }
            }
            next = consumer.next(), if can_pull => match next {
                Some(Ok(message)) => {
                    ctx.connected.store(true, Ordering::Relaxed);
                    // The stage's other consumer shares `slots` and may have taken the last one
                    // while this one waited for the message, so wait for a worker to finish.
                    let permit = match slots.clone().try_acquire_owned() {
                        Ok(permit) => permit,
                        Err(_) => slots.clone().acquire_owned().await.expect("the stage's slot semaphore is never closed"),
                    };
                    in_flight += 1;
                    ctx.counters.received.fetch_add(1, Ordering::Relaxed);
                    let (received, id) = detach(&message);
                    dispatch(&ctx, received, id, permit, lanes.as_deref(), done_tx.clone());
                }
                Some(Err(error)) => {
                    tracing::warn!(%stage, %error, "failed to receive a message");
                }
                None => {
                    ctx.connected.store(false, Ordering::Relaxed);
                    tracing::warn!(%stage, "consumer stream ended; building a new consumer");
                    match build_with_backoff(&pulsar, &ctx, &source).await {
                        Some(new) => {
                            consumer = new;
                            ctx.connected.store(true, Ordering::Relaxed);
                            tracing::info!(%stage, "consumer rebuilt");
                        }
                        None => break,
                    }
                }
            },
            // Wakes the loop so it notices freed slots and closed breakers.
            _ = tick.tick() => {}
        }
    }

    // The pulsar crate's engine handles the close only after it has handed over the messages
    // it holds, and with a full receiver queue that never happens once pulling has stopped.
    // Unacknowledged messages go back to the subscription when the connection closes either way.
    match tokio::time::timeout(CLOSE_TIMEOUT, consumer.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%stage, %error, "failed to close consumer"),
        Err(_) => tracing::debug!(%stage, timeout = ?CLOSE_TIMEOUT, "consumer close timed out; dropping it"),
    }
    tracing::info!(%stage, %source, "consumer stopped");
}

fn dispatch(
    ctx: &Arc<StageContext>,
    received: Received,
    id: MessageIdData,
    permit: OwnedSemaphorePermit,
    lanes: Option<&Vec<mpsc::UnboundedSender<LaneItem>>>,
    done_tx: mpsc::UnboundedSender<Done>,
) {
    // Ordered subscription types: all messages with one key go through one lane, in order.
    if let Some(lanes) = lanes {
        let lane = match &received.key {
            Some(key) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut hasher);
                (hasher.finish() % lanes.len() as u64) as usize
            }
            None => 0,
        };
        let _ = lanes[lane].send((received, id, permit, done_tx));
        return;
    }

    let ctx = ctx.clone();
    tokio::spawn(async move {
        let (topic, publish_time) = (received.topic.clone(), received.publish_time);
        let disposition = worker::process(&ctx, received).await;
        drop(permit);
        let _ = done_tx.send(Done { topic, id, publish_time, disposition });
    });
}

/// Start the lane workers of an ordered stage: each handles its messages one at a time.
pub fn start_lanes(ctx: &Arc<StageContext>, count: usize) -> Lanes {
    let mut senders = Vec::with_capacity(count);
    for _ in 0..count {
        let (tx, mut rx) = mpsc::unbounded_channel::<LaneItem>();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            while let Some((received, id, permit, done_tx)) = rx.recv().await {
                let (topic, publish_time) = (received.topic.clone(), received.publish_time);
                let disposition = if *ctx.shutdown.borrow() {
                    Disposition::Abandon
                } else {
                    worker::process(&ctx, received).await
                };
                drop(permit);
                let _ = done_tx.send(Done { topic, id, publish_time, disposition });
            }
        });
        senders.push(tx);
    }
    Arc::new(senders)
}

fn detach(message: &Message<Vec<u8>>) -> (Received, MessageIdData) {
    let metadata = message.metadata();
    let id = message.message_id().clone();
    let received = Received {
        topic: message.topic.clone(),
        message_id: format!(
            "{}:{}:{}:{}",
            id.ledger_id,
            id.entry_id,
            id.partition.unwrap_or(-1),
            id.batch_index.unwrap_or(-1)
        ),
        payload: message.payload.data.clone(),
        key: metadata.partition_key.clone(),
        properties: metadata.properties.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect(),
        publish_time: metadata.publish_time,
        event_time: metadata.event_time.filter(|t| *t > 0),
    };
    let mut id = id;
    if id.batch_size.is_none() {
        id.batch_size = metadata.num_messages_in_batch.filter(|n| *n > 1);
    }
    (received, id)
}

async fn build_with_backoff(pulsar: &Pulsar<TokioExecutor>, ctx: &StageContext, source: &Source) -> Option<Consumer<Vec<u8>, TokioExecutor>> {
    let mut wait = REBUILD_INITIAL;
    let mut shutdown = ctx.shutdown.clone();
    loop {
        match build(pulsar, ctx, source).await {
            Ok(consumer) => return Some(consumer),
            Err(error) => {
                ctx.connected.store(false, Ordering::Relaxed);
                tracing::warn!(stage = %ctx.config.name, %error, retry_in = ?wait, "failed to subscribe");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => return None,
        }
        wait = (wait * 2).min(REBUILD_MAX);
    }
}

async fn build(pulsar: &Pulsar<TokioExecutor>, ctx: &StageContext, source: &Source) -> Result<Consumer<Vec<u8>, TokioExecutor>, pulsar::Error> {
    let config = &ctx.config;
    let sub_type = match config.subscription_type {
        SubscriptionType::Shared => SubType::Shared,
        SubscriptionType::KeyShared => SubType::KeyShared,
        SubscriptionType::Failover => SubType::Failover,
        SubscriptionType::Exclusive => SubType::Exclusive,
    };
    let initial_position = match config.initial_position {
        InitialPosition::Earliest => PulsarPosition::Earliest,
        InitialPosition::Latest => PulsarPosition::Latest,
    };
    let options = ConsumerOptions { initial_position, durable: Some(true), ..Default::default() };
    let builder = pulsar
        .consumer()
        .with_subscription(config.subscription.clone())
        .with_subscription_type(sub_type)
        .with_consumer_name(format!("magnetar-{}-{}", config.name, std::process::id()))
        .with_options(options);
    let builder = match source {
        Source::Topics(topics) => builder.with_topics(topics),
        Source::Pattern { regex, namespace } => builder
            .with_lookup_namespace(namespace.clone())
            .with_topic_regex(regex.clone())
            .with_topic_refresh(Duration::from_secs(30)),
    };
    builder.build().await
}
