//! store-movies: insert each movie into `movies`, idempotently, and return the stored event.
//!
//! The payload parsing, conversion, key, statements and comparison are db-writer's own
//! functions, called natively. The database round trips are db-writer's too: one INSERT, and
//! only when it violates the primary key, one SELECT of the stored row to tell a redelivery
//! (same values, a success) from a conflict (other values, a permanent failure). They go
//! through sqlx instead of the host's database capability.

use db_writer::compare::same_value;
use db_writer::config::Config;
use db_writer::record::{self, Row};
use db_writer::store::{Outcome, insert_statement, select_statement, show};
use pulsar::producer::Message as Outbound;
use sqlx::sqlite::SqlitePool;

use super::database;
use super::stage::{Failure, Handler};
use crate::broker::Received;

pub struct StoreMovies {
    db: SqlitePool,
    config: Config,
    insert: String,
    select: String,
}

impl StoreMovies {
    pub fn new(db: SqlitePool, config: Config) -> StoreMovies {
        let insert = insert_statement(&config);
        let select = select_statement(&config);
        StoreMovies {
            db,
            config,
            insert,
            select,
        }
    }

    async fn store(&self, row: &Row) -> Result<Outcome, Failure> {
        let mut insert = sqlx::query(&self.insert).bind(row.key.as_str());
        for value in &row.values {
            insert = database::bind(insert, value);
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
        let table = &self.config.table;
        let action = format!("reading back the record with key {:?}", row.key);
        let stored = sqlx::query(&self.select)
            .bind(row.key.as_str())
            .fetch_optional(&self.db)
            .await
            .map_err(|error| database::failure(&action, error))?;

        // No row under this key means that another unique constraint rejected the insert.
        let Some(stored) = stored else {
            return Err(Failure::Permanent(format!(
                "a unique constraint of table {table} rejected the record with key {:?}, although \
                 no record with that key is stored: {violation}",
                row.key
            )));
        };

        let mut differences = Vec::new();
        for (index, (column, new)) in self.config.columns.iter().zip(&row.values).enumerate() {
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
            "conflict: a different record with key {:?} is already stored in table {table} \
             (differs in: {})",
            row.key,
            differences.join("; ")
        )))
    }

    /// Returns the payload of the stored event that db-writer publishes:
    /// `{"id": <key>, "table": <table>, "record": {<column>: <value>, ...}}`.
    fn stored_event(&self, row: &Row) -> Vec<u8> {
        let event = serde_json::json!({
            "id": row.key,
            "table": self.config.table,
            "record": record::record_json(&self.config, &row.values),
        });
        event.to_string().into_bytes()
    }
}

impl Handler for StoreMovies {
    async fn handle(&self, message: &Received) -> Result<Option<Outbound>, Failure> {
        let object = record::parse_payload(&message.payload).map_err(Failure::Permanent)?;
        let row = record::build_row(&self.config, &object).map_err(Failure::Permanent)?;
        let outcome = self.store(&row).await?;

        // db-writer logs each stored record at info level, and so does this stage.
        tracing::info!(stage = "store-movies", table = %self.config.table, id = %row.key, outcome = outcome.as_str(), message_id = %message.message_id_text(), "record stored");

        let event = Outbound {
            payload: self.stored_event(&row),
            partition_key: Some(row.key),
            ..Default::default()
        };
        Ok(Some(event))
    }
}
