//! store-movies: insert each movie into `movies`, idempotently, and return the stored event.
//!
//! The database round trips are db-writer's: one INSERT, and only when it violates the
//! primary key, one SELECT of the stored row to tell a redelivery (same values, a success)
//! from a conflict (other values, a permanent failure).

use pulsar::producer::Message as Outbound;
use sqlx::sqlite::SqlitePool;

use super::database::{self, same_value};
use super::record::{self, COLUMNS, KEY_COLUMN, Row, TABLE, Value};
use super::stage::{Failure, Handler};
use crate::broker::Received;

pub struct StoreMovies {
    db: SqlitePool,
    insert: String,
    select: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Inserted,
    /// An equal row was already stored, by an earlier delivery of the same record.
    AlreadyStored,
}

impl StoreMovies {
    pub fn new(db: SqlitePool) -> StoreMovies {
        let names: Vec<&str> = COLUMNS.iter().map(|column| column.name).collect();
        let placeholders = vec!["?"; names.len() + 1].join(", ");
        let insert = format!(
            "INSERT INTO {TABLE} ({KEY_COLUMN}, {}) VALUES ({placeholders})",
            names.join(", ")
        );
        let select = format!(
            "SELECT {} FROM {TABLE} WHERE {KEY_COLUMN} = ?",
            names.join(", ")
        );
        StoreMovies { db, insert, select }
    }

    async fn store(&self, row: &Row) -> Result<Outcome, Failure> {
        let mut insert = sqlx::query(&self.insert).bind(row.key.as_str());
        for value in &row.values {
            insert = match value {
                Value::Null => insert.bind(None::<String>),
                Value::Integer(number) => insert.bind(*number),
                Value::Real(number) => insert.bind(*number),
                Value::Text(text) => insert.bind(text.as_str()),
            };
        }

        match insert.execute(&self.db).await {
            Ok(_) => Ok(Outcome::Inserted),
            Err(error) if database::is_unique_violation(&error) => {
                self.compare_with_stored(row, &error).await
            }
            Err(error) => Err(database::failure(
                &format!("inserting the record with key {:?}", row.key),
                error,
            )),
        }
    }

    async fn compare_with_stored(
        &self,
        row: &Row,
        violation: &sqlx::Error,
    ) -> Result<Outcome, Failure> {
        let action = format!("reading back the record with key {:?}", row.key);
        let stored = sqlx::query(&self.select)
            .bind(row.key.as_str())
            .fetch_optional(&self.db)
            .await
            .map_err(|error| database::failure(&action, error))?;

        // No row under this key means that another unique constraint rejected the insert.
        let Some(stored) = stored else {
            return Err(Failure::Permanent(format!(
                "a unique constraint of table {TABLE} rejected the record with key {:?}, although \
                 no record with that key is stored: {violation}",
                row.key
            )));
        };

        let mut differences = Vec::new();
        for (index, (column, new)) in COLUMNS.iter().zip(&row.values).enumerate() {
            let old = database::read_value(&stored, index)
                .map_err(|error| database::failure(&action, error))?;
            if !same_value(new, &old) {
                differences.push(format!(
                    "{}: stored {}, received {}",
                    column.name,
                    show(&old),
                    show(new)
                ));
            }
        }
        if differences.is_empty() {
            return Ok(Outcome::AlreadyStored);
        }
        Err(Failure::Permanent(format!(
            "conflict: a different record with key {:?} is already stored in table {TABLE} \
             (differs in: {})",
            row.key,
            differences.join("; ")
        )))
    }
}

impl Handler for StoreMovies {
    async fn handle(&self, message: &Received) -> Result<Option<Outbound>, Failure> {
        let object = record::parse_payload(&message.payload).map_err(Failure::Permanent)?;
        let row = record::build_row(&object).map_err(Failure::Permanent)?;
        let outcome = self.store(&row).await?;

        // db-writer logs each stored record at info level, and so does this stage.
        let outcome = match outcome {
            Outcome::Inserted => "inserted",
            Outcome::AlreadyStored => "already stored",
        };
        tracing::info!(stage = "store-movies", table = TABLE, id = %row.key, outcome, message_id = %message.message_id_text(), "record stored");

        let event = Outbound {
            payload: record::stored_event(&row),
            partition_key: Some(row.key),
            ..Default::default()
        };
        Ok(Some(event))
    }
}

/// Formats a value for a conflict message, shortening text to 40 characters.
fn show(value: &Value) -> String {
    const MAX_CHARS: usize = 40;
    match value {
        Value::Null => "null".to_string(),
        Value::Integer(number) => number.to_string(),
        Value::Real(number) => number.to_string(),
        Value::Text(text) if text.chars().count() > MAX_CHARS => {
            format!("{:?}...", text.chars().take(MAX_CHARS).collect::<String>())
        }
        Value::Text(text) => format!("{text:?}"),
    }
}
