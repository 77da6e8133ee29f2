//! The broker connection, consumers, and the fields of a received message.

use anyhow::Context as _;
use pulsar::consumer::{ConsumerOptions, InitialPosition, Message};
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, Pulsar, SubType, TokioExecutor};

/// Connects to the broker at `url`.
pub async fn connect(url: &str) -> anyhow::Result<Pulsar<TokioExecutor>> {
    Pulsar::builder(url, TokioExecutor)
        .build()
        .await
        .with_context(|| {
            format!(
                "failed to connect to the Pulsar broker at {url}; is it running? For \
                 development, start one with `scripts/pulsar-standalone start`"
            )
        })
}

/// Subscribes to `topic` from the earliest unacknowledged message, as Magnetar's stages do
/// by default. The receiver queue and flow permits keep the pulsar crate's defaults (1000
/// messages each), which Magnetar also uses.
pub async fn subscribe(
    pulsar: &Pulsar<TokioExecutor>,
    topic: &str,
    subscription: &str,
    sub_type: SubType,
    consumer_name: &str,
) -> anyhow::Result<Consumer<Vec<u8>, TokioExecutor>> {
    let options = ConsumerOptions {
        initial_position: InitialPosition::Earliest,
        durable: Some(true),
        ..Default::default()
    };
    pulsar
        .consumer()
        .with_topic(topic)
        .with_subscription(subscription)
        .with_subscription_type(sub_type)
        .with_consumer_name(format!("{consumer_name}-{}", std::process::id()))
        .with_options(options)
        .build()
        .await
        .with_context(|| format!("failed to subscribe to {topic} with subscription {subscription}"))
}

/// A message as received, detached from the consumer so a worker task can own it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    /// The broker's id, with `batch_size` set for a message of a producer batch.
    pub id: MessageIdData,
    pub payload: Vec<u8>,
    pub key: Option<String>,
    pub properties: Vec<(String, String)>,
    /// Milliseconds since the Unix epoch, set by the producer's client.
    pub publish_time: u64,
    pub event_time: Option<u64>,
}

impl Received {
    pub fn from_message(message: &Message<Vec<u8>>) -> Received {
        let metadata = message.metadata();
        let mut id = message.message_id().clone();
        if id.batch_size.is_none() {
            id.batch_size = metadata.num_messages_in_batch.filter(|count| *count > 1);
        }
        Received {
            topic: message.topic.clone(),
            id,
            payload: message.payload.data.clone(),
            key: metadata.partition_key.clone(),
            properties: metadata
                .properties
                .iter()
                .map(|pair| (pair.key.clone(), pair.value.clone()))
                .collect(),
            publish_time: metadata.publish_time,
            event_time: metadata.event_time.filter(|time| *time > 0),
        }
    }

    /// Returns the id as `ledger:entry:partition:batch-index`, the form Magnetar writes in
    /// dead-letter properties.
    pub fn message_id_text(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.id.ledger_id,
            self.id.entry_id,
            self.id.partition.unwrap_or(-1),
            self.id.batch_index.unwrap_or(-1)
        )
    }
}
