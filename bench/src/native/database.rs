//! The SQLite pool, opened with Magnetar's settings, the classification of its errors, and
//! the conversion of db-writer's values to statement parameters and back.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::error::ErrorKind;
use sqlx::migrate::Migrator;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous, SqliteValueRef,
};
use sqlx::{Decode, Row as _, Sqlite, TypeInfo as _, ValueRef as _};

use super::stage::Failure;
use db_writer::bindings::magnetar::stage::database::Value;

/// Pool size: Magnetar's default when pipeline.yaml sets no `database.max_connections`.
const MAX_CONNECTIONS: u32 = 8;

/// Magnetar's wait for a pooled connection before a statement fails as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Magnetar's wait for another connection's write lock before SQLite returns SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a pool on the SQLite file at `url` (`sqlite://FILE`, created when missing) with the
/// settings Magnetar uses for a file database: WAL journal, NORMAL synchronisation, foreign
/// keys on. Then applies the migrations in `migrations`.
pub async fn connect(url: &str, migrations: &Path) -> anyhow::Result<SqlitePool> {
    anyhow::ensure!(
        url.starts_with("sqlite:"),
        "unsupported database URL `{url}`: the native pipeline runs on SQLite only; use \
         sqlite://FILE"
    );
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("invalid database URL `{url}`"))?
        .create_if_missing(true)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let pool = SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .with_context(|| format!("failed to open the database `{url}`"))?;

    let migrator = Migrator::new(migrations).await.with_context(|| {
        format!(
            "failed to read the migrations in `{}`",
            migrations.display()
        )
    })?;
    migrator.run(&pool).await.with_context(|| {
        format!(
            "failed to apply the migrations in `{}`",
            migrations.display()
        )
    })?;
    tracing::info!(url, migrations = %migrations.display(), "database ready");
    Ok(pool)
}

/// Returns whether `error` is a unique constraint violation.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|error| error.kind() == ErrorKind::UniqueViolation)
}

/// Classifies a database error as Magnetar's database capability does: only an
/// unavailable database (busy, locked, I/O, full, cannot open, no pooled connection) is
/// worth a retry.
pub fn failure(action: &str, error: sqlx::Error) -> Failure {
    let reason = format!("the database failed while {action}: {error}");
    let unavailable = match &error {
        sqlx::Error::Database(error) => {
            let code: i32 = error.code().and_then(|code| code.parse().ok()).unwrap_or(0);
            // Extended result codes: the low byte is the primary code.
            matches!(code & 0xff, 5 | 6 | 10 | 13 | 14)
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_) => true,
        _ => false,
    };
    if unavailable {
        Failure::Transient(reason)
    } else {
        Failure::Permanent(reason)
    }
}

/// Reads column `index` by the storage class of its value, because a SQLite column has no
/// fixed type.
pub fn read_value(row: &SqliteRow, index: usize) -> Result<Value, sqlx::Error> {
    let raw: SqliteValueRef<'_> = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage_class = raw.type_info().name().to_string();
    let value = match storage_class.as_str() {
        "INTEGER" => Value::Integer(decode(raw)?),
        "REAL" => Value::Real(decode(raw)?),
        "TEXT" => Value::Text(decode(raw)?),
        "BLOB" => Value::Blob(decode(raw)?),
        other => {
            return Err(sqlx::Error::Decode(
                format!("column {index} has the unknown storage class {other}").into(),
            ));
        }
    };
    Ok(value)
}

/// Binds `value` as the next parameter of `query`.
pub fn bind<'q>(
    query: Query<'q, Sqlite, SqliteArguments<'q>>,
    value: &'q Value,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    match value {
        Value::Null => query.bind(None::<String>),
        Value::Integer(number) => query.bind(*number),
        Value::Real(number) => query.bind(*number),
        Value::Text(text) => query.bind(text.as_str()),
        Value::Blob(bytes) => query.bind(bytes.as_slice()),
    }
}

/// Decodes a value as its storage class, without sqlx's check of the declared column type.
fn decode<'r, T: Decode<'r, Sqlite>>(raw: SqliteValueRef<'r>) -> Result<T, sqlx::Error> {
    T::decode(raw).map_err(sqlx::Error::Decode)
}
