//! Keeps dead letters readable: creates the subscriptions that stages request on their dead
//! letter topics, and warns about dead letter topics that nothing reads.

use std::time::Duration;

use pulsar::consumer::{ConsumerOptions, InitialPosition};
use pulsar::{Consumer, Pulsar, SubType, TokioExecutor};

use crate::config::{Pipeline, UNREAD_DEAD_LETTERS_ADVICE};

/// How long creating one subscription may take before the host starts without it.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Creates each stage's `dead_letter_subscription`, and logs a warning for each dead letter
/// topic that no stage reads and no such subscription keeps. A subscription that cannot be
/// created is logged and does not stop the start, because the stages can still run.
pub async fn keep_dead_letters(pulsar: &Pulsar<TokioExecutor>, pipeline: &Pipeline) {
    for stage in &pipeline.stages {
        let Some(subscription) = &stage.dead_letter_subscription else {
            continue;
        };
        let topic = &stage.dead_letter;
        match tokio::time::timeout(SUBSCRIBE_TIMEOUT, create_subscription(pulsar, topic, subscription)).await {
            Ok(Ok(())) => {
                tracing::info!(stage = %stage.name, %topic, %subscription, "dead letter subscription ready");
            }
            Ok(Err(error)) => {
                tracing::error!(stage = %stage.name, %topic, %subscription, %error, "failed to create the dead letter subscription; without it, Pulsar may delete dead letters that no subscription retains");
            }
            Err(_) => {
                tracing::error!(stage = %stage.name, %topic, %subscription, timeout = ?SUBSCRIBE_TIMEOUT, "timed out creating the dead letter subscription; without it, Pulsar may delete dead letters that no subscription retains");
            }
        }
    }

    for stage in pipeline.stages_with_unread_dead_letters() {
        tracing::warn!(
            stage = %stage.name,
            topic = %stage.dead_letter,
            "no stage of this pipeline reads this dead letter topic; {UNREAD_DEAD_LETTERS_ADVICE}"
        );
    }
}

/// Creates a durable Shared subscription on `topic` that starts at the earliest message, or
/// attaches to it when it exists. Closing the consumer keeps the subscription.
async fn create_subscription(pulsar: &Pulsar<TokioExecutor>, topic: &str, subscription: &str) -> Result<(), pulsar::Error> {
    let options = ConsumerOptions { initial_position: InitialPosition::Earliest, durable: Some(true), ..Default::default() };
    let mut consumer: Consumer<Vec<u8>, TokioExecutor> = pulsar
        .consumer()
        .with_topic(topic)
        .with_subscription(subscription)
        .with_subscription_type(SubType::Shared)
        .with_consumer_name(format!("magnetar-dead-letters-{}", std::process::id()))
        .with_options(options)
        .build()
        .await?;
    consumer.close().await
}
