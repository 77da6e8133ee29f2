//! The `database` interface: parameterized SQL on SQLite, MySQL/MariaDB or PostgreSQL.
//!
//! One [`Database`] pool is shared by every stage. Each backend has its own concrete sqlx
//! pool, because `sqlx::Any` reduces column types to a common subset.
//!
//! - [`placeholders`]: `?` counted on every backend, renumbered for PostgreSQL.
//! - `params`: guest values bound as statement parameters.
//! - `rows`: result columns read back by their runtime type.
//! - `errors`: sqlx errors classified into the WIT error variants.

mod connect;
mod errors;
mod formats;
mod params;
pub mod placeholders;
mod rows;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::{Column, Connection, Executor, Statement};

use crate::bindings::database::{Backend, Error, Host, Rows, Value};
use crate::capability::{CallLog, CapabilityCall, record};
use connect::Pool;

pub use connect::{
    DEFAULT_ACQUIRE_TIMEOUT, MYSQL_SQL_MODE, PoolSettings, SQLITE_BUSY_TIMEOUT, redact,
};
pub use errors::describe as describe_error;

/// A connection pool on one database, shared by all stages. Cloning shares the pool.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    /// The URL with its password replaced, for messages.
    url: Arc<str>,
    acquire_timeout: Duration,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Database")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Connects to the database at `url` with up to `max_connections` pooled connections.
    ///
    /// Accepts `sqlite://path` (the file is created when missing), `sqlite::memory:`,
    /// `mysql://` or `mariadb://`, and `postgres://` or `postgresql://`. Fails when the
    /// first connection fails, with a message that names the URL without its password.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Database> {
        Self::connect_with(url, PoolSettings::new(max_connections)).await
    }

    /// Connects as [`Database::connect`] does, with a pool of the given settings.
    pub async fn connect_with(url: &str, settings: PoolSettings) -> anyhow::Result<Database> {
        let database = Self::connect_lazy(url, settings)?;
        let backend = database.backend();
        let connected = match &database.pool {
            Pool::Sqlite(pool) => pool.acquire().await.map(drop),
            Pool::MySql(pool) => pool.acquire().await.map(drop),
            Pool::Postgres(pool) => pool.acquire().await.map(drop),
        };
        match connected {
            Ok(()) => {
                tracing::info!(url = %database.url, backend = backend_folder(backend), "connected to the database");
                Ok(database)
            }
            Err(error) => {
                // A refused connection is retried until the acquire timeout, and the pool then
                // reports only the timeout. One direct attempt recovers the cause.
                let cause = match error {
                    sqlx::Error::PoolTimedOut => {
                        connect::direct_attempt(url, settings.acquire_timeout)
                            .await
                            .map_or_else(|| error.to_string(), |cause| format!("{error}: {cause}"))
                    }
                    error => error.to_string(),
                };
                anyhow::bail!(
                    "connecting to the database at `{}` failed: {cause}; {}",
                    database.url,
                    connect::connect_hint(backend)
                )
            }
        }
    }

    /// Builds the pool without connecting: connections open on first use, and a database
    /// that cannot be reached makes each call fail as `unavailable` after the acquire
    /// timeout. Fails only on a URL that does not parse.
    pub fn connect_lazy(url: &str, settings: PoolSettings) -> anyhow::Result<Database> {
        let pool = connect::lazy_pool(url, settings)?;
        Ok(Database {
            pool,
            url: redact(url).into(),
            acquire_timeout: settings.acquire_timeout,
        })
    }

    pub fn backend(&self) -> Backend {
        self.pool.backend()
    }

    /// Returns the URL without its password.
    pub fn redacted_url(&self) -> &str {
        &self.url
    }

    /// Applies the migrations in `dir/sqlite`, `dir/mysql` or `dir/postgres`, whichever
    /// matches the backend, and records them in the `_sqlx_migrations` table.
    pub async fn migrate(&self, dir: &Path) -> anyhow::Result<()> {
        let folder = dir.join(backend_folder(self.backend()));
        anyhow::ensure!(
            folder.is_dir(),
            "migrations folder `{}` not found: `{}` needs one subfolder per backend \
             (sqlite, mysql, postgres)",
            folder.display(),
            dir.display()
        );
        let migrator = Migrator::new(folder.as_path())
            .await
            .with_context(|| format!("reading migrations from `{}` failed", folder.display()))?;

        let applied = match &self.pool {
            Pool::Sqlite(pool) => migrator.run(pool).await,
            Pool::MySql(pool) => migrator.run(pool).await,
            Pool::Postgres(pool) => migrator.run(pool).await,
        };
        applied.with_context(|| {
            format!(
                "applying migrations from `{}` to `{}` failed",
                folder.display(),
                self.url
            )
        })?;
        tracing::info!(url = %self.url, folder = %folder.display(), "database migrations applied");
        Ok(())
    }

    /// Runs a statement and returns the number of rows it changed. MySQL counts the rows
    /// that matched, as the other backends do, not only those whose values changed.
    pub async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, Error> {
        let statement = self.prepare(sql, params.len())?;
        let executed = match &self.pool {
            Pool::Sqlite(pool) => {
                let arguments = params::sqlite(params)?;
                sqlx::query_with(&statement, arguments)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            }
            Pool::MySql(pool) => {
                let arguments = params::mysql(params)?;
                sqlx::query_with(&statement, arguments)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            }
            Pool::Postgres(pool) => {
                let (statement, arguments, _) = params::postgres(&statement, params)?;
                sqlx::query_with(&statement, arguments)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            }
        };
        executed.map_err(|error| self.classify(error))
    }

    /// Runs a query and returns its column names and all of its rows.
    pub async fn query(&self, sql: &str, params: Vec<Value>) -> Result<Rows, Error> {
        let statement = self.prepare(sql, params.len())?;
        let rows = match &self.pool {
            Pool::Sqlite(pool) => {
                let arguments = params::sqlite(params)?;
                let mut connection = pool.acquire().await.map_err(|error| self.classify(error))?;
                let prepared = connection
                    .prepare(&statement)
                    .await
                    .map_err(|error| self.classify(error))?;
                let fetched = prepared
                    .query_with(arguments)
                    .fetch_all(&mut *connection)
                    .await;
                collect(column_names(prepared.columns()), fetched, rows::sqlite)
            }
            Pool::MySql(pool) => {
                let arguments = params::mysql(params)?;
                let mut connection = pool.acquire().await.map_err(|error| self.classify(error))?;
                let prepared = connection
                    .prepare(&statement)
                    .await
                    .map_err(|error| self.classify(error))?;
                let fetched = prepared
                    .query_with(arguments)
                    .fetch_all(&mut *connection)
                    .await;
                collect(column_names(prepared.columns()), fetched, rows::mysql)
            }
            Pool::Postgres(pool) => {
                let (statement, arguments, types) = params::postgres(&statement, params)?;
                let mut connection = pool.acquire().await.map_err(|error| self.classify(error))?;
                // The declared types must match the arguments: see `params::postgres`.
                let prepared = connection
                    .prepare_with(&statement, &types)
                    .await
                    .map_err(|error| self.classify(error))?;
                let fetched = prepared
                    .query_with(arguments)
                    .fetch_all(&mut *connection)
                    .await;
                collect(column_names(prepared.columns()), fetched, rows::postgres)
            }
        };
        rows.map_err(|error| match error {
            CollectError::Database(error) => self.classify(error),
            CollectError::Row(error) => error,
        })
    }

    /// Checks that a connection can be acquired and responds to a ping. The host's circuit
    /// breaker calls this to learn when the database is back.
    pub async fn ping(&self) -> Result<(), Error> {
        let pinged = match &self.pool {
            Pool::Sqlite(pool) => ping_sqlite(pool).await,
            Pool::MySql(pool) => ping(pool).await,
            Pool::Postgres(pool) => ping(pool).await,
        };
        pinged.map_err(|error| self.classify(error))
    }

    /// Closes every connection and makes later calls fail as `unavailable`.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::MySql(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    /// Rewrites the placeholders for the backend and checks that `param_count` parameters fill them.
    fn prepare(&self, sql: &str, param_count: usize) -> Result<String, Error> {
        let statement = placeholders::rewrite(sql, self.backend());
        if statement.placeholders != param_count {
            return Err(Error::Other(format!(
                "the statement has {} `?` placeholders but {param_count} parameters were given; \
                 every `?` outside quotes and comments takes one parameter, in order",
                statement.placeholders
            )));
        }
        Ok(statement.sql.into_owned())
    }

    fn classify(&self, error: sqlx::Error) -> Error {
        errors::classify(error, self.acquire_timeout)
    }
}

/// Returns the backend's short name, which is also its folder under `migrations/`.
fn backend_folder(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Mysql => "mysql",
        Backend::Postgres => "postgres",
    }
}

async fn ping<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Result<(), sqlx::Error> {
    let mut connection = pool.acquire().await?;
    connection.ping().await
}

/// Checks that SQLite answers and that its write lock can be taken: another process that
/// holds the lock makes every write fail with SQLITE_BUSY, so the database counts as down
/// until it lets go.
async fn ping_sqlite(pool: &sqlx::SqlitePool) -> Result<(), sqlx::Error> {
    let mut connection = pool.acquire().await?;
    connection.ping().await?;
    let transaction = connection.begin_with("BEGIN IMMEDIATE").await?;
    transaction.rollback().await
}

fn column_names<C: Column>(columns: &[C]) -> Vec<String> {
    columns
        .iter()
        .map(|column| column.name().to_owned())
        .collect()
}

enum CollectError {
    Database(sqlx::Error),
    Row(Error),
}

fn collect<R>(
    columns: Vec<String>,
    fetched: Result<Vec<R>, sqlx::Error>,
    read_row: fn(&R) -> Result<Vec<Value>, Error>,
) -> Result<Rows, CollectError> {
    let fetched = fetched.map_err(CollectError::Database)?;
    let rows = fetched
        .iter()
        .map(read_row)
        .collect::<Result<_, _>>()
        .map_err(CollectError::Row)?;
    Ok(Rows { columns, rows })
}

/// The `database` capability of one stage instance.
pub struct DatabaseCtx {
    pub db: Database,
    pub calls: Option<CallLog>,
}

impl Host for DatabaseCtx {
    async fn backend_kind(&mut self) -> Backend {
        self.db.backend()
    }

    async fn execute(&mut self, statement: String, params: Vec<Value>) -> Result<u64, Error> {
        let recorded_params = self.calls.as_ref().map(|_| params_json(&params));
        let result = self.db.execute(&statement, params).await;
        log_failure(&result, &statement);

        record(&self.calls, || CapabilityCall::Database {
            statement,
            params: recorded_params.unwrap_or_default(),
            result: match &result {
                Ok(rows_affected) => Ok(serde_json::json!({ "rows_affected": rows_affected })),
                Err(error) => Err(describe_error(error)),
            },
        });
        result
    }

    async fn query(&mut self, statement: String, params: Vec<Value>) -> Result<Rows, Error> {
        let recorded_params = self.calls.as_ref().map(|_| params_json(&params));
        let result = self.db.query(&statement, params).await;
        log_failure(&result, &statement);

        record(&self.calls, || CapabilityCall::Database {
            statement,
            params: recorded_params.unwrap_or_default(),
            result: match &result {
                Ok(rows) => Ok(rows_json(rows)),
                Err(error) => Err(describe_error(error)),
            },
        });
        result
    }
}

/// Logs a failed call at debug level. The guest receives every error as a value and
/// decides what to do, and the stage logs the outcome.
fn log_failure<T>(result: &Result<T, Error>, statement: &str) {
    if let Err(error) = result {
        tracing::debug!(statement, error = %describe_error(error), "database call failed");
    }
}

/// Converts a guest value to JSON for recorded calls. A blob is recorded by its length only, as
/// `{"blob_len": n}`, because payloads can be large and binary.
pub fn value_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(integer) => (*integer).into(),
        // NaN and the infinities have no JSON number, so they are recorded as strings.
        Value::Real(real) => serde_json::Number::from_f64(*real).map_or_else(
            || serde_json::Value::String(real.to_string()),
            serde_json::Value::Number,
        ),
        Value::Text(text) => text.as_str().into(),
        Value::Blob(blob) => serde_json::json!({ "blob_len": blob.len() }),
    }
}

fn params_json(params: &[Value]) -> Vec<serde_json::Value> {
    params.iter().map(value_json).collect()
}

fn rows_json(rows: &Rows) -> serde_json::Value {
    let values: Vec<Vec<serde_json::Value>> = rows
        .rows
        .iter()
        .map(|row| row.iter().map(value_json).collect())
        .collect();
    serde_json::json!({ "columns": rows.columns, "rows": values })
}
