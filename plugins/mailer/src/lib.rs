//! mailer: sends one email per stored record, for the "stored" events that db-writer
//! publishes. The `notifications` table remembers what was sent. A host crash between the
//! send and that record sends a second copy on redelivery, with the same Message-ID.
//!
//! Layout:
//! - `config`: the stage's `config` section (recipients and templates)
//! - `template`: `{{name}}` templates and escaping
//! - `event`: the stored event and the email rendered from it
//! - `notify`: the notifications table and the send
//!
//! Imports: database, mail, log, config.

mod config;
mod event;
mod notify;
mod template;

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

use magnetar::stage::config as host_config;
use magnetar::stage::database::{self, Backend, Error as DbError, Rows, Value};
use magnetar::stage::log::{self, Level};
use magnetar::stage::mail::{self, Email, Error as MailError};

use crate::config::Config;
use crate::event::StoredEvent;
use crate::notify::Outcome;

struct Mailer;

impl Guest for Mailer {
    fn handle(message: Message) -> Result<(), Failure> {
        // A broken config is the operator's fault, not the message's: the host pauses the
        // stage and the messages wait in the subscription until it runs with a fixed config.
        let config = Config::parse(&host_config::get_json()).map_err(|error| {
            log::write(Level::Error, &error, &[]);
            Failure::Misconfigured(error)
        })?;

        let event = StoredEvent::parse(&message.payload).map_err(Failure::Permanent)?;
        let message_id = notify::message_id(&event.id);
        let email = event
            .render_email(&config, message_id.clone())
            .map_err(Failure::Permanent)?;

        let outcome = notify::notify(&HostDatabase, &HostMail, &event.id, &email)?;
        let (level, text) = match &outcome {
            Outcome::Sent => (Level::Info, "notification sent".to_string()),
            Outcome::AlreadySent => (
                Level::Info,
                "notification already sent, not sending again".to_string(),
            ),
            Outcome::SentNotRecorded(reason) => (
                Level::Warn,
                format!(
                    "notification sent, but {reason}; the row stays 'pending', and a later \
                     copy of this event would send the email again"
                ),
            ),
        };
        log::write(
            level,
            &text,
            &[
                ("id".to_string(), event.id),
                ("email_message_id".to_string(), message_id),
                (
                    "recipients".to_string(),
                    (email.to.len() + email.cc.len()).to_string(),
                ),
                ("message_id".to_string(), message.message_id),
            ],
        );
        Ok(())
    }
}

/// The database that the host grants this stage.
struct HostDatabase;

impl notify::Database for HostDatabase {
    fn backend(&self) -> Backend {
        database::backend_kind()
    }

    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
        database::execute(statement, params)
    }

    fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError> {
        database::query(statement, params)
    }
}

/// The mail transport that the host grants this stage.
struct HostMail;

impl notify::Mailer for HostMail {
    fn send(&self, email: &Email) -> Result<(), MailError> {
        mail::send(email)
    }
}

bindings::export!(Mailer with_types_in bindings);
