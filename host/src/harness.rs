//! Runs a plugin without a broker: real capabilities (a SQLite file, a captured mailbox,
//! captured publishes and logs), one message at a time, with every capability call recorded.
//!
//! Plugin authors use it from Rust tests, and `magnetar test` uses it from the command line.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use magnetar::harness::Harness;
//!
//! let harness = Harness::builder("target/wasm32-wasip2/release/db_writer.wasm")
//!     .config(serde_json::json!({ "table": "movies" }))
//!     .migrations("migrations")
//!     .build()
//!     .await?;
//! let outcome = harness.handle(Harness::message(br#"{"Title": "Heat"}"#.to_vec())).await;
//! assert!(outcome.result.is_ok(), "{:?}", outcome.result);
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::bindings::types::Message;
use crate::capability::database::Database;
use crate::capability::mail::Mailer;
use crate::capability::publish::Pending;
use crate::capability::{CallLog, CapabilityCall};
use crate::runtime::limits::{DEFAULT_MEMORY, DEFAULT_TIMEOUT};
use crate::runtime::stage::Backends;
use crate::runtime::{Runtime, StageFailure, StageRuntime, StageSpec};

/// Output topic that publishes resolve to when the test declares no outputs.
pub const TEST_OUTPUT_TOPIC: &str = "persistent://public/default/magnetar-test-output";

/// Result of one message, with the capability calls it made.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Vec<Pending>, StageFailure>,
    pub calls: Vec<CapabilityCall>,
}

pub struct HarnessBuilder {
    plugin: PathBuf,
    stage: String,
    config: serde_json::Value,
    grants: BTreeSet<String>,
    outputs: BTreeMap<String, String>,
    database_url: Option<String>,
    migrations: Option<PathBuf>,
    timeout: Duration,
    memory: u64,
}

impl HarnessBuilder {
    /// The stage's `config` section.
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }

    /// Replace the default grants (database, mail and publish).
    pub fn grants<I: IntoIterator<Item = S>, S: Into<String>>(mut self, grants: I) -> Self {
        self.grants = grants.into_iter().map(Into::into).collect();
        self
    }

    pub fn output(mut self, name: &str, topic: &str) -> Self {
        self.outputs.insert(name.to_string(), topic.to_string());
        self
    }

    /// Use this database instead of a fresh SQLite file.
    pub fn database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_string());
        self
    }

    /// Apply the migrations in this folder (its `sqlite/`, `mysql/` or `postgres/` subfolder).
    pub fn migrations(mut self, dir: impl AsRef<Path>) -> Self {
        self.migrations = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Memory limit per instance, in bytes.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }

    pub async fn build(self) -> anyhow::Result<Harness> {
        let runtime = Runtime::new(Runtime::default_cache_dir())?;
        let component = runtime.load_component(&self.plugin)?;

        let (database_url, fresh_database) = match self.database_url {
            Some(url) => (url, None),
            None => {
                let path = fresh_sqlite_path();
                (format!("sqlite://{}", path.display()), Some(path))
            }
        };
        let database = Database::connect(&database_url, 4).await?;
        if let Some(dir) = &self.migrations {
            database.migrate(dir).await?;
        }
        let mailer = Mailer::capture();

        let mut outputs = self.outputs;
        if outputs.is_empty() {
            outputs.insert("default".to_string(), TEST_OUTPUT_TOPIC.to_string());
        }
        let spec = StageSpec {
            name: self.stage,
            grants: self.grants,
            config: self.config,
            outputs,
            timeout: self.timeout,
            memory: self.memory,
        };
        let backends = Backends { database: Some(database.clone()), mailer: Some(mailer.clone()) };
        let calls = CallLog::default();
        let stage = StageRuntime::new(&runtime, &component, spec, backends, Some(calls.clone()))?;

        Ok(Harness { _runtime: runtime, stage, calls, database, mailer, next_id: AtomicU64::new(1), fresh_database })
    }
}

pub struct Harness {
    _runtime: Runtime,
    stage: StageRuntime,
    calls: CallLog,
    database: Database,
    mailer: Mailer,
    next_id: AtomicU64,
    /// The SQLite file the harness created, removed with the harness.
    fresh_database: Option<PathBuf>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(path) = &self.fresh_database {
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
        }
    }
}

impl Harness {
    pub fn builder(plugin: impl AsRef<Path>) -> HarnessBuilder {
        HarnessBuilder {
            plugin: plugin.as_ref().to_path_buf(),
            stage: "test".to_string(),
            config: serde_json::json!({}),
            grants: ["database", "mail", "publish"].into_iter().map(String::from).collect(),
            outputs: BTreeMap::new(),
            database_url: None,
            migrations: None,
            timeout: DEFAULT_TIMEOUT,
            memory: DEFAULT_MEMORY,
        }
    }

    /// A message with this payload, no key and no properties, on attempt 1.
    pub fn message(payload: impl Into<Vec<u8>>) -> Message {
        Message {
            payload: payload.into(),
            key: None,
            properties: Vec::new(),
            topic: "persistent://public/default/magnetar-test-input".to_string(),
            message_id: String::new(),
            publish_time: now_millis(),
            event_time: None,
            attempt: 1,
        }
    }

    /// Run one message. A message without an id gets a fresh one.
    pub async fn handle(&self, mut message: Message) -> Outcome {
        if message.message_id.is_empty() {
            message.message_id = format!("test:{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        }
        let result = self.stage.handle(&message).await;
        Outcome { result, calls: self.calls.take() }
    }

    /// The stage runtime, for benchmarks that call it directly.
    pub fn stage(&self) -> &StageRuntime {
        &self.stage
    }

    /// The database the plugin writes to, for checking its rows.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The mailbox that captures every email the plugin sends.
    pub fn mailer(&self) -> &Mailer {
        &self.mailer
    }
}

fn fresh_sqlite_path() -> PathBuf {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("magnetar-harness-{}-{n}.db", std::process::id()))
}

fn now_millis() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}
