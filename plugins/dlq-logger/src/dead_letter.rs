//! A dead letter as the host produces it: the failed message with context properties.

use std::collections::BTreeMap;

use crate::bindings::magnetar::stage::types::Message;

/// Context properties that the host sets on every dead letter.
pub const STAGE: &str = "magnetar.stage";
pub const FAILURE_KIND: &str = "magnetar.failure.kind";
pub const FAILURE_REASON: &str = "magnetar.failure.reason";
pub const ATTEMPTS: &str = "magnetar.attempts";
pub const SOURCE_TOPIC: &str = "magnetar.source.topic";
pub const SOURCE_MESSAGE_ID: &str = "magnetar.source.message-id";
pub const FAILED_AT: &str = "magnetar.failed-at";

const CONTEXT: [&str; 7] = [
    STAGE,
    FAILURE_KIND,
    FAILURE_REASON,
    ATTEMPTS,
    SOURCE_TOPIC,
    SOURCE_MESSAGE_ID,
    FAILED_AT,
];

/// Stand-in for a context property that the dead letter lacks.
pub const UNKNOWN: &str = "unknown";

/// One row of the `dead_letters` table.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub stage: String,
    pub failure_kind: String,
    pub reason: String,
    /// None when `magnetar.attempts` is missing or not a number.
    pub attempts: Option<i64>,
    pub source_topic: String,
    pub source_message_id: String,
    pub failed_at: Option<String>,
    pub message_key: Option<String>,
    /// Every property of the message, context properties included, as a JSON object.
    pub properties_json: String,
    pub payload: Vec<u8>,
}

impl DeadLetter {
    /// Reads a dead letter from the message.
    ///
    /// A message without any context property, produced to the dead-letter topic by hand,
    /// is recorded with stage and kind "unknown" and the reason "no magnetar context
    /// properties". Whenever the source topic or message id is missing, the dead letter's
    /// own topic and message id stand in for both, so that the unique index still
    /// recognises a redelivery.
    pub fn from_message(message: &Message) -> DeadLetter {
        let properties: BTreeMap<&str, &str> = message
            .properties
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let get = |name: &str| properties.get(name).map(|value| value.to_string());
        let has_context = CONTEXT.iter().any(|name| properties.contains_key(name));

        let reason = match get(FAILURE_REASON) {
            Some(reason) => reason,
            None if has_context => format!("the dead letter has no {FAILURE_REASON} property"),
            None => "no magnetar context properties".to_string(),
        };
        let (source_topic, source_message_id) = match (get(SOURCE_TOPIC), get(SOURCE_MESSAGE_ID)) {
            (Some(topic), Some(message_id)) => (topic, message_id),
            _ => (message.topic.clone(), message.message_id.clone()),
        };

        DeadLetter {
            stage: get(STAGE).unwrap_or_else(|| UNKNOWN.to_string()),
            failure_kind: get(FAILURE_KIND).unwrap_or_else(|| UNKNOWN.to_string()),
            reason,
            attempts: get(ATTEMPTS).and_then(|attempts| attempts.trim().parse().ok()),
            source_topic,
            source_message_id,
            failed_at: get(FAILED_AT),
            message_key: message.key.clone(),
            properties_json: properties_json(&properties),
            payload: message.payload.clone(),
        }
    }
}

fn properties_json(properties: &BTreeMap<&str, &str>) -> String {
    let object: serde_json::Map<String, serde_json::Value> = properties
        .iter()
        .map(|(name, value)| (name.to_string(), serde_json::Value::from(*value)))
        .collect();
    serde_json::Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(properties: &[(&str, &str)]) -> Message {
        Message {
            payload: b"{\"Title\": null}".to_vec(),
            key: Some("k1".into()),
            properties: properties
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            topic: "persistent://public/default/movies-dlq".into(),
            message_id: "12:34:-1:-1".into(),
            publish_time: 1_700_000_000_000,
            event_time: None,
            attempt: 1,
        }
    }

    const CONTEXT_PROPERTIES: [(&str, &str); 8] = [
        (STAGE, "store-movies"),
        (FAILURE_KIND, "permanent"),
        (
            FAILURE_REASON,
            "field \"Title\" is null, but column title requires a value",
        ),
        (ATTEMPTS, "1"),
        (SOURCE_TOPIC, "persistent://public/default/movies"),
        (SOURCE_MESSAGE_ID, "7:8:-1:-1"),
        (FAILED_AT, "2026-12-04T20:07:33Z"),
        ("origin", "loader"),
    ];

    #[test]
    fn from_message_reads_context_properties() {
        let letter = DeadLetter::from_message(&message(&CONTEXT_PROPERTIES));

        assert_eq!(letter.stage, "store-movies");
        assert_eq!(letter.failure_kind, "permanent");
        assert_eq!(
            letter.reason,
            "field \"Title\" is null, but column title requires a value"
        );
        assert_eq!(letter.attempts, Some(1));
        assert_eq!(letter.source_topic, "persistent://public/default/movies");
        assert_eq!(letter.source_message_id, "7:8:-1:-1");
        assert_eq!(letter.failed_at.as_deref(), Some("2026-12-04T20:07:33Z"));
        assert_eq!(letter.message_key.as_deref(), Some("k1"));
        assert_eq!(letter.payload, b"{\"Title\": null}");
    }

    #[test]
    fn from_message_keeps_every_property_as_json() {
        let letter = DeadLetter::from_message(&message(&CONTEXT_PROPERTIES));

        let properties: serde_json::Value = serde_json::from_str(&letter.properties_json).unwrap();
        assert_eq!(properties.as_object().unwrap().len(), 8);
        assert_eq!(properties["origin"], "loader");
        assert_eq!(properties[FAILURE_KIND], "permanent");
    }

    #[test]
    fn from_message_records_message_without_context() {
        let letter = DeadLetter::from_message(&message(&[("origin", "by hand")]));

        assert_eq!(letter.stage, "unknown");
        assert_eq!(letter.failure_kind, "unknown");
        assert_eq!(letter.reason, "no magnetar context properties");
        assert_eq!(letter.attempts, None);
        assert_eq!(
            letter.source_topic,
            "persistent://public/default/movies-dlq"
        );
        assert_eq!(letter.source_message_id, "12:34:-1:-1");
        assert_eq!(letter.failed_at, None);
        assert_eq!(letter.properties_json, "{\"origin\":\"by hand\"}");
    }

    #[test]
    fn from_message_fills_gaps_in_partial_context() {
        let letter = DeadLetter::from_message(&message(&[
            (STAGE, "notify"),
            (ATTEMPTS, "many"),
            (SOURCE_TOPIC, "persistent://public/default/movies-stored"),
        ]));

        assert_eq!(letter.stage, "notify");
        assert_eq!(letter.failure_kind, "unknown");
        assert_eq!(
            letter.reason,
            "the dead letter has no magnetar.failure.reason property"
        );
        assert_eq!(letter.attempts, None);
        assert_eq!(
            letter.source_topic,
            "persistent://public/default/movies-dlq"
        );
        assert_eq!(letter.source_message_id, "12:34:-1:-1");
    }
}
