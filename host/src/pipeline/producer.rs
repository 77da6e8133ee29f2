//! Publishing with broker receipts: stage outputs, retries and dead letters.

use std::sync::Arc;
use std::time::Duration;

use pulsar::producer::Message as OutboundMessage;
use pulsar::{MultiTopicProducer, Pulsar, TokioExecutor};
use tokio::sync::{Mutex, watch};

/// How long the client must outlive a dropped producer. The pulsar crate (6.9) closes a
/// dropped producer on the broker from a spawned task. That task logs an error when the
/// client is dropped first, and it needs one broker round trip.
pub(crate) const PRODUCER_CLOSE_GRACE: Duration = Duration::from_millis(200);

/// First wait before publishing again after the broker did not confirm a message.
const REPUBLISH_INITIAL: Duration = Duration::from_millis(200);
/// Longest wait between attempts to publish one message.
const REPUBLISH_MAX: Duration = Duration::from_secs(10);

/// One producer per topic, shared by all stages of the host.
#[derive(Clone)]
pub struct Publisher {
    producer: Arc<Mutex<MultiTopicProducer<TokioExecutor>>>,
}

impl Publisher {
    pub fn new(pulsar: &Pulsar<TokioExecutor>) -> Publisher {
        let producer = pulsar.producer().build_multi_topic();
        Publisher { producer: Arc::new(Mutex::new(producer)) }
    }

    /// Publish every message and wait for the broker's receipt of each. A message the broker
    /// did not confirm is published again with backoff. Returns false only when shutdown
    /// starts first; the caller must then leave its input unacknowledged.
    pub async fn publish_confirmed(
        &self,
        stage: &str,
        messages: Vec<(String, OutboundMessage)>,
        shutdown: watch::Receiver<bool>,
    ) -> bool {
        let mut waiting = messages;
        let mut backoff = REPUBLISH_INITIAL;
        while !waiting.is_empty() {
            let mut receipts = Vec::with_capacity(waiting.len());
            {
                let mut producer = self.producer.lock().await;
                for (topic, message) in &waiting {
                    let receipt = producer.send_non_blocking(topic.clone(), message.clone()).await;
                    receipts.push(receipt);
                }
            }

            let mut unconfirmed = Vec::new();
            for ((topic, message), receipt) in waiting.into_iter().zip(receipts) {
                let result = match receipt {
                    Ok(future) => future.await.map(|_| ()),
                    Err(error) => Err(error),
                };
                if let Err(error) = result {
                    tracing::warn!(stage, %topic, %error, "broker did not confirm a published message; publishing it again");
                    unconfirmed.push((topic, message));
                }
            }
            waiting = unconfirmed;
            if waiting.is_empty() {
                break;
            }

            if *shutdown.borrow() {
                return false;
            }
            let mut shutdown = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait_for(|stop| *stop) => return false,
            }
            backoff = (backoff * 2).min(REPUBLISH_MAX);
        }
        true
    }

    /// Close every producer, after the stages have stopped.
    pub async fn close(&self) {
        let mut producer = self.producer.lock().await;
        for topic in producer.topics() {
            if let Err(error) = producer.close_producer(topic.clone()).await {
                tracing::debug!(%topic, %error, "failed to close producer");
            }
        }
        tokio::time::sleep(PRODUCER_CLOSE_GRACE).await;
    }
}
