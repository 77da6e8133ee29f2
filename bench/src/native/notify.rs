//! notify: send one email per stored record, as the mailer plugin does with pipeline.yaml's
//! notify config.
//!
//! The database round trips are the mailer's: read the record's `notifications` row, then
//! claim it (insert a 'pending' row, or count one more attempt on a 'pending' one), send,
//! and mark the row 'sent'. A row already 'sent' means nothing is sent again. A failure
//! after the send leaves the row 'pending', so the retry sends a copy with the same
//! Message-ID.

use std::path::Path;

use anyhow::Context as _;
use lettre::message::{Mailbox, SinglePart};
use lettre::{AsyncFileTransport, AsyncTransport as _, Message, Tokio1Executor};
use pulsar::producer::Message as Outbound;
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use sha2::{Digest as _, Sha256};
use sqlx::sqlite::SqlitePool;

use super::database;
use super::stage::{Failure, Handler};
use crate::broker::Received;

/// Sender and recipient of pipeline.yaml's `mail.from` and notify `to`.
const FROM: &str = "Movie catalogue <catalogue@example.com>";
const TO: &str = "catalogue-team@example.com";

/// The stored event that store-movies publishes. Other top-level fields are ignored.
#[derive(Debug, Deserialize)]
struct StoredEvent {
    id: String,
    record: Map<String, Json>,
}

enum State {
    Pending,
    Sent,
}

pub struct Notify {
    db: SqlitePool,
    outbox: AsyncFileTransport<Tokio1Executor>,
    from: Mailbox,
    to: Mailbox,
}

impl Notify {
    /// Sends into `outbox`, one `.eml` file per email, creating the folder when missing.
    pub fn new(db: SqlitePool, outbox: &Path) -> anyhow::Result<Notify> {
        std::fs::create_dir_all(outbox)
            .with_context(|| format!("failed to create the outbox folder {}", outbox.display()))?;
        Ok(Notify {
            db,
            outbox: AsyncFileTransport::new(outbox),
            from: FROM.parse().expect("FROM is a valid mailbox"),
            to: TO.parse().expect("TO is a valid mailbox"),
        })
    }

    /// Renders the email of pipeline.yaml's notify config. Values are inserted as they are,
    /// except that control characters become spaces in the subject.
    fn render(&self, event: &StoredEvent, message_id: String) -> Result<Message, String> {
        let field = |name: &str| {
            lookup(event, name).ok_or_else(|| {
                format!(
                    "the templates use {{{{{name}}}}}, but the stored event has no such field, \
                     so the email for {:?} cannot be rendered",
                    event.id
                )
            })
        };
        let title = field("title")?;
        let release_date = field("release_date")?;
        let director = field("director")?;
        let major_genre = field("major_genre")?;
        let distributor = field("distributor")?;

        let subject = format!(
            "New in the catalogue: {} ({})",
            escape_header(&title),
            escape_header(&release_date)
        );
        let text = format!(
            "{title} was added to the catalogue.\n\nReleased: {release_date}\nDirector: \
             {director}\nGenre: {major_genre}\nDistributor: {distributor}\n"
        );
        Message::builder()
            .from(self.from.clone())
            .date_now()
            .to(self.to.clone())
            .subject(subject)
            .message_id(Some(message_id))
            .singlepart(SinglePart::plain(text))
            .map_err(|error| format!("building the email for {:?} failed: {error}", event.id))
    }

    async fn read_state(&self, key: &str) -> Result<Option<State>, sqlx::Error> {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM notifications WHERE record_key = ?")
                .bind(key)
                .fetch_optional(&self.db)
                .await?;
        Ok(state.map(|state| {
            if state == "sent" {
                State::Sent
            } else {
                State::Pending
            }
        }))
    }

    /// Creates the 'pending' row. Returns false when a concurrent delivery sent the email
    /// between the read and this insert.
    async fn insert_pending(&self, key: &str, message_id: &str) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO notifications (record_key, state, message_id, attempts) \
             VALUES (?, 'pending', ?, 1)",
        )
        .bind(key)
        .bind(message_id)
        .execute(&self.db)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(error) if database::is_unique_violation(&error) => {
                match self.read_state(key).await? {
                    Some(State::Sent) => Ok(false),
                    Some(State::Pending) | None => self.count_attempt(key).await,
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Counts one more send attempt. Returns false when the row became 'sent' meanwhile.
    async fn count_attempt(&self, key: &str) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query(
            "UPDATE notifications SET attempts = attempts + 1 \
             WHERE record_key = ? AND state = 'pending'",
        )
        .bind(key)
        .execute(&self.db)
        .await?;
        Ok(updated.rows_affected() > 0)
    }

    async fn mark_sent(&self, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE notifications SET state = 'sent', \
             sent_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE record_key = ?",
        )
        .bind(key)
        .execute(&self.db)
        .await
        .map(drop)
    }
}

impl Handler for Notify {
    async fn handle(&self, message: &Received) -> Result<Option<Outbound>, Failure> {
        let event: StoredEvent = serde_json::from_slice(&message.payload).map_err(|error| {
            Failure::Permanent(format!("the payload is not a stored event: {error}"))
        })?;
        let message_id = message_id(&event.id);
        let email = self
            .render(&event, message_id.clone())
            .map_err(Failure::Permanent)?;
        let action = format!("recording the notification for {:?}", event.id);
        let database_failure = |error| database::failure(&action, error);

        let claimed = match self.read_state(&event.id).await.map_err(database_failure)? {
            Some(State::Sent) => false,
            Some(State::Pending) => self
                .count_attempt(&event.id)
                .await
                .map_err(database_failure)?,
            None => self
                .insert_pending(&event.id, &message_id)
                .await
                .map_err(database_failure)?,
        };
        if !claimed {
            tracing::info!(stage = "notify", id = %event.id, email_message_id = %message_id, "notification already sent, not sending again");
            return Ok(None);
        }

        // A folder that cannot be written is an outage of the transport, so a retry may help.
        self.outbox.send(email).await.map_err(|error| {
            Failure::Transient(format!(
                "writing the email for {:?} to the outbox failed: {error}",
                event.id
            ))
        })?;
        self.mark_sent(&event.id).await.map_err(|error| match database_failure(error) {
            Failure::Transient(reason) => Failure::Transient(format!(
                "the email was sent, but {reason}; the retry sends it again with the same Message-ID"
            )),
            Failure::Permanent(reason) => Failure::Permanent(format!("the email was sent, but {reason}")),
        })?;

        // The mailer logs each email at info level, and so does this stage.
        tracing::info!(stage = "notify", id = %event.id, email_message_id = %message_id, recipients = 1, message_id = %message.message_id_text(), "notification sent");
        Ok(None)
    }
}

/// Returns the text of a template field: a field of the record, or `id`. A null field is
/// empty text, and an unknown name returns `None`.
fn lookup(event: &StoredEvent, name: &str) -> Option<String> {
    if name == "id" {
        return Some(event.id.clone());
    }
    let text = match event.record.get(name)? {
        Json::Null => String::new(),
        Json::String(text) => text.clone(),
        other => other.to_string(),
    };
    Some(text)
}

/// Replaces control characters with spaces, so that a value cannot add header lines.
fn escape_header(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Returns the mailer's Message-ID for a record: `<sha256-hex-of-key@magnetar>`, the same for
/// every send, so a reader can recognise a second copy.
fn message_id(record_key: &str) -> String {
    let digest = Sha256::digest(record_key.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("<{hex}@magnetar>")
}
