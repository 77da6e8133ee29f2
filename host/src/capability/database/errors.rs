//! Classification of sqlx errors into the WIT `error` variants.
//!
//! The class decides what the stage does next: `unavailable` is worth retrying, every other
//! class means that retrying the same statement with the same values fails the same way.
//! Each message is the database's own, followed by its error code and, when the database
//! reports them, the table, column and constraint.
//!
//! | class | SQLite (extended result code) | MySQL / MariaDB (error number) | PostgreSQL (SQLSTATE) |
//! |---|---|---|---|
//! | unique-violation | 2067, 1555 | 1062, 1586 and sqlx's other duplicate-key numbers | 23505 |
//! | not-null-violation | 1299 | 1048, 1364 | 23502 |
//! | check-violation | 275 (unless about length), 787, 1811 | 3819, 4025, foreign keys (1451, 1452, ...) | 23514, 23503, other 23xxx |
//! | value-too-long | 275 when the CHECK mentions `length`, 18 | 1406 | 22001 |
//! | invalid-value | 3091, 20 | 1366, 1292, 1264, 1265, 1367, 1411, 1690, 1365, 1300, 3140 | other 22xxx, 42804 |
//! | unavailable | 5, 6, 10, 13, 14 (busy, locked, I/O, full, cannot open) | 1040, 1053, 1205, 1213, 1317, 1927, 1969, 3024 | 08xxx, 53xxx, 57xxx, 58xxx, 40001, 40P01, 55P03 |
//!
//! SQLite has no length limit on text, so a schema enforces one with a CHECK such as
//! `CHECK (length(name) <= 100)`. A failed CHECK whose constraint name or expression
//! contains `length` is therefore reported as value-too-long. Errors outside the database
//! (pool timeout, closed pool, I/O, TLS, protocol) are unavailable. Everything else is other.

use std::time::Duration;

use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::mysql::MySqlDatabaseError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

use crate::bindings::database::Error;

/// Classifies `error`. `acquire_timeout` is the pool's, for the message of a pool timeout.
pub(super) fn classify(error: sqlx::Error, acquire_timeout: Duration) -> Error {
    match error {
        sqlx::Error::Database(error) => classify_database(error.as_ref()),
        sqlx::Error::PoolTimedOut => Error::Unavailable(format!(
            "no database connection became available within {} s: the database is down, \
             refusing connections, or busy",
            acquire_timeout.as_secs_f32()
        )),
        sqlx::Error::PoolClosed => Error::Unavailable(
            "the database pool is closed because the host is shutting down".to_owned(),
        ),
        sqlx::Error::WorkerCrashed => {
            Error::Unavailable("the SQLite worker thread of a pooled connection stopped".to_owned())
        }
        sqlx::Error::Io(error) => {
            Error::Unavailable(format!("database connection failed: {error}"))
        }
        sqlx::Error::Tls(error) => {
            Error::Unavailable(format!("TLS with the database failed: {error}"))
        }
        sqlx::Error::Protocol(message) => {
            Error::Unavailable(format!("unexpected message from the database: {message}"))
        }
        other => Error::Other(other.to_string()),
    }
}

fn classify_database(error: &dyn DatabaseError) -> Error {
    if let Some(error) = error.try_downcast_ref::<PgDatabaseError>() {
        postgres(error)
    } else if let Some(error) = error.try_downcast_ref::<MySqlDatabaseError>() {
        mysql(error)
    } else if let Some(error) = error.try_downcast_ref::<SqliteError>() {
        sqlite(error)
    } else {
        let message = match error.code() {
            Some(code) => format!("{} (code {code})", error.message()),
            None => error.message().to_owned(),
        };
        by_kind(error.kind(), message.clone()).unwrap_or(Error::Other(message))
    }
}

fn postgres(error: &PgDatabaseError) -> Error {
    let code = error.code();
    let mut context = vec![format!("SQLSTATE {code}")];
    context.extend(error.table().map(|table| format!("table {table}")));
    context.extend(error.column().map(|column| format!("column {column}")));
    context.extend(
        error
            .constraint()
            .map(|constraint| format!("constraint {constraint}")),
    );
    let mut message = format!("{} ({})", error.message(), context.join(", "));
    if let Some(detail) = error.detail() {
        message = format!("{message}. {detail}");
    }

    let class = &code[..2.min(code.len())];
    match code {
        "23505" => Error::UniqueViolation(message),
        "23502" => Error::NotNullViolation(message),
        "22001" => Error::ValueTooLong(message),
        // datatype_mismatch: a text parameter bound to a column of another type.
        "42804" => Error::InvalidValue(message),
        // serialization_failure, deadlock_detected, lock_not_available.
        "40001" | "40P01" | "55P03" => Error::Unavailable(message),
        _ => match class {
            // Integrity constraint violations: check, foreign key, exclusion, restrict.
            "23" => Error::CheckViolation(message),
            // Data exceptions: invalid text representation, out of range, bad datetime, ...
            "22" => Error::InvalidValue(message),
            // Connection exception, insufficient resources, operator intervention, system error.
            "08" | "53" | "57" | "58" => Error::Unavailable(message),
            _ => Error::Other(message),
        },
    }
}

fn mysql(error: &MySqlDatabaseError) -> Error {
    let number = error.number();
    let message = match error.code() {
        Some(state) => format!("{} (error {number}, SQLSTATE {state})", error.message()),
        None => format!("{} (error {number})", error.message()),
    };

    match number {
        // ER_DATA_TOO_LONG.
        1406 => Error::ValueTooLong(message),
        // Incorrect value, truncated value, out of range, division by zero, invalid
        // character string, invalid JSON.
        1264 | 1265 | 1292 | 1300 | 1365 | 1366 | 1367 | 1411 | 1690 | 3140 => {
            Error::InvalidValue(message)
        }
        // Too many connections, server shutdown, lock wait timeout, deadlock, query
        // interrupted, connection killed, statement time limit (MariaDB, then MySQL).
        1040 | 1053 | 1205 | 1213 | 1317 | 1927 | 1969 | 3024 => Error::Unavailable(message),
        _ => by_kind(error.kind(), message.clone()).unwrap_or(Error::Other(message)),
    }
}

fn sqlite(error: &SqliteError) -> Error {
    // sqlx turns on extended result codes: the low byte is the primary code.
    let code: i32 = error.code().and_then(|code| code.parse().ok()).unwrap_or(0);
    let message = format!("{} (SQLite error {code})", error.message());

    match code {
        // SQLITE_CONSTRAINT_CHECK
        275 if error.message().to_lowercase().contains("length") => Error::ValueTooLong(message),
        // SQLITE_CONSTRAINT_DATATYPE: a value of the wrong type for a STRICT table column.
        3091 => Error::InvalidValue(message),
        // SQLITE_CONSTRAINT_TRIGGER: a trigger's RAISE(ABORT, ...), a constraint in all but name.
        1811 => Error::CheckViolation(message),
        _ => match code & 0xff {
            // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN
            5 | 6 | 10 | 13 | 14 => Error::Unavailable(message),
            // SQLITE_TOOBIG: a string or blob over SQLITE_MAX_LENGTH.
            18 => Error::ValueTooLong(message),
            // SQLITE_MISMATCH
            20 => Error::InvalidValue(message),
            _ => by_kind(error.kind(), message.clone()).unwrap_or(Error::Other(message)),
        },
    }
}

fn by_kind(kind: ErrorKind, message: String) -> Option<Error> {
    match kind {
        ErrorKind::UniqueViolation => Some(Error::UniqueViolation(message)),
        ErrorKind::NotNullViolation => Some(Error::NotNullViolation(message)),
        ErrorKind::CheckViolation | ErrorKind::ForeignKeyViolation => {
            Some(Error::CheckViolation(message))
        }
        _ => None,
    }
}

/// Formats the error as one line, `class: message`, for logs and recorded calls.
pub fn describe(error: &Error) -> String {
    let (class, message) = match error {
        Error::UniqueViolation(message) => ("unique-violation", message),
        Error::NotNullViolation(message) => ("not-null-violation", message),
        Error::CheckViolation(message) => ("check-violation", message),
        Error::ValueTooLong(message) => ("value-too-long", message),
        Error::InvalidValue(message) => ("invalid-value", message),
        Error::Unavailable(message) => ("unavailable", message),
        Error::Other(message) => ("other", message),
    };
    format!("{class}: {message}")
}
