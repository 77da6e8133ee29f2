//! Message properties the host sets on retries and dead letters.
//!
//! Retry messages keep the source topic and message id of the first delivery, so a dead
//! letter names the message a producer actually sent, however many retries it went through.

/// Delivery attempt of the message, starting at 1. Carried on retry messages so the count
/// survives host restarts (Pulsar keeps its own redelivery count only in broker memory).
pub const ATTEMPT: &str = "magnetar.attempt";
/// Earliest time to handle a retry message, in milliseconds since the Unix epoch. The broker
/// delays delivery on Shared and Key_Shared subscriptions; the host waits for the others.
pub const DELIVER_AT: &str = "magnetar.deliver-at";
/// Reason of the failure that caused the retry.
pub const LAST_FAILURE: &str = "magnetar.last-failure";

pub const STAGE: &str = "magnetar.stage";
pub const FAILURE_KIND: &str = "magnetar.failure.kind";
pub const FAILURE_REASON: &str = "magnetar.failure.reason";
pub const ATTEMPTS: &str = "magnetar.attempts";
pub const SOURCE_TOPIC: &str = "magnetar.source.topic";
pub const SOURCE_MESSAGE_ID: &str = "magnetar.source.message-id";
pub const FAILED_AT: &str = "magnetar.failed-at";

/// Properties the host owns. They are replaced, not duplicated, when a message is retried
/// or dead-lettered.
pub const HOST_PROPERTIES: [&str; 10] = [
    ATTEMPT,
    DELIVER_AT,
    LAST_FAILURE,
    STAGE,
    FAILURE_KIND,
    FAILURE_REASON,
    ATTEMPTS,
    SOURCE_TOPIC,
    SOURCE_MESSAGE_ID,
    FAILED_AT,
];

/// Look up a property by name.
pub fn get<'a>(properties: &'a [(String, String)], name: &str) -> Option<&'a str> {
    properties.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}
