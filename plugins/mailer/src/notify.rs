//! Sending one email per stored record, remembered in the `notifications` table.
//!
//! Per record key: a row in state 'sent' means done. Otherwise the row is created (or its
//! attempt counter raised) in state 'pending', the email is sent, and the row becomes
//! 'sent'.
//!
//! Between the send and marking the row 'sent' two things can go wrong:
//! - The database fails. The email is out, so the message counts as handled: a retry would
//!   only send a copy. The row stays 'pending' and the stage logs a warning.
//! - The host dies. The redelivery finds the row 'pending' and sends the email again, with
//!   the same Message-ID, so a receiving system can drop the copy.
//!
//! NOTE: two copies of the same event handled at the same moment by two instances can both
//! find the row 'pending' and both send. Copies exist when db-writer published the event
//! twice, after a redelivery, and a Shared subscription hands them to different instances.

use sha2::{Digest, Sha256};

use crate::bindings::magnetar::stage::database::{Backend, Error as DbError, Rows, Value};
use crate::bindings::magnetar::stage::mail::{Email, Error as MailError};
use crate::bindings::magnetar::stage::types::Failure;

/// The database calls the mailer makes, so that the flow runs in native tests.
pub trait Database {
    fn backend(&self) -> Backend;
    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError>;
    fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError>;
}

pub trait Mailer {
    fn send(&self, email: &Email) -> Result<(), MailError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    AlreadySent,
    /// Sent, but marking the row 'sent' failed for the given reason.
    SentNotRecorded(String),
}

/// Returns a Message-ID that is the same for every send for `record_key`: the SHA-256 of
/// the key in hex. A hash keeps the ID valid (RFC 5322 allows only some ASCII characters)
/// and short (a key may be 255 characters, many of them multi-byte).
pub fn message_id(record_key: &str) -> String {
    let digest = Sha256::digest(record_key.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("<{hex}@magnetar>")
}

/// Sends `email` for `record_key` unless the notifications table records it as sent.
pub fn notify(
    db: &impl Database,
    mailer: &impl Mailer,
    record_key: &str,
    email: &Email,
) -> Result<Outcome, Failure> {
    let database_error = |error| database_failure(record_key, error);

    let claimed = match read_state(db, record_key).map_err(database_error)? {
        Some(State::Sent) => false,
        Some(State::Pending) => count_attempt(db, record_key).map_err(database_error)?,
        None => insert_pending(db, record_key, email).map_err(database_error)?,
    };
    if !claimed {
        return Ok(Outcome::AlreadySent);
    }

    mailer
        .send(email)
        .map_err(|error| mail_failure(record_key, error))?;

    let mark_sent = format!(
        "UPDATE notifications SET state = 'sent', sent_at = {} WHERE record_key = ?",
        utc_now_sql(db.backend())
    );
    match db.execute(&mark_sent, &[text(record_key)]) {
        Ok(_) => Ok(Outcome::Sent),
        Err(error) => {
            let reason = match database_failure(record_key, error) {
                Failure::Transient(reason)
                | Failure::Permanent(reason)
                | Failure::Misconfigured(reason) => reason,
            };
            Ok(Outcome::SentNotRecorded(reason))
        }
    }
}

enum State {
    Pending,
    Sent,
}

fn read_state(db: &impl Database, record_key: &str) -> Result<Option<State>, DbError> {
    let rows = db.query(
        "SELECT state FROM notifications WHERE record_key = ?",
        &[text(record_key)],
    )?;
    // MySQL reports a utf8mb4_bin column as binary, so the state may come back as a blob.
    let state = rows
        .rows
        .first()
        .and_then(|row| row.first())
        .map(|value| match value {
            Value::Text(state) if state == "sent" => State::Sent,
            Value::Blob(state) if state == b"sent" => State::Sent,
            _ => State::Pending,
        });
    Ok(state)
}

/// Creates the 'pending' row. Returns false when a concurrent delivery sent the email
/// between the read and this insert.
fn insert_pending(db: &impl Database, record_key: &str, email: &Email) -> Result<bool, DbError> {
    let message_id = email.message_id.clone().unwrap_or_default();
    let inserted = db.execute(
        "INSERT INTO notifications (record_key, state, message_id, attempts) \
         VALUES (?, 'pending', ?, 1)",
        &[text(record_key), Value::Text(message_id)],
    );
    match inserted {
        Ok(_) => Ok(true),
        // Portable alternative to an upsert, whose syntax differs on every backend.
        Err(DbError::UniqueViolation(_)) => match read_state(db, record_key)? {
            Some(State::Sent) => Ok(false),
            Some(State::Pending) | None => count_attempt(db, record_key),
        },
        Err(error) => Err(error),
    }
}

/// Counts one more send attempt. Returns false when the row became 'sent' meanwhile.
fn count_attempt(db: &impl Database, record_key: &str) -> Result<bool, DbError> {
    let changed = db.execute(
        "UPDATE notifications SET attempts = attempts + 1 \
         WHERE record_key = ? AND state = 'pending'",
        &[text(record_key)],
    )?;
    Ok(changed > 0)
}

/// Returns the SQL expression for the current UTC time as RFC 3339 text with seconds, the
/// format of every timestamp column in the migrations.
fn utc_now_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
        Backend::Mysql => "DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%dT%H:%i:%sZ')",
        Backend::Postgres => "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

/// Classifies a database error: only an unavailable database is worth a retry.
fn database_failure(record_key: &str, error: DbError) -> Failure {
    let context = format!("while recording the notification for {record_key:?}");
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

/// Classifies a mail error: a 4xx rejection and an unreachable server are worth a retry.
fn mail_failure(record_key: &str, error: MailError) -> Failure {
    let email = format!("the email for {record_key:?}");
    match error {
        MailError::Invalid(message) => Failure::Permanent(format!("{email} is invalid: {message}")),
        MailError::PermanentRejection(message) => {
            Failure::Permanent(format!("the mail server rejected {email}: {message}"))
        }
        MailError::TransientRejection(message) => Failure::Transient(format!(
            "the mail server rejected {email} for now: {message}"
        )),
        MailError::ConnectionFailure(message) => Failure::Transient(format!(
            "could not reach the mail server to send {email}: {message}"
        )),
    }
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
