//! dlq-logger: records each dead letter in the `dead_letters` table and logs it at warn.
//!
//! Layout:
//! - `dead_letter`: the context properties that the host sets, read into one row
//! - `store`: the insert, idempotent through the table's unique index
//!
//! Imports: database, log.

mod dead_letter;
mod store;

// The generated export shim takes the message as 15 flat core-wasm arguments.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "stage",
        additional_derives: [PartialEq],
    });
}

use bindings::{Failure, Guest, Message, magnetar};

use magnetar::stage::database::{self, Error as DbError, Value};
use magnetar::stage::log::{self, Level};

use crate::dead_letter::DeadLetter;
use crate::store::Outcome;

struct DlqLogger;

impl Guest for DlqLogger {
    fn handle(message: Message) -> Result<(), Failure> {
        let letter = DeadLetter::from_message(&message);
        let outcome = store::record(&HostDatabase, &letter)?;

        let fields = [
            ("stage".to_string(), letter.stage),
            ("kind".to_string(), letter.failure_kind),
            ("reason".to_string(), letter.reason),
            ("source_topic".to_string(), letter.source_topic),
            ("source_message_id".to_string(), letter.source_message_id),
        ];
        match outcome {
            Outcome::Recorded => log::write(Level::Warn, "dead letter recorded", &fields),
            Outcome::AlreadyRecorded => {
                log::write(Level::Debug, "dead letter already recorded", &fields)
            }
        }
        Ok(())
    }
}

/// The database that the host grants this stage.
struct HostDatabase;

impl store::Database for HostDatabase {
    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
        database::execute(statement, params)
    }
}

bindings::export!(DlqLogger with_types_in bindings);
