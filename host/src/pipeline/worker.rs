//! The life of one message in a stage: call the component, then publish its outputs, retry
//! it later, or dead-letter it, and only then report it ready to acknowledge.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pulsar::producer::Message as OutboundMessage;
use tokio::sync::watch;

use crate::bindings::types::Message;
use crate::capability::publish::Pending;
use crate::config::StageConfig;
use crate::pipeline::breaker::Breaker;
use crate::pipeline::health::StageCounters;
use crate::pipeline::producer::Publisher;
use crate::pipeline::properties as prop;
use crate::runtime::{FailureKind, StageFailure, StageRuntime};

/// A message as received from the broker, detached from the consumer.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub message_id: String,
    pub payload: Vec<u8>,
    pub key: Option<String>,
    pub properties: Vec<(String, String)>,
    pub publish_time: u64,
    pub event_time: Option<u64>,
}

/// What the consumer does with a message once its worker is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Finished: processed, handed to the retry topic, or dead-lettered, with the broker's
    /// receipt for every message that was published.
    Ack,
    /// Not finished (shutdown came first). Left unacknowledged so the broker redelivers it.
    Abandon,
}

/// Everything a worker needs, shared by all workers of one stage.
pub struct StageContext {
    pub config: StageConfig,
    pub runtime: StageRuntime,
    pub publisher: Publisher,
    pub breakers: Vec<Arc<Breaker>>,
    pub counters: Arc<StageCounters>,
    /// Whether the stage's consumers are connected to the broker, for the health endpoint.
    pub connected: Arc<std::sync::atomic::AtomicBool>,
    pub shutdown: watch::Receiver<bool>,
}

impl StageContext {
    pub fn breakers_open(&self) -> bool {
        self.breakers.iter().any(|breaker| breaker.is_open())
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// How often a message of a misconfigured stage is tried again. The config cannot change
/// without a restart, but a plugin may also depend on something outside it.
const MISCONFIGURED_RECHECK: Duration = Duration::from_secs(10);

/// Process one message to the end and say whether it may be acknowledged.
pub async fn process(ctx: &StageContext, received: Received) -> Disposition {
    let stage = ctx.config.name.as_str();
    let attempt = prop::get(&received.properties, prop::ATTEMPT).and_then(|a| a.parse::<u32>().ok()).unwrap_or(1).max(1);
    tracing::debug!(stage, topic = %received.topic, message_id = %received.message_id, attempt, "handling message");

    if let Some(deliver_at) = prop::get(&received.properties, prop::DELIVER_AT).and_then(|t| t.parse::<u64>().ok()) {
        let wait = Duration::from_millis(deliver_at.saturating_sub(now_millis()));
        if !wait.is_zero() && !sleep_unless_stopping(ctx, wait).await {
            return Disposition::Abandon;
        }
    }

    let size = received.payload.len() as u64;
    if size > ctx.config.limits.max_message_size {
        let reason = format!(
            "payload of {size} bytes is over the stage limit of {} bytes; raise `limits.max_message_size` to accept it",
            ctx.config.limits.max_message_size
        );
        return dead_letter(ctx, &received, attempt, "too-large", &reason).await;
    }

    let message = Message {
        payload: received.payload.clone(),
        key: received.key.clone(),
        properties: received.properties.clone(),
        topic: received.topic.clone(),
        message_id: received.message_id.clone(),
        publish_time: received.publish_time,
        event_time: received.event_time,
        attempt,
    };

    loop {
        match ctx.runtime.handle(&message).await {
            Err(failure) if failure.kind == FailureKind::Misconfigured => {
                if ctx.counters.set_problem(&failure.reason) {
                    tracing::error!(
                        stage,
                        reason = %failure.reason,
                        "the stage's config is invalid; the stage pauses and its messages wait in the \
                         subscription; fix `config` in pipeline.yaml and restart"
                    );
                }
                if !sleep_unless_stopping(ctx, MISCONFIGURED_RECHECK).await {
                    return Disposition::Abandon;
                }
                continue;
            }
            Ok(published) => {
                if !publish_all(ctx, &received, published).await {
                    return Disposition::Abandon;
                }
                ctx.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                return Disposition::Ack;
            }
            Err(failure) if failure.kind.is_retryable() => {
                tracing::warn!(stage, message_id = %received.message_id, attempt, kind = failure.kind.as_str(), reason = %failure.reason, "attempt failed");
                if failure.kind == FailureKind::Transient && !backends_answer(ctx).await {
                    // The dependency is down, not the message at fault: wait for it without
                    // spending an attempt, then run the same message again.
                    if !wait_for_backends(ctx).await {
                        return Disposition::Abandon;
                    }
                    continue;
                }
                if attempt >= ctx.config.retry.max_attempts {
                    let kind = match failure.kind {
                        FailureKind::Transient => "retries-exhausted",
                        other => other.as_str(),
                    };
                    let reason = format!("failed {attempt} of {attempt} attempts; last failure: {}", failure.reason);
                    return dead_letter(ctx, &received, attempt, kind, &reason).await;
                }
                return retry_later(ctx, &received, attempt, &failure).await;
            }
            Err(failure) => {
                tracing::warn!(stage, message_id = %received.message_id, attempt, kind = failure.kind.as_str(), reason = %failure.reason, "message failed permanently");
                return dead_letter(ctx, &received, attempt, failure.kind.as_str(), &failure.reason).await;
            }
        }
    }
}

async fn backends_answer(ctx: &StageContext) -> bool {
    let mut all = true;
    for breaker in &ctx.breakers {
        all &= breaker.check().await;
    }
    all
}

/// Wait until every breaker of the stage is closed. Returns false on shutdown.
async fn wait_for_backends(ctx: &StageContext) -> bool {
    for breaker in &ctx.breakers {
        let mut shutdown = ctx.shutdown.clone();
        tokio::select! {
            _ = breaker.wait_closed() => {}
            _ = shutdown.wait_for(|stop| *stop) => return false,
        }
    }
    true
}

async fn publish_all(ctx: &StageContext, received: &Received, published: Vec<Pending>) -> bool {
    let messages = published
        .into_iter()
        .map(|pending| {
            let message = OutboundMessage {
                payload: pending.payload,
                properties: pending.properties.into_iter().collect(),
                partition_key: pending.key,
                event_time: received.event_time,
                ..Default::default()
            };
            (pending.topic, message)
        })
        .collect();
    ctx.publisher.publish_confirmed(&ctx.config.name, messages, ctx.shutdown.clone()).await
}

async fn retry_later(ctx: &StageContext, received: &Received, attempt: u32, failure: &StageFailure) -> Disposition {
    let backoff = ctx.config.retry.backoff(attempt);
    let deliver_at = now_millis() + u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);

    let mut properties = carried_properties(received);
    properties.insert(prop::ATTEMPT.into(), (attempt + 1).to_string());
    properties.insert(prop::DELIVER_AT.into(), deliver_at.to_string());
    properties.insert(prop::LAST_FAILURE.into(), format!("{}: {}", failure.kind.as_str(), failure.reason));
    let message = OutboundMessage {
        payload: received.payload.clone(),
        properties,
        partition_key: received.key.clone(),
        event_time: received.event_time,
        deliver_at_time: i64::try_from(deliver_at).ok(),
        ..Default::default()
    };

    let topic = ctx.config.retry_topic.clone();
    if !ctx.publisher.publish_confirmed(&ctx.config.name, vec![(topic, message)], ctx.shutdown.clone()).await {
        return Disposition::Abandon;
    }
    tracing::info!(stage = %ctx.config.name, message_id = %received.message_id, attempt, ?backoff, "scheduled a retry");
    ctx.counters.retried.fetch_add(1, Ordering::Relaxed);
    Disposition::Ack
}

async fn dead_letter(ctx: &StageContext, received: &Received, attempts: u32, kind: &str, reason: &str) -> Disposition {
    let mut properties = carried_properties(received);
    properties.insert(prop::STAGE.into(), ctx.config.name.clone());
    properties.insert(prop::FAILURE_KIND.into(), kind.to_string());
    properties.insert(prop::FAILURE_REASON.into(), reason.to_string());
    properties.insert(prop::ATTEMPTS.into(), attempts.to_string());
    properties.insert(prop::FAILED_AT.into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let message = OutboundMessage {
        payload: received.payload.clone(),
        properties,
        partition_key: received.key.clone(),
        event_time: received.event_time,
        ..Default::default()
    };

    let topic = ctx.config.dead_letter.clone();
    if !ctx.publisher.publish_confirmed(&ctx.config.name, vec![(topic.clone(), message)], ctx.shutdown.clone()).await {
        return Disposition::Abandon;
    }
    // The log gives the first delivery's id too, which the dead letter records.
    tracing::warn!(stage = %ctx.config.name, message_id = %received.message_id, source_message_id = source_message_id(received), kind, reason, dead_letter_topic = %topic, "dead-lettered message");
    ctx.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
    Disposition::Ack
}

/// Returns the id of the message's first delivery, before any retry.
fn source_message_id(received: &Received) -> &str {
    prop::get(&received.properties, prop::SOURCE_MESSAGE_ID).unwrap_or(&received.message_id)
}

/// The message's own properties, minus the host's, plus the source of its first delivery.
fn carried_properties(received: &Received) -> HashMap<String, String> {
    let source_topic = prop::get(&received.properties, prop::SOURCE_TOPIC).unwrap_or(&received.topic).to_string();
    let source_id = source_message_id(received).to_string();
    let mut properties: HashMap<String, String> = received
        .properties
        .iter()
        .filter(|(key, _)| !prop::HOST_PROPERTIES.contains(&key.as_str()))
        .cloned()
        .collect();
    properties.insert(prop::SOURCE_TOPIC.into(), source_topic);
    properties.insert(prop::SOURCE_MESSAGE_ID.into(), source_id);
    properties
}

/// Sleep for `wait`, or less if shutdown starts. Returns false on shutdown.
async fn sleep_unless_stopping(ctx: &StageContext, wait: Duration) -> bool {
    if ctx.stopping() {
        return false;
    }
    let mut shutdown = ctx.shutdown.clone();
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

pub fn now_millis() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}
