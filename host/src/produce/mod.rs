//! `magnetar produce`: publish the records of a file to a topic.
//!
//! [`produce_file`] reads every record and builds every key before it connects, so a file
//! that cannot be read fails without touching the broker. Records that cannot be read or
//! keyed are reported with their position and not sent. Every message handed to the
//! producer is counted as confirmed only when the broker's receipt arrives.
//!
//! - `input`: reading JSON arrays, JSON Lines and CSV into compact JSON records.
//! - `key`: message keys from a field or a template.
//! - `publish`: the producer, the rate limit and the receipts.

mod input;
mod key;
mod publish;

use std::fmt;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use input::{Format, Position, Problem};
pub use key::{KeySource, KeyTemplate};
pub use publish::{BATCH_DELAY, BATCH_MAX_BYTES, BATCH_SIZE};


/// Broker URL used when neither `--broker` nor `MAGNETAR_BROKER` is set.
pub const DEFAULT_BROKER: &str = "pulsar://127.0.0.1:6650";

/// Exit status when every message sent was confirmed but some records were invalid.
pub const EXIT_INVALID_RECORDS: u8 = 2;

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  every record was sent and confirmed by the broker
  1  a message was not confirmed, or the command failed
  2  every message sent was confirmed, but some records were invalid and not sent
     (an invalid command line also exits with 2)

At the end, stdout shows `sent N, confirmed N, invalid N` and one line per record that was \
invalid or not confirmed, with its position: `record 17 (line 18)` for an element of a JSON \
array, `line 18` for JSON Lines and CSV.";

#[derive(clap::Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct ProduceArgs {
    /// Records to publish: a JSON array (one message per element), JSON Lines, or CSV with a
    /// header row (one object of strings per row, empty cells as null).
    file: PathBuf,
    /// Topic to publish to: `movies` (in public/default), `tenant/namespace/movies`, or a full
    /// name such as `persistent://tenant/namespace/movies`.
    #[arg(long)]
    topic: String,
    /// Format of FILE. Default: from its extension (.json, .jsonl or .ndjson, .csv).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Sets each message's key to this top-level field of the record. Numbers and booleans
    /// are written as text. A record without the field is reported and not sent.
    #[arg(long, value_name = "FIELD", conflicts_with = "key_template")]
    key_field: Option<String>,
    /// Sets each message's key from a template whose `{FIELD}` placeholders are replaced by
    /// top-level fields, as `{Title} ({Release Date})`. `{{` and `}}` are literal braces.
    #[arg(long, value_name = "TEMPLATE")]
    key_template: Option<KeyTemplate>,
    /// Adds a property to every message. Repeat for several.
    #[arg(long = "property", value_name = "NAME=VALUE", value_parser = parse_property)]
    properties: Vec<(String, String)>,
    /// Maximum number of messages per second, such as 100 or 0.5. 0 means no limit.
    #[arg(long, value_name = "N", default_value_t = 0.0, value_parser = parse_rate)]
    rate: f64,
    /// Broker service URL.
    #[arg(long, value_name = "URL", env = "MAGNETAR_BROKER", default_value = DEFAULT_BROKER)]
    broker: String,
    /// JWT for token authentication with the broker.
    #[arg(long, env = "PULSAR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Producer batching: `on` sends up to 100 messages or 128 KiB per broker request, after at
    /// most 10 ms. `off` sends each message on its own.
    #[arg(long, value_enum, default_value_t = Batching::On)]
    batch: Batching,
}

/// Value of `--batch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Batching {
    On,
    Off,
}

/// Everything [`produce_file`] needs. [`ProduceOptions::new`] fills in the command's defaults.
#[derive(Clone)]
pub struct ProduceOptions {
    pub file: PathBuf,
    /// Format of `file`, or `None` to pick it from the extension.
    pub format: Option<Format>,
    /// Topic name, short or fully qualified, as accepted by [`full_topic_name`].
    pub topic: String,
    pub broker: String,
    /// JWT for token authentication. `None` or an empty string connects without one.
    pub token: Option<String>,
    pub key: Option<KeySource>,
    /// Properties added to every message, as name and value.
    pub properties: Vec<(String, String)>,
    /// Maximum messages per second, or 0 for no limit.
    pub rate: f64,
    /// Whether the producer batches messages.
    pub batching: bool,
    /// Whether to draw a progress bar on stderr.
    pub progress: bool,
}

impl ProduceOptions {
    /// Options for publishing `file` to `topic` on [`DEFAULT_BROKER`], with batching, without
    /// a key, properties, rate limit or progress bar.
    pub fn new(file: impl Into<PathBuf>, topic: impl Into<String>) -> ProduceOptions {
        ProduceOptions {
            file: file.into(),
            format: None,
            topic: topic.into(),
            broker: DEFAULT_BROKER.to_owned(),
            token: None,
            key: None,
            properties: Vec::new(),
            rate: 0.0,
            batching: true,
            progress: false,
        }
    }
}

impl fmt::Debug for ProduceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProduceOptions")
            .field("file", &self.file)
            .field("format", &self.format)
            .field("topic", &self.topic)
            .field("broker", &self.broker)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("key", &self.key)
            .field("properties", &self.properties)
            .field("rate", &self.rate)
            .field("batching", &self.batching)
            .field("progress", &self.progress)
            .finish()
    }
}

impl From<ProduceArgs> for ProduceOptions {
    fn from(args: ProduceArgs) -> ProduceOptions {
        let key = match (args.key_field, args.key_template) {
            (Some(field), _) => Some(KeySource::Field(field)),
            (None, Some(template)) => Some(KeySource::Template(template)),
            (None, None) => None,
        };
        ProduceOptions {
            file: args.file,
            format: args.format,
            topic: args.topic,
            broker: args.broker,
            token: args.token,
            key,
            properties: args.properties,
            rate: args.rate,
            batching: args.batch == Batching::On,
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// Outcome of one run of [`produce_file`].
#[derive(Debug)]
pub struct Report {
    /// Fully qualified topic name.
    pub topic: String,
    /// Messages handed to the producer: every record that was read and keyed.
    pub sent: usize,
    /// Messages that the broker confirmed with a receipt.
    pub confirmed: usize,
    /// Records that were not sent because they could not be read or keyed, in file order.
    pub invalid: Vec<Problem>,
    /// Messages that failed to send or whose receipt reported an error, in file order.
    pub unconfirmed: Vec<Problem>,
}

impl Report {
    /// Exit status of the command, as described in its help text.
    pub fn exit_code(&self) -> ExitCode {
        if self.confirmed < self.sent {
            ExitCode::FAILURE
        } else if !self.invalid.is_empty() {
            ExitCode::from(EXIT_INVALID_RECORDS)
        } else {
            ExitCode::SUCCESS
        }
    }
}

impl fmt::Display for Report {
    /// Writes the summary line, then one line per invalid record and per unconfirmed message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent {}, confirmed {}, invalid {}",
            self.sent,
            self.confirmed,
            self.invalid.len()
        )?;
        for problem in self.invalid.iter().chain(&self.unconfirmed) {
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Runs `magnetar produce`: publishes the file, prints the report on stdout and returns the
/// exit status.
pub async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let report = produce_file(&ProduceOptions::from(args)).await?;
    print!("{report}");
    Ok(report.exit_code())
}

/// Publishes every valid record of `options.file` to `options.topic` and waits for the
/// broker's receipts.
///
/// Fails before connecting when an option is invalid, the file cannot be read or a JSON array
/// does not parse, and fails when the broker cannot be reached or rejects the producer.
/// Records that are invalid and messages that are not confirmed are listed in the report.
pub async fn produce_file(options: &ProduceOptions) -> anyhow::Result<Report> {
    check_rate(options.rate)?;
    check_properties(&options.properties)?;
    let topic = full_topic_name(&options.topic)?;
    let format = match options.format {
        Some(format) => format,
        None => Format::from_extension(&options.file)?,
    };

    // Read and key every record before connecting.
    let records = input::read_file(&options.file, format)?;
    let mut invalid = records.invalid;
    let messages = key_records(records.valid, options.key.as_ref(), &mut invalid);
    invalid.sort_by_key(|problem| problem.position.line());

    let token = options.token.as_deref().filter(|token| !token.is_empty());
    let pulsar = publish::connect(&options.broker, token).await?;
    let mut producer = publish::create_producer(&pulsar, &topic, options.batching).await?;
    tracing::info!(
        file = %options.file.display(),
        %topic,
        messages = messages.len(),
        invalid = invalid.len(),
        "publishing records"
    );

    let sent = messages.len();
    let progress = progress_bar(options.progress, sent);
    let settings = publish::SendSettings {
        properties: &options.properties,
        rate: options.rate,
        batching: options.batching,
    };
    let delivery = publish::send_all(&mut producer, messages, &settings, &progress).await;
    progress.finish_and_clear();
    if let Err(error) = producer.close().await {
        tracing::debug!(%topic, %error, "failed to close the producer");
    }
    // The client outlives the dropped producer, so the crate's close on drop can finish.
    drop(producer);
    tokio::time::sleep(crate::pipeline::producer::PRODUCER_CLOSE_GRACE).await;
    drop(pulsar);
    tracing::info!(
        %topic,
        confirmed = delivery.confirmed,
        unconfirmed = delivery.unconfirmed.len(),
        "published records"
    );

    Ok(Report {
        topic,
        sent,
        confirmed: delivery.confirmed,
        invalid,
        unconfirmed: delivery.unconfirmed,
    })
}

/// Builds the message of each record, with its key when `key` is given. A record whose key
/// cannot be built is added to `invalid` instead.
fn key_records(
    records: Vec<input::Record>,
    key: Option<&KeySource>,
    invalid: &mut Vec<Problem>,
) -> Vec<publish::Outgoing> {
    let mut messages = Vec::with_capacity(records.len());
    for record in records {
        let message_key = match key.map(|source| source.key_for(&record.json)) {
            None => None,
            Some(Ok(text)) => Some(text),
            Some(Err(reason)) => {
                invalid.push(Problem {
                    position: record.position,
                    reason,
                });
                continue;
            }
        };
        messages.push(publish::Outgoing {
            position: record.position,
            payload: record.json,
            key: message_key,
        });
    }
    messages
}

/// Returns the fully qualified form of a topic name, expanded the way pipeline.yaml expands
/// it (see [`crate::config::expand_topic`]).
pub fn full_topic_name(topic: &str) -> anyhow::Result<String> {
    crate::config::expand_topic(topic).map_err(|(problem, hint)| anyhow::anyhow!("{problem}; {hint}"))
}

fn progress_bar(visible: bool, messages: usize) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{wide_bar} {pos}/{len} messages ({eta} left)")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::with_draw_target(Some(messages as u64), ProgressDrawTarget::stderr())
        .with_style(style)
}

/// Parses a `--property` value, `NAME=VALUE`. The value may contain `=` and may be empty.
fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!(
            "expected NAME=VALUE with a non-empty name, found `{text}`"
        )),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("expected a number of messages per second, found `{text}`"))?;
    check_rate(rate).map_err(|error| error.to_string())?;
    Ok(rate)
}

fn check_rate(rate: f64) -> anyhow::Result<()> {
    if !rate.is_finite() || rate < 0.0 {
        bail!(
            "invalid rate {rate}: expected 0 (no limit) or a positive number of messages per second"
        );
    }
    Ok(())
}

fn check_properties(properties: &[(String, String)]) -> anyhow::Result<()> {
    for (index, (name, _)) in properties.iter().enumerate() {
        if name.is_empty() {
            bail!("a property has an empty name (write NAME=VALUE)");
        }
        if properties[..index]
            .iter()
            .any(|(earlier, _)| earlier == name)
        {
            bail!("property `{name}` is set twice, but each property can be given only once");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_expand_like_pulsar_clients() {
        assert_eq!(
            full_topic_name("movies").unwrap(),
            "persistent://public/default/movies"
        );
        assert_eq!(
            full_topic_name("acme/media/movies").unwrap(),
            "persistent://acme/media/movies"
        );
        assert_eq!(
            full_topic_name("non-persistent://a/b/c").unwrap(),
            "non-persistent://a/b/c"
        );
        assert!(full_topic_name("a/b").is_err());
        assert!(full_topic_name("a//c").is_err());
    }

    #[test]
    fn property_splits_at_first_equals_sign() {
        assert_eq!(
            parse_property("source=a=b"),
            Ok(("source".to_owned(), "a=b".to_owned()))
        );
        assert_eq!(
            parse_property("empty="),
            Ok(("empty".to_owned(), String::new()))
        );
        assert!(parse_property("=x").is_err());
        assert!(parse_property("novalue").is_err());
    }

    #[test]
    fn rate_rejects_negative_and_non_finite() {
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("inf").is_err());
        assert!(parse_rate("NaN").is_err());
    }

    #[test]
    fn repeated_property_is_rejected() {
        let properties = [
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        assert!(check_properties(&properties).is_err());
    }

    #[test]
    fn exit_code_prefers_unconfirmed_over_invalid() {
        let problem = Problem {
            position: Position::Line(1),
            reason: "x".to_owned(),
        };
        let report = |confirmed, invalid: Vec<Problem>| Report {
            topic: String::new(),
            sent: 2,
            confirmed,
            invalid,
            unconfirmed: Vec::new(),
        };
        assert_eq!(report(2, Vec::new()).exit_code(), ExitCode::SUCCESS);
        assert_eq!(
            report(2, vec![problem.clone()]).exit_code(),
            ExitCode::from(EXIT_INVALID_RECORDS)
        );
        assert_eq!(report(1, vec![problem]).exit_code(), ExitCode::FAILURE);
    }
}
