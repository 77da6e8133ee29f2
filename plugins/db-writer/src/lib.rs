//! db-writer: stores each JSON message as one row of a table, idempotently, then publishes
//! a "stored" event for the next stage.
//!
//! Layout:
//! - `config`: the stage's `config` section (table, key, column mapping)
//! - `record`: payload parsing, field conversion, key derivation
//! - `date`: date parsing to ISO 8601 text
//! - `compare`: backend-neutral comparison of stored and received values
//! - `store`: the insert, and the duplicate check when the key is already stored
//!
//! The event is published on every success, including when an equal row was already
//! stored. So when the host crashes between the insert and the publish, the redelivered
//! message publishes the event that was lost.
//!
//! Imports: database, publish, log, config.

pub mod compare;
pub mod config;
mod date;
pub mod record;
pub mod store;
#[cfg(test)]
mod testing;

// The generated export shim takes the message as 15 flat core-wasm arguments.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "stage",
        additional_derives: [PartialEq],
    });
}

use bindings::{Failure, Guest, Message, magnetar};

use magnetar::stage::config as host_config;
use magnetar::stage::database::{self, Error as DbError, Rows, Value};
use magnetar::stage::log::{self, Level};
use magnetar::stage::publish::{self, Outbound};

use crate::config::Config;
use crate::store::Database;

struct DbWriter;

impl Guest for DbWriter {
    fn handle(message: Message) -> Result<(), Failure> {
        // A broken config is the operator's fault, not the message's: the host pauses the
        // stage and the messages wait in the subscription until it runs with a fixed config.
        let config = Config::parse(&host_config::get_json()).map_err(|error| {
            log::write(Level::Error, &error, &[]);
            Failure::Misconfigured(error)
        })?;

        let object = record::parse_payload(&message.payload).map_err(Failure::Permanent)?;
        let row = record::build_row(&config, &object).map_err(Failure::Permanent)?;
        let outcome = store::store(&HostDatabase, &config, &row)?;

        publish_stored_event(&config, &row)?;
        log::write(
            Level::Info,
            "record stored",
            &[
                ("table".to_string(), config.table.clone()),
                ("id".to_string(), row.key.clone()),
                ("outcome".to_string(), outcome.as_str().to_string()),
                ("message_id".to_string(), message.message_id),
            ],
        );
        Ok(())
    }
}

/// Publishes `{"id": ..., "table": ..., "record": {column: value, ...}}` to the default
/// output, keyed by the record id.
fn publish_stored_event(config: &Config, row: &record::Row) -> Result<(), Failure> {
    let event = serde_json::json!({
        "id": row.key,
        "table": config.table,
        "record": record::record_json(config, &row.values),
    });
    let outbound = Outbound {
        output: None,
        key: Some(row.key.clone()),
        properties: Vec::new(),
        payload: event.to_string().into_bytes(),
    };

    publish::send(&outbound).map_err(|error| match error {
        // The pipeline, not the message, lacks the output: wait for a fixed pipeline.yaml.
        publish::Error::UnknownOutput(message) => Failure::Transient(format!(
            "cannot publish the stored event for {:?}: {message}; give the stage a default \
             output in pipeline.yaml",
            row.key
        )),
        publish::Error::LimitExceeded(message) => Failure::Permanent(format!(
            "cannot publish the stored event for {:?}: {message}",
            row.key
        )),
    })
}

/// The database that the host grants this stage.
struct HostDatabase;

impl Database for HostDatabase {
    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
        database::execute(statement, params)
    }

    fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError> {
        database::query(statement, params)
    }
}

bindings::export!(DbWriter with_types_in bindings);
