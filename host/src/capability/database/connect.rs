//! Connection pools per backend, opened from a database URL.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Executor};

use crate::bindings::database::Backend;

/// How long a statement waits for a pooled connection, a new connection included, before
/// it fails as `unavailable`. Shorter than the default stage timeout of 5 s, so that a
/// stage gets the typed error in time to return a transient failure.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long SQLite waits for another connection's write lock before it returns SQLITE_BUSY.
/// A write transaction of a stage takes milliseconds, so this covers a long queue of them.
/// Shorter than the default stage timeout of 5 s, so that a stage gets the typed error, and
/// the pipeline pauses, before the call times out and spends an attempt.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// MySQL and MariaDB session mode. Strict mode turns a value that is too long or invalid
/// into an error, where the non-strict default truncates it or stores zero with a warning.
/// `PIPES_AS_CONCAT` makes `||` concatenate, as on SQLite and PostgreSQL.
pub const MYSQL_SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
    ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,PIPES_AS_CONCAT";

/// Size and timeout of a connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections open at most. An in-memory SQLite database always uses one.
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl PoolSettings {
    pub fn new(max_connections: u32) -> Self {
        PoolSettings {
            max_connections,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

#[derive(Clone)]
pub(super) enum Pool {
    Sqlite(SqlitePool),
    MySql(MySqlPool),
    Postgres(PgPool),
}

impl Pool {
    pub(super) fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::MySql(_) => Backend::Mysql,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Returns the backend a URL names, from its scheme.
pub(super) fn backend_of(url: &str) -> anyhow::Result<Backend> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    match scheme {
        "sqlite" => Ok(Backend::Sqlite),
        "mysql" | "mariadb" => Ok(Backend::Mysql),
        "postgres" | "postgresql" => Ok(Backend::Postgres),
        _ => anyhow::bail!(
            "unsupported database URL `{}`: expected sqlite://path, sqlite::memory:, \
             mysql:// (or mariadb://) or postgres:// (or postgresql://)",
            redact(url)
        ),
    }
}

/// Builds a pool that opens its connections on first use.
pub(super) fn lazy_pool(url: &str, settings: PoolSettings) -> anyhow::Result<Pool> {
    let invalid = || format!("invalid database URL `{}`", redact(url));
    let pool = match backend_of(url)? {
        Backend::Sqlite => {
            let in_memory = is_sqlite_memory(url);
            let mut options = SqliteConnectOptions::from_str(url)
                .with_context(invalid)?
                .create_if_missing(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true);
            let mut pool = SqlitePoolOptions::new().acquire_timeout(settings.acquire_timeout);
            if in_memory {
                // Connections to a shared in-memory database lock each other's tables with
                // SQLITE_LOCKED instead of waiting, and the database disappears with its
                // last connection, so the pool keeps exactly one connection open.
                pool = pool
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            } else {
                // WAL lets readers run while one connection writes. In WAL mode, NORMAL
                // synchronisation loses no committed row when the process crashes, only on
                // power loss, and saves an fsync per commit.
                options = options.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal);
                pool = pool.max_connections(settings.max_connections);
            }
            Pool::Sqlite(pool.connect_lazy_with(options))
        }
        Backend::Mysql => {
            // utf8mb4_bin compares text byte for byte, as SQLite and PostgreSQL do. The
            // session time zone is UTC, so TIMESTAMP values read back as UTC.
            let options = MySqlConnectOptions::from_str(&mysql_url(url))
                .with_context(invalid)?
                .charset("utf8mb4")
                .collation("utf8mb4_bin")
                .timezone(Some("+00:00".to_owned()))
                .pipes_as_concat(false)
                .no_engine_substitution(false);
            let pool = MySqlPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(settings.acquire_timeout)
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        let statement = format!("SET SESSION sql_mode = '{MYSQL_SQL_MODE}'");
                        connection.execute(statement.as_str()).await.map(drop)
                    })
                });
            Pool::MySql(pool.connect_lazy_with(options))
        }
        Backend::Postgres => {
            let mut options = PgConnectOptions::from_str(url).with_context(invalid)?;
            if options.get_application_name().is_none() {
                options = options.application_name("magnetar");
            }
            let pool = PgPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(settings.acquire_timeout);
            Pool::Postgres(pool.connect_lazy_with(options))
        }
    };
    Ok(pool)
}

/// Opens one connection outside the pool and returns its error, or `None` when it succeeds
/// or the URL does not parse.
pub(super) async fn direct_attempt(url: &str, timeout: Duration) -> Option<String> {
    let attempt = async {
        match backend_of(url).ok()? {
            Backend::Sqlite => SqliteConnectOptions::from_str(url)
                .ok()?
                .connect()
                .await
                .err(),
            Backend::Mysql => MySqlConnectOptions::from_str(&mysql_url(url))
                .ok()?
                .connect()
                .await
                .err(),
            Backend::Postgres => PgConnectOptions::from_str(url).ok()?.connect().await.err(),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(error) => error.map(|error| error.to_string()),
        Err(_) => Some(format!("no answer within {} s", timeout.as_secs_f32())),
    }
}

/// Renames the `mariadb:` scheme to `mysql:`, the only one that sqlx accepts.
fn mysql_url(url: &str) -> String {
    match url.strip_prefix("mariadb:") {
        Some(rest) => format!("mysql:{rest}"),
        None => url.to_owned(),
    }
}

fn is_sqlite_memory(url: &str) -> bool {
    let database = url.trim_start_matches("sqlite:").trim_start_matches("//");
    database.starts_with(":memory:") || database.contains("mode=memory")
}

/// Returns what to check when connecting fails.
pub(super) fn connect_hint(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "check that the folder of the database file exists and is writable",
        Backend::Mysql => {
            "check that the server is running and that the user, password and database in the \
             URL are right; for development, `scripts/services start mariadb` starts one"
        }
        Backend::Postgres => {
            "check that the server is running and that the user, password and database in the \
             URL are right; for development, `scripts/services start postgres` starts one"
        }
    }
}

/// Returns `url` with its password, and any query parameter named like one, replaced by
/// `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let mut redacted = url.to_owned();

    if let Some(scheme_end) = url.find("://") {
        let authority_start = scheme_end + 3;
        let rest = &url[authority_start..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            redacted.replace_range(authority_start + colon + 1..authority_start + at, "***");
        }
    }

    if let Some(query_start) = redacted.find('?') {
        let query: Vec<String> = redacted[query_start + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                    format!("{name}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        redacted = format!("{}?{}", &redacted[..query_start], query.join("&"));
    }
    redacted
}
