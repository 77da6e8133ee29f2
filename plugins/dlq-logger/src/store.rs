//! Insert of a dead letter into the `dead_letters` table.

use crate::bindings::magnetar::stage::database::{Error as DbError, Value};
use crate::bindings::magnetar::stage::types::Failure;
use crate::dead_letter::DeadLetter;

/// The database call dlq-logger makes, so that the insert runs in native tests.
pub trait Database {
    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Recorded,
    /// The unique index on (stage, source_topic, source_message_id) already contains this dead
    /// letter: Pulsar delivered it again.
    AlreadyRecorded,
}

const INSERT: &str = "INSERT INTO dead_letters (stage, failure_kind, reason, attempts, \
                      source_topic, source_message_id, failed_at, message_key, properties, \
                      payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub fn record(db: &impl Database, letter: &DeadLetter) -> Result<Outcome, Failure> {
    let optional_text = |value: &Option<String>| value.clone().map_or(Value::Null, Value::Text);
    let params = [
        Value::Text(letter.stage.clone()),
        Value::Text(letter.failure_kind.clone()),
        Value::Text(letter.reason.clone()),
        letter.attempts.map_or(Value::Null, Value::Integer),
        Value::Text(letter.source_topic.clone()),
        Value::Text(letter.source_message_id.clone()),
        optional_text(&letter.failed_at),
        optional_text(&letter.message_key),
        Value::Text(letter.properties_json.clone()),
        Value::Blob(letter.payload.clone()),
    ];

    match db.execute(INSERT, &params) {
        Ok(_) => Ok(Outcome::Recorded),
        Err(DbError::UniqueViolation(_)) => Ok(Outcome::AlreadyRecorded),
        Err(error) => Err(database_failure(letter, error)),
    }
}

/// Classifies a database error: only an unavailable database is worth a retry.
fn database_failure(letter: &DeadLetter, error: DbError) -> Failure {
    let context = format!(
        "while recording the dead letter of stage {:?} for message {} of {}",
        letter.stage, letter.source_message_id, letter.source_topic
    );
    let (transient, problem, message) = match error {
        DbError::Unavailable(message) => (true, "the database is unavailable", message),
        DbError::UniqueViolation(message) => (false, "a unique constraint failed", message),
        DbError::NotNullViolation(message) => (false, "a NOT NULL constraint failed", message),
        DbError::CheckViolation(message) => (false, "a check constraint failed", message),
        DbError::ValueTooLong(message) => (false, "a value was too long for its column", message),
        DbError::InvalidValue(message) => (
            false,
            "a value had the wrong type or format for its column",
            message,
        ),
        DbError::Other(message) => (false, "the database returned an error", message),
    };

    let reason = format!("{problem} {context}: {message}");
    if transient {
        Failure::Transient(reason)
    } else {
        Failure::Permanent(reason)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    struct FakeDatabase {
        result: Result<u64, DbError>,
        params: RefCell<Vec<Value>>,
    }

    impl Database for FakeDatabase {
        fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
            assert_eq!(statement, INSERT);
            *self.params.borrow_mut() = params.to_vec();
            self.result.clone()
        }
    }

    fn letter() -> DeadLetter {
        DeadLetter {
            stage: "store-movies".into(),
            failure_kind: "permanent".into(),
            reason: "field \"Title\" is null".into(),
            attempts: Some(1),
            source_topic: "persistent://public/default/movies".into(),
            source_message_id: "7:8:-1:-1".into(),
            failed_at: None,
            message_key: Some("k1".into()),
            properties_json: "{}".into(),
            payload: vec![0, 159, 146, 150],
        }
    }

    fn database(result: Result<u64, DbError>) -> FakeDatabase {
        FakeDatabase {
            result,
            params: RefCell::default(),
        }
    }

    #[test]
    fn record_binds_every_column() {
        let db = database(Ok(1));

        assert_eq!(record(&db, &letter()), Ok(Outcome::Recorded));

        let params = db.params.borrow();
        assert_eq!(params.len(), 10);
        assert_eq!(params[3], Value::Integer(1));
        assert_eq!(params[6], Value::Null);
        assert_eq!(params[7], Value::Text("k1".into()));
        assert_eq!(params[9], Value::Blob(vec![0, 159, 146, 150]));
    }

    #[test]
    fn record_accepts_redelivery() {
        let db = database(Err(DbError::UniqueViolation("dead_letters_source".into())));

        assert_eq!(record(&db, &letter()), Ok(Outcome::AlreadyRecorded));
    }

    #[test]
    fn record_classifies_database_errors() {
        let db = database(Err(DbError::Unavailable("connection refused".into())));
        assert_eq!(
            record(&db, &letter()),
            Err(Failure::Transient(
                "the database is unavailable while recording the dead letter of stage \
                 \"store-movies\" for message 7:8:-1:-1 of persistent://public/default/movies: \
                 connection refused"
                    .into()
            ))
        );

        let db = database(Err(DbError::ValueTooLong("stage".into())));
        let Err(Failure::Permanent(reason)) = record(&db, &letter()) else {
            panic!()
        };
        assert!(
            reason.starts_with("a value was too long for its column"),
            "{reason}"
        );
    }
}
