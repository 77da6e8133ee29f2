//! Idempotent insert of one row: the same key with the same values is a success, the same
//! key with other values is a permanent conflict.

use crate::bindings::magnetar::stage::database::{Error as DbError, Rows, Value};
use crate::bindings::magnetar::stage::types::Failure;
use crate::compare::same_value;
use crate::config::Config;
use crate::record::Row;

/// The database calls db-writer makes, so that the insert logic runs in native tests
/// against an in-memory fake.
pub trait Database {
    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError>;
    fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Inserted,
    /// A row with the same key and the same values was already stored, by an earlier
    /// delivery of this message or by a concurrent one.
    AlreadyStored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Inserted => "inserted",
            Outcome::AlreadyStored => "already stored",
        }
    }
}

/// Inserts `row`, or checks that an equal row is already stored under its key.
pub fn store(db: &impl Database, config: &Config, row: &Row) -> Result<Outcome, Failure> {
    let mut params = Vec::with_capacity(row.values.len() + 1);
    params.push(Value::Text(row.key.clone()));
    params.extend(row.values.iter().cloned());

    match db.execute(&insert_statement(config), &params) {
        Ok(_) => Ok(Outcome::Inserted),
        Err(DbError::UniqueViolation(message)) => compare_with_stored(db, config, row, &message),
        Err(error) => Err(database_failure(config, &row.key, "inserting", error)),
    }
}

fn compare_with_stored(
    db: &impl Database,
    config: &Config,
    row: &Row,
    violation: &str,
) -> Result<Outcome, Failure> {
    let rows = db
        .query(&select_statement(config), &[Value::Text(row.key.clone())])
        .map_err(|error| database_failure(config, &row.key, "reading back", error))?;

    // No row under this key means that another unique constraint rejected the insert.
    let Some(stored) = rows.rows.first() else {
        return Err(Failure::Permanent(format!(
            "a unique constraint of table {} rejected the record with key {:?}, although no \
             record with that key is stored: {violation}",
            config.table, row.key
        )));
    };
    if stored.len() != config.columns.len() {
        return Err(Failure::Permanent(format!(
            "reading the stored record with key {:?} returned {} values for {} columns",
            row.key,
            stored.len(),
            config.columns.len()
        )));
    }

    let differences: Vec<String> = config
        .columns
        .iter()
        .zip(&row.values)
        .zip(stored)
        .filter(|((_, new), old)| !same_value(new, old))
        .map(|((column, new), old)| {
            format!(
                "{}: stored {}, received {}",
                column.name,
                show(old),
                show(new)
            )
        })
        .collect();
    if differences.is_empty() {
        return Ok(Outcome::AlreadyStored);
    }
    Err(Failure::Permanent(format!(
        "conflict: a different record with key {:?} is already stored in table {} (differs in: \
         {})",
        row.key,
        config.table,
        differences.join("; ")
    )))
}

pub fn insert_statement(config: &Config) -> String {
    let names: Vec<&str> = config
        .columns
        .iter()
        .map(|column| column.name.as_str())
        .collect();
    let placeholders = vec!["?"; names.len() + 1].join(", ");
    format!(
        "INSERT INTO {} ({}, {}) VALUES ({placeholders})",
        config.table,
        config.key.column,
        names.join(", ")
    )
}

pub fn select_statement(config: &Config) -> String {
    let names: Vec<&str> = config
        .columns
        .iter()
        .map(|column| column.name.as_str())
        .collect();
    format!(
        "SELECT {} FROM {} WHERE {} = ?",
        names.join(", "),
        config.table,
        config.key.column
    )
}

/// Formats a value for a conflict message, shortening long text.
pub fn show(value: &Value) -> String {
    const MAX_CHARS: usize = 40;
    match value {
        Value::Null => "null".to_string(),
        Value::Integer(number) => number.to_string(),
        Value::Real(number) => number.to_string(),
        Value::Text(text) if text.chars().count() > MAX_CHARS => {
            format!("{:?}...", text.chars().take(MAX_CHARS).collect::<String>())
        }
        Value::Text(text) => format!("{text:?}"),
        // MySQL reports a utf8mb4_bin column as binary, so stored text may come back as a blob.
        Value::Blob(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => show(&Value::Text(text.to_string())),
            Err(_) => format!("{} bytes", bytes.len()),
        },
    }
}

/// Classifies a database error: only an unavailable database is worth a retry.
pub fn database_failure(config: &Config, key: &str, action: &str, error: DbError) -> Failure {
    let context = format!(
        "while {action} the record with key {key:?} in table {}",
        config.table
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
#[path = "store_tests.rs"]
mod tests;
