//! The movie pipeline of `pipeline.yaml` written in plain Rust, without wasm: the same work
//! as Magnetar running the db-writer and mailer plugins, for comparing the two.
//!
//! - `store`: the store-movies stage (consumes the input, subscription `db-writer`, Shared).
//! - `notify`: the notify stage (consumes the stored events, subscription `mailer`,
//!   Key_Shared).
//! - `config`: pipeline.yaml's store-movies config, which db-writer parses.
//! - `database`: the SQLite pool with Magnetar's settings.
//! - `stage`, `batches`, `publish`: the consumer loop, acknowledgement after the broker's
//!   receipts, retries in place, and dead letters.
//!
//! The work per message is the plugins': the same statements, database round trips,
//! emails and log lines, each message acknowledged only after its stored event or dead
//! letter is confirmed. The store stage calls db-writer's own functions, natively. Three
//! things differ. The store config is parsed once at start and the mail templates are
//! compiled in, while the plugins parse their config on every message. Transient failures
//! are retried in place instead of through a retry topic, so there is no retry consumer.
//! And there is no dead-letter logging stage, no circuit breaker and no health endpoint.

mod batches;
mod config;
mod database;
mod notify;
mod publish;
mod stage;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use pulsar::SubType;
use tokio::sync::watch;

use crate::broker;
use crate::stats::Stats;
use notify::Notify;
use publish::Publisher;
use stage::{Dispatch, Retry, Stage};
use store::StoreMovies;

/// Messages in flight in store-movies, as `parallelism` in pipeline.yaml.
const STORE_PARALLELISM: usize = 4;
/// Lanes of the notify stage, as its `parallelism` in pipeline.yaml.
const NOTIFY_LANES: usize = 2;

/// store-movies' `retry` in pipeline.yaml.
const STORE_RETRY: Retry = Retry {
    max_attempts: 5,
    initial_backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(30),
};
/// Magnetar's default retry, which notify uses.
const NOTIFY_RETRY: Retry = Retry {
    max_attempts: 5,
    initial_backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(60),
};

#[derive(clap::Args)]
pub struct NativeArgs {
    /// Broker service URL.
    #[arg(long, default_value = "pulsar://127.0.0.1:6650")]
    broker: String,
    /// Topic of movie records, consumed with the Shared subscription `db-writer`.
    #[arg(long)]
    input: String,
    /// Topic of the stored events, consumed with the Key_Shared subscription `mailer`.
    #[arg(long)]
    stored_topic: String,
    /// Topic that receives the records that could not be stored or notified.
    #[arg(long)]
    dead_letter_topic: String,
    /// SQLite database, as `sqlite://FILE`; the file is created when missing.
    #[arg(long)]
    database: String,
    /// Folder of the SQLite migrations to apply at start.
    #[arg(long, default_value = "migrations/sqlite")]
    migrations: PathBuf,
    /// Folder that receives one `.eml` file per email; created when missing.
    #[arg(long)]
    outbox: PathBuf,
    /// JSON file that receives the count and latency of the store stage every second and at
    /// the end.
    #[arg(long)]
    stats: PathBuf,
    /// Seconds that in-flight messages get to finish after a shutdown signal.
    #[arg(long, default_value_t = 30)]
    grace: u64,
}

/// Runs both stages until `shutdown` turns true.
pub async fn run(args: NativeArgs, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let store_config = config::store_movies()?;
    let db = database::connect(&args.database, &args.migrations).await?;
    let notify = Notify::new(db.clone(), &args.outbox)?;
    let pulsar = broker::connect(&args.broker).await?;
    let stored = Arc::new(Publisher::new(&pulsar, &args.stored_topic).await?);
    let dead_letters = Arc::new(Publisher::new(&pulsar, &args.dead_letter_topic).await?);

    let store_stage = Arc::new(Stage {
        name: "store-movies",
        handler: StoreMovies::new(db.clone(), store_config),
        output: Some(stored.clone()),
        dead_letter: dead_letters.clone(),
        retry: STORE_RETRY,
        shutdown: shutdown.clone(),
        dead_lettered: AtomicU64::new(0),
    });
    let notify_stage = Arc::new(Stage {
        name: "notify",
        handler: notify,
        output: None,
        dead_letter: dead_letters.clone(),
        retry: NOTIFY_RETRY,
        shutdown: shutdown.clone(),
        dead_lettered: AtomicU64::new(0),
    });
    let store_consumer = broker::subscribe(
        &pulsar,
        &args.input,
        "db-writer",
        SubType::Shared,
        "magnetar-bench-store",
    )
    .await?;
    let notify_consumer = broker::subscribe(
        &pulsar,
        &args.stored_topic,
        "mailer",
        SubType::KeyShared,
        "magnetar-bench-notify",
    )
    .await?;

    let stats = Stats::new(args.stats);
    stats.write()?;
    let grace = Duration::from_secs(args.grace);
    let store = tokio::spawn(stage::run(
        store_stage,
        store_consumer,
        Dispatch::Unordered {
            parallelism: STORE_PARALLELISM,
        },
        Some(stats),
        grace,
    ));
    let notify = tokio::spawn(stage::run(
        notify_stage,
        notify_consumer,
        Dispatch::ByKey {
            lanes: NOTIFY_LANES,
        },
        None,
        grace,
    ));
    let (stored_count, notified_count) = tokio::join!(store, notify);

    stored.close().await;
    dead_letters.close().await;
    db.close().await;
    let stored_count = stored_count??;
    let notified_count = notified_count??;
    tracing::info!(
        store_acknowledged = stored_count,
        notify_acknowledged = notified_count,
        "native pipeline stopped"
    );
    Ok(())
}
