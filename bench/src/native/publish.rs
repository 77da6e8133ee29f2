//! Publishing with broker receipts, and the dead letters of failed messages.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use pulsar::producer::Message as Outbound;
use pulsar::{Producer, Pulsar, TokioExecutor};
use tokio::sync::{Mutex, watch};

use crate::broker::Received;
use crate::shutdown::stopped;

/// First wait before publishing a message again after the broker did not confirm it. The
/// wait doubles up to [`REPUBLISH_MAX`]. Both are Magnetar's values.
const REPUBLISH_INITIAL: Duration = Duration::from_millis(200);
const REPUBLISH_MAX: Duration = Duration::from_secs(10);

/// Dead-letter properties, named as Magnetar names them so that its dlq-logger stage can
/// record the dead letters of either pipeline.
const STAGE: &str = "magnetar.stage";
const FAILURE_KIND: &str = "magnetar.failure.kind";
const FAILURE_REASON: &str = "magnetar.failure.reason";
const ATTEMPTS: &str = "magnetar.attempts";
const SOURCE_TOPIC: &str = "magnetar.source.topic";
const SOURCE_MESSAGE_ID: &str = "magnetar.source.message-id";
const FAILED_AT: &str = "magnetar.failed-at";

/// One producer on one topic, shared by the workers of a stage.
pub struct Publisher {
    topic: String,
    producer: Mutex<Producer<TokioExecutor>>,
}

impl Publisher {
    /// Creates the producer, without batching, as Magnetar's are.
    pub async fn new(pulsar: &Pulsar<TokioExecutor>, topic: &str) -> anyhow::Result<Publisher> {
        let producer = pulsar
            .producer()
            .with_topic(topic)
            .build()
            .await
            .with_context(|| format!("failed to create a producer on {topic}"))?;
        Ok(Publisher {
            topic: topic.to_string(),
            producer: Mutex::new(producer),
        })
    }

    /// Publishes `message` and waits for the broker's receipt, publishing it again with
    /// backoff until the broker confirms it. Returns false only when shutdown starts first,
    /// so the caller must leave its input unacknowledged.
    pub async fn send_confirmed(
        &self,
        message: Outbound,
        shutdown: &watch::Receiver<bool>,
    ) -> bool {
        let mut backoff = REPUBLISH_INITIAL;
        loop {
            // The lock covers only the hand-over to the producer, not the wait for the receipt.
            let receipt = self
                .producer
                .lock()
                .await
                .send_non_blocking(message.clone())
                .await;
            let confirmed = match receipt {
                Ok(receipt) => receipt.await.map(drop),
                Err(error) => Err(error),
            };
            let Err(error) = confirmed else {
                return true;
            };
            tracing::warn!(topic = %self.topic, %error, ?backoff, "broker did not confirm a published message; publishing it again");

            let mut shutdown = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut shutdown) => return false,
            }
            backoff = (backoff * 2).min(REPUBLISH_MAX);
        }
    }

    pub async fn close(&self) {
        if let Err(error) = self.producer.lock().await.close().await {
            tracing::debug!(topic = %self.topic, %error, "failed to close a producer");
        }
    }
}

/// Builds the dead letter of `received`: its payload, key and properties, plus the failure
/// context that Magnetar adds.
pub fn dead_letter(
    stage: &str,
    received: &Received,
    attempts: u32,
    kind: &str,
    reason: &str,
) -> Outbound {
    let mut properties: HashMap<String, String> = received.properties.iter().cloned().collect();
    properties.insert(STAGE.into(), stage.to_string());
    properties.insert(FAILURE_KIND.into(), kind.to_string());
    properties.insert(FAILURE_REASON.into(), reason.to_string());
    properties.insert(ATTEMPTS.into(), attempts.to_string());
    properties.insert(SOURCE_TOPIC.into(), received.topic.clone());
    properties.insert(SOURCE_MESSAGE_ID.into(), received.message_id_text());
    properties.insert(
        FAILED_AT.into(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    Outbound {
        payload: received.payload.clone(),
        properties,
        partition_key: received.key.clone(),
        event_time: received.event_time,
        ..Default::default()
    }
}
