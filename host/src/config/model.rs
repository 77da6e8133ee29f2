//! The validated pipeline: every default applied, every path absolute, every topic qualified.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;

use super::errors::Location;
use super::secret::{Secret, SecretUrl};
use super::topic::TopicPattern;

/// Per-call deadline. Long enough for a database write or an SMTP exchange with a healthy
/// backend, short enough that a stuck handler gives its slot back within seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Linear memory per instance: room for a Rust component's heap and several copies of a
/// maximum-size message, while 256 parallel instances of one stage reserve at most 16 GiB.
pub const DEFAULT_MEMORY: u64 = 64 << 20;

/// Largest payload handed to a component. A fifth of the broker's default `maxMessageSize`
/// (5 MiB in Pulsar 4.0's `broker.conf`) and a sixty-fourth of [`DEFAULT_MEMORY`], so the
/// payload and its parsed copies fit in one instance.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 20;

/// WebAssembly 32-bit linear memory cannot grow past 4 GiB.
pub const MAX_MEMORY: u64 = 4 << 30;

/// One WebAssembly page, the smallest memory an instance can have.
pub const MIN_MEMORY: u64 = 64 << 10;

/// Delivery attempts before dead-lettering. Doubling from one second, the five attempts
/// span 15 seconds of waiting, which outlasts a brief hiccup of a backend.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Wait before the first redelivery.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// Cap on the doubling wait, so a message is retried at least once a minute.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One handler in flight keeps messages in order on exclusive and failover subscriptions and
/// puts the least load on the database. Raise it per stage for throughput.
pub const DEFAULT_PARALLELISM: usize = 1;

/// Upper bound of `parallelism`: 256 instances of [`DEFAULT_MEMORY`] reserve 16 GiB.
pub const MAX_PARALLELISM: usize = 256;

/// Database pool size. Enough for a few stages at the default parallelism, and small next
/// to the default server limits (151 connections in MySQL and MariaDB, 100 in PostgreSQL),
/// so several hosts can share one server.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

/// Health and metrics endpoint. Loopback only, so nothing is exposed to the network unless
/// `health.listen` names another address. Port 9464 is the OpenTelemetry Prometheus exporter's default.
pub const DEFAULT_HEALTH_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));

/// A validated `pipeline.yaml`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file the pipeline was read from, absolute. Relative paths in it were resolved
    /// against its folder.
    pub path: PathBuf,
    pub broker: Broker,
    /// `None` when `health.listen` is `off`. A missing `health` section means the default
    /// endpoint, [`DEFAULT_HEALTH_LISTEN`].
    pub health: Option<Health>,
    pub database: Option<DatabaseConfig>,
    pub mail: Option<MailConfig>,
    pub stages: Vec<StageConfig>,
}

/// Advice for a dead letter topic from `Pipeline::stages_with_unread_dead_letters`.
pub const UNREAD_DEAD_LETTERS_ADVICE: &str = "unless its namespace sets retention, Pulsar may delete the dead \
     letters before anyone reads them: set `dead_letter_subscription` or add a stage that reads the topic";

impl Pipeline {
    pub fn stage(&self, name: &str) -> Option<&StageConfig> {
        self.stages.iter().find(|stage| stage.name == name)
    }

    /// Returns the stages whose dead letter topic no stage of this pipeline consumes and no
    /// stage keeps with a `dead_letter_subscription`. Pulsar keeps messages only for the
    /// subscriptions of a topic unless its namespace sets retention, so those dead letters
    /// can be deleted before anyone reads them.
    pub fn stages_with_unread_dead_letters(&self) -> Vec<&StageConfig> {
        let is_read_or_kept = |topic: &str| {
            self.stages.iter().any(|stage| {
                stage.inputs.contains(topic) || (stage.dead_letter == topic && stage.dead_letter_subscription.is_some())
            })
        };
        self.stages.iter().filter(|stage| !is_read_or_kept(&stage.dead_letter)).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Broker {
    /// `pulsar://` or `pulsar+ssl://` service URL.
    pub url: SecretUrl,
    /// JWT for token authentication.
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    /// The backend's migrations folder, as `<migrations>/postgres`, absolute and existing.
    pub migrations: Option<PathBuf>,
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub enum DatabaseUrl {
    /// SQLite database file, absolute.
    Sqlite(PathBuf),
    /// MySQL or MariaDB server, with the scheme normalized to `mysql://`.
    MySql(SecretUrl),
    /// PostgreSQL server, with the scheme normalized to `postgres://`.
    Postgres(SecretUrl),
}

impl DatabaseUrl {
    pub fn backend(&self) -> DatabaseBackend {
        match self {
            DatabaseUrl::Sqlite(_) => DatabaseBackend::Sqlite,
            DatabaseUrl::MySql(_) => DatabaseBackend::MySql,
            DatabaseUrl::Postgres(_) => DatabaseBackend::Postgres,
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::MySql(url) | DatabaseUrl::Postgres(url) => write!(f, "{url}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatabaseBackend {
    Sqlite,
    MySql,
    Postgres,
}

impl DatabaseBackend {
    /// Returns the backend's name, which is also its subfolder of `migrations`.
    pub fn name(self) -> &'static str {
        match self {
            DatabaseBackend::Sqlite => "sqlite",
            DatabaseBackend::MySql => "mysql",
            DatabaseBackend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub transport: MailTransport,
    /// Sender of every email.
    pub from: Mailbox,
}

#[derive(Debug, Clone)]
pub enum MailTransport {
    /// Folder that receives one `.eml` file per email, absolute. It may not exist yet.
    File(PathBuf),
    Smtp(SmtpSettings),
}

impl fmt::Display for MailTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailTransport::File(path) => write!(f, "file://{}", path.display()),
            MailTransport::Smtp(smtp) => {
                let scheme = if smtp.tls == SmtpTls::Tls {
                    "smtps"
                } else {
                    "smtp"
                };
                write!(f, "{scheme}://")?;
                if let Some(credentials) = &smtp.credentials {
                    write!(f, "{}:{}@", credentials.username, credentials.password)?;
                }
                write!(f, "{}:{}?tls={}", smtp.host, smtp.port, smtp.tls.name())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    /// The URL's port, or 465 for TLS, 587 for STARTTLS and 25 without encryption.
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<SmtpCredentials>,
}

/// User name and password from the URL, percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpCredentials {
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed. The default for `smtp://`.
    StartTls,
    /// TLS from the first byte. The default for `smtps://`.
    Tls,
    /// No encryption, for local test servers (`?tls=none`).
    Disabled,
}

impl SmtpTls {
    pub const NAMES: &[&str] = &["starttls", "tls", "none"];

    pub fn name(self) -> &'static str {
        match self {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::Disabled => "none",
        }
    }
}

/// One stage: a component, what it consumes, where its results and failures go.
///
/// `Debug` lists only the keys of `config`, because plugin settings may hold credentials.
#[derive(Clone)]
pub struct StageConfig {
    pub name: String,
    /// Component file, absolute and existing at load time.
    pub plugin: PathBuf,
    pub inputs: StageInputs,
    /// Subscription name, by default the stage name.
    pub subscription: String,
    pub subscription_type: SubscriptionType,
    pub initial_position: InitialPosition,
    /// Output name to fully qualified topic. `default` is the output `publish` uses
    /// when the component names none.
    pub outputs: BTreeMap<String, String>,
    /// Granted capabilities. Always contains [`Grant::Log`] and [`Grant::Config`].
    pub grants: BTreeSet<Grant>,
    /// The stage's `config` mapping, passed to the component as JSON. An empty object when
    /// the stage has none.
    pub config: serde_json::Value,
    pub retry: RetryPolicy,
    /// Fully qualified topic, by default `<first input>-<subscription>-DLQ` (see
    /// `routing::default_topic_prefix`).
    pub dead_letter: String,
    /// Fully qualified topic, by default `<first input>-<subscription>-RETRY`.
    pub retry_topic: String,
    /// Subscription that the host creates on the dead letter topic at start, so Pulsar keeps
    /// the dead letters until someone reads them (Pulsar's `initialSubscriptionName`).
    pub dead_letter_subscription: Option<String>,
    pub limits: Limits,
    /// Handlers in flight for this stage, in `1..=MAX_PARALLELISM`.
    pub parallelism: usize,
    /// Position of the `plugin` value in the pipeline file, for problems found after loading.
    pub plugin_location: Location,
    /// Position of the `grants` list, or of the stage when it has none.
    pub grants_location: Location,
}

impl StageConfig {
    pub fn is_granted(&self, grant: Grant) -> bool {
        self.grants.contains(&grant)
    }
}

impl fmt::Debug for StageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config_keys: Vec<&String> = match &self.config {
            serde_json::Value::Object(map) => map.keys().collect(),
            _ => Vec::new(),
        };
        f.debug_struct("StageConfig")
            .field("name", &self.name)
            .field("plugin", &self.plugin)
            .field("inputs", &self.inputs)
            .field("subscription", &self.subscription)
            .field("subscription_type", &self.subscription_type)
            .field("initial_position", &self.initial_position)
            .field("outputs", &self.outputs)
            .field("grants", &self.grants)
            .field("config_keys", &config_keys)
            .field("retry", &self.retry)
            .field("dead_letter", &self.dead_letter)
            .field("retry_topic", &self.retry_topic)
            .field("dead_letter_subscription", &self.dead_letter_subscription)
            .field("limits", &self.limits)
            .field("parallelism", &self.parallelism)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub enum StageInputs {
    /// Fully qualified topic names, without duplicates.
    Topics(Vec<String>),
    Pattern(TopicPattern),
}

impl StageInputs {
    /// Returns whether these inputs include the fully qualified `topic`, by name or pattern.
    pub fn contains(&self, topic: &str) -> bool {
        match self {
            StageInputs::Topics(topics) => topics.iter().any(|input| input == topic),
            StageInputs::Pattern(pattern) => pattern.regex.is_match(topic),
        }
    }
}

/// A capability interface that a stage may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grant {
    Database,
    Mail,
    Publish,
    Log,
    Config,
}

impl Grant {
    pub const ALL: [Grant; 5] = [
        Grant::Database,
        Grant::Mail,
        Grant::Publish,
        Grant::Log,
        Grant::Config,
    ];

    /// Grants that every stage has whether or not `grants` lists them.
    pub const ALWAYS: [Grant; 2] = [Grant::Log, Grant::Config];

    /// Returns the name used in `grants` and in the WIT package, as `database`.
    pub fn interface_name(self) -> &'static str {
        match self {
            Grant::Database => "database",
            Grant::Mail => "mail",
            Grant::Publish => "publish",
            Grant::Log => "log",
            Grant::Config => "config",
        }
    }

    /// Returns the grant with this interface name.
    pub fn parse(name: &str) -> Option<Grant> {
        Grant::ALL
            .into_iter()
            .find(|grant| grant.interface_name() == name)
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.interface_name())
    }
}

/// Pulsar subscription type, which decides how messages are spread over consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionType {
    #[default]
    Shared,
    KeyShared,
    Failover,
    Exclusive,
}

impl SubscriptionType {
    pub const NAMES: &[&str] = &["shared", "key_shared", "failover", "exclusive"];

    pub fn name(self) -> &'static str {
        match self {
            SubscriptionType::Shared => "shared",
            SubscriptionType::KeyShared => "key_shared",
            SubscriptionType::Failover => "failover",
            SubscriptionType::Exclusive => "exclusive",
        }
    }

    pub fn parse(name: &str) -> Option<SubscriptionType> {
        [
            Self::Shared,
            Self::KeyShared,
            Self::Failover,
            Self::Exclusive,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }
}

/// Start position of a new subscription. An existing subscription keeps its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialPosition {
    #[default]
    Earliest,
    Latest,
}

impl InitialPosition {
    pub const NAMES: &[&str] = &["earliest", "latest"];

    pub fn name(self) -> &'static str {
        match self {
            InitialPosition::Earliest => "earliest",
            InitialPosition::Latest => "latest",
        }
    }

    pub fn parse(name: &str) -> Option<InitialPosition> {
        [Self::Earliest, Self::Latest]
            .into_iter()
            .find(|position| position.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delivery attempts in total, at least 1. 1 means no retry.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    /// At least `initial_backoff`.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Returns the wait before redelivering a message whose attempt number `attempt`
    /// (counted from 1) failed: `initial_backoff * 2^(attempt - 1)`, capped at `max_backoff`.
    /// Attempt 0 is treated as 1.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        2u32.checked_pow(doublings)
            .and_then(|factor| self.initial_backoff.checked_mul(factor))
            .map_or(self.max_backoff, |wait| wait.min(self.max_backoff))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deadline for one call of the component, enforced with epoch interruption.
    pub timeout: Duration,
    /// Maximum linear memory per instance, in bytes.
    pub memory: u64,
    /// Largest payload in bytes handed to the component. Larger messages are dead-lettered
    /// without a call. Always less than `memory`.
    pub max_message_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            memory: DEFAULT_MEMORY,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_initial_and_caps() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        };
        assert_eq!(policy.backoff(0), Duration::from_secs(1));
        assert_eq!(policy.backoff(1), Duration::from_secs(1));
        assert_eq!(policy.backoff(2), Duration::from_secs(2));
        assert_eq!(policy.backoff(4), Duration::from_secs(8));
        assert_eq!(policy.backoff(7), Duration::from_secs(60));
        assert_eq!(policy.backoff(40), Duration::from_secs(60));
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn grant_names_round_trip() {
        for grant in Grant::ALL {
            assert_eq!(Grant::parse(grant.interface_name()), Some(grant));
        }
        assert_eq!(Grant::parse("mial"), None);
    }

    #[test]
    fn smtp_transport_display_hides_password() {
        let transport = MailTransport::Smtp(SmtpSettings {
            host: "mail.example.com".into(),
            port: 587,
            tls: SmtpTls::StartTls,
            credentials: Some(SmtpCredentials {
                username: "app".into(),
                password: Secret::new("hunter2"),
            }),
        });
        assert_eq!(
            transport.to_string(),
            "smtp://app:***@mail.example.com:587?tls=starttls"
        );
        assert!(!format!("{transport:?}").contains("hunter2"));
    }
}
