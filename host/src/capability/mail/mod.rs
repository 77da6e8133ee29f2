//! The `mail` interface: emails from the pipeline's sender address through its transport.
//!
//! - [`transport`]: the transport URL (`file://`, `smtp://`, `smtps://`).
//! - `message`: the RFC 5322 message built from a guest's email.
//!
//! Send failures are classified for the guest:
//!
//! | error | cause |
//! |---|---|
//! | invalid | an address, subject or Message-ID that does not parse; no recipient |
//! | transient-rejection | an SMTP 4xx reply, with the server's reply text |
//! | permanent-rejection | an SMTP 5xx reply, with the server's reply text |
//! | connection-failure | no connection, a dropped connection, a timeout, a TLS failure, an unreadable reply, or an outbox folder that cannot be written |
//!
//! A `file://` outbox that cannot be written counts as a connection failure, the same as an
//! unreachable server: the transport is down, and a retry succeeds once it is back.

mod message;
pub mod transport;

use std::error::Error as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use lettre::AsyncTransport;
use lettre::message::Mailbox;

use crate::bindings::mail::{Email, Error, Host};
use crate::capability::{CallLog, CapabilityCall, record};
use transport::Transport;

pub use transport::SMTP_TIMEOUT;

/// Sender of [`Mailer::capture`], which delivers nowhere.
pub const CAPTURE_SENDER: &str = "Magnetar <magnetar@localhost>";

/// An email that a capturing [`Mailer`] kept instead of sending.
#[derive(Debug, Clone)]
pub struct CapturedEmail {
    /// The email as the guest passed it.
    pub email: Email,
    /// The Message-ID header, the guest's or a generated one, in angle brackets.
    pub message_id: String,
    /// The complete message as it would be sent, headers and body.
    pub raw: String,
}

/// Sends email through one transport from one sender address. Cloning shares the
/// transport and, for a capturing mailer, the captured emails.
#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    /// The transport URL without its password, for messages.
    url: Arc<str>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Mailer")
            .field("url", &self.url)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Builds a mailer for the transport at `transport_url` (see [`transport`]) that sends
    /// from `from`, an address such as `Magnetar <noreply@example.com>`.
    pub fn new(transport_url: &str, from: &str) -> anyhow::Result<Mailer> {
        let from = from.parse::<Mailbox>().with_context(|| {
            format!("invalid sender address `{from}`: expected `name@example.com` or `Name <name@example.com>`")
        })?;
        let transport = transport::from_url(transport_url)?;
        Ok(Mailer {
            transport,
            from,
            url: transport::redact(transport_url).into(),
        })
    }

    /// Builds a mailer that keeps every email in memory, for tests and the plugin harness.
    /// [`Mailer::captured`] returns them.
    pub fn capture() -> Mailer {
        Mailer {
            transport: Transport::Capture(Arc::default()),
            from: CAPTURE_SENDER
                .parse()
                .expect("the capture sender is a valid address"),
            url: "capture:".into(),
        }
    }

    /// Returns the emails captured so far, oldest first. Empty unless built by [`Mailer::capture`].
    pub fn captured(&self) -> Vec<CapturedEmail> {
        match &self.transport {
            Transport::Capture(emails) => emails
                .lock()
                .expect("captured emails lock poisoned")
                .clone(),
            _ => Vec::new(),
        }
    }

    /// Returns the transport URL without its password.
    pub fn redacted_url(&self) -> &str {
        &self.url
    }

    /// Sends `email`.
    pub async fn send(&self, email: Email) -> Result<(), Error> {
        self.deliver(&email).await.map(drop)
    }

    /// Sends `email` and returns its Message-ID.
    async fn deliver(&self, email: &Email) -> Result<String, Error> {
        let (message, message_id) = message::build(&self.from, email)?;

        match &self.transport {
            Transport::Smtp(transport) => transport
                .send(message)
                .await
                .map(drop)
                .map_err(|error| classify_smtp(error, &self.url))?,
            Transport::File { folder } => {
                write_eml(folder, &message.formatted()).await.map_err(|error| {
                    Error::ConnectionFailure(format!(
                        "writing the email to the outbox folder `{}` failed: {error}",
                        folder.display()
                    ))
                })?
            }
            Transport::Capture(emails) => {
                let raw = String::from_utf8_lossy(&message.formatted()).into_owned();
                let captured = CapturedEmail {
                    email: email.clone(),
                    message_id: message_id.clone(),
                    raw,
                };
                emails
                    .lock()
                    .expect("captured emails lock poisoned")
                    .push(captured);
            }
        }
        tracing::debug!(to = ?email.to, message_id, transport = %self.url, "email sent");
        Ok(message_id)
    }

    /// Checks that the transport works: an SMTP connection that responds to NOOP, or an outbox
    /// folder where a file can be created. The host's circuit breaker calls this to learn
    /// when the transport is back.
    pub async fn test_connection(&self) -> bool {
        match &self.transport {
            Transport::Smtp(transport) => match transport.test_connection().await {
                Ok(connected) => connected,
                Err(error) => {
                    tracing::debug!(transport = %self.url, %error, "SMTP connection test failed");
                    false
                }
            },
            Transport::File { folder, .. } => match probe_folder(folder).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::debug!(folder = %folder.display(), %error, "outbox folder is not writable");
                    false
                }
            },
            Transport::Capture(_) => true,
        }
    }
}

/// Writes one email into `folder` as `<time>-<pid>-<counter>.eml`: first under a hidden
/// temporary name, then renamed, so readers of the folder only ever see whole emails.
async fn write_eml(folder: &std::path::Path, raw: &[u8]) -> std::io::Result<()> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{nanos}-{}-{count}.eml", std::process::id());
    let temporary = folder.join(format!(".{name}.tmp"));
    tokio::fs::write(&temporary, raw).await?;
    tokio::fs::rename(&temporary, folder.join(name)).await
}

/// Creates and removes a file in `folder`.
async fn probe_folder(folder: &Path) -> std::io::Result<()> {
    let probe = folder.join(format!(".magnetar-probe-{}", std::process::id()));
    tokio::fs::write(&probe, b"").await?;
    tokio::fs::remove_file(&probe).await
}

/// Classifies an SMTP error. `url` is the redacted transport URL, for the messages of
/// failures that are not the server's replies.
fn classify_smtp(error: lettre::transport::smtp::Error, url: &str) -> Error {
    let reply = error.source().map(ToString::to_string).unwrap_or_default();
    let code = error
        .status()
        .map(|code| code.to_string())
        .unwrap_or_default();
    if error.is_transient() {
        Error::TransientRejection(format!("the SMTP server replied {code} {reply}"))
    } else if error.is_permanent() {
        Error::PermanentRejection(format!("the SMTP server replied {code} {reply}"))
    } else if error.is_timeout() {
        Error::ConnectionFailure(format!(
            "the SMTP server at `{url}` did not respond within {} s: {error}",
            SMTP_TIMEOUT.as_secs()
        ))
    } else {
        Error::ConnectionFailure(format!("sending through `{url}` failed: {error}"))
    }
}

/// Formats the error as one line, `class: message`, for logs and recorded calls.
pub fn describe_error(error: &Error) -> String {
    let (class, message) = match error {
        Error::Invalid(message) => ("invalid", message),
        Error::TransientRejection(message) => ("transient-rejection", message),
        Error::PermanentRejection(message) => ("permanent-rejection", message),
        Error::ConnectionFailure(message) => ("connection-failure", message),
    };
    format!("{class}: {message}")
}

/// The `mail` capability of one stage instance.
pub struct MailCtx {
    pub mailer: Mailer,
    pub calls: Option<CallLog>,
}

impl Host for MailCtx {
    async fn send(&mut self, email: Email) -> Result<(), Error> {
        let delivered = self.mailer.deliver(&email).await;
        if let Err(error) = &delivered {
            tracing::debug!(to = ?email.to, error = %describe_error(error), "sending an email failed");
        }

        record(&self.calls, || CapabilityCall::Mail {
            to: email.to.clone(),
            cc: email.cc.clone(),
            subject: email.subject.clone(),
            message_id: delivered
                .as_ref()
                .ok()
                .cloned()
                .or_else(|| email.message_id.clone()),
            result: delivered.as_ref().map(drop).map_err(describe_error),
        });
        delivered.map(drop)
    }
}
