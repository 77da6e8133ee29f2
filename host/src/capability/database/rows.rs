//! Reading result rows into guest values, by each column's runtime type.
//!
//! | value | SQLite (the value's own type) | MySQL / MariaDB | PostgreSQL |
//! |---|---|---|---|
//! | integer | INTEGER | every integer width, signed or UNSIGNED, BOOLEAN, YEAR, BIT | INT2, INT4, INT8, OID, BOOL (0 or 1) |
//! | real | REAL | FLOAT, DOUBLE | FLOAT4, FLOAT8 |
//! | text | TEXT | CHAR, VARCHAR, the TEXT types, ENUM, SET, JSON, DECIMAL, dates and times | TEXT, VARCHAR, CHAR, NAME, JSON, JSONB, XML, UUID, enums, NUMERIC, dates and times |
//! | blob | BLOB | BINARY, VARBINARY, the BLOB types (see the note below), GEOMETRY | BYTEA |
//!
//! DECIMAL and NUMERIC come back as text with every digit, because a 64-bit float would
//! round them. A statement that wants a number casts: `CAST(total AS DOUBLE PRECISION)`.
//! Dates and times follow [`super::formats`]. A column of any other type (PostgreSQL
//! INTERVAL, MONEY, arrays, ranges, ...) fails the query with a message that names it, and
//! a cast to text in the statement reads it.
//!
//! NOTE: MySQL marks text columns with a binary collation (`utf8mb4_bin`) with the same
//! BINARY flag as VARBINARY and BLOB columns. Only the column's character set distinguishes
//! them, and sqlx 0.8 does not expose it. A BINARY-flagged value therefore comes back as
//! text when it is valid UTF-8 and as a blob otherwise, so a blob whose bytes happen to be
//! valid UTF-8 (an empty one included) reads back as text with the same bytes.

use std::borrow::Cow;

use sqlx::error::BoxDynError;
use sqlx::mysql::{MySqlRow, MySqlValueRef};
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgRow, PgTypeKind, PgValueFormat, PgValueRef};
use sqlx::sqlite::{SqliteRow, SqliteValueRef};
use sqlx::{Decode, MySql, Postgres, Row, Sqlite, TypeInfo, ValueRef};

use super::formats;
use crate::bindings::database::{Error, Value};

pub(super) fn sqlite(row: &SqliteRow) -> Result<Vec<Value>, Error> {
    (0..row.len())
        .map(|index| sqlite_value(row, index))
        .collect()
}

pub(super) fn mysql(row: &MySqlRow) -> Result<Vec<Value>, Error> {
    (0..row.len())
        .map(|index| mysql_value(row, index))
        .collect()
}

pub(super) fn postgres(row: &PgRow) -> Result<Vec<Value>, Error> {
    (0..row.len())
        .map(|index| postgres_value(row, index))
        .collect()
}

fn sqlite_value(row: &SqliteRow, index: usize) -> Result<Value, Error> {
    let raw: SqliteValueRef<'_> = row
        .try_get_raw(index)
        .map_err(|error| unreadable(row, index, error))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    // A SQLite column has no fixed type, so the value's own storage class decides.
    let type_name = raw.type_info().name().to_owned();
    let value = match type_name.as_str() {
        "INTEGER" => decode_sqlite::<i64>(raw).map(Value::Integer),
        "REAL" => decode_sqlite::<f64>(raw).map(Value::Real),
        "TEXT" => decode_sqlite::<String>(raw).map(Value::Text),
        "BLOB" => decode_sqlite::<Vec<u8>>(raw).map(Value::Blob),
        _ => return Err(unsupported(row, index, &type_name, "CAST(column AS TEXT)")),
    };
    value.map_err(|error| decode_failed(row, index, &type_name, error))
}

fn mysql_value(row: &MySqlRow, index: usize) -> Result<Value, Error> {
    let raw: MySqlValueRef<'_> = row
        .try_get_raw(index)
        .map_err(|error| unreadable(row, index, error))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_owned();
    let value = match type_name.as_str() {
        "BOOLEAN" | "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            decode_mysql::<i64>(raw).map(Value::Integer)
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
        | "BIGINT UNSIGNED" | "BIT" => decode_mysql::<u64>(raw).and_then(|unsigned| {
            i64::try_from(unsigned).map(Value::Integer).map_err(|_| {
                format!("{unsigned} does not fit in a signed 64-bit integer; CAST it to CHAR")
                    .into()
            })
        }),
        "FLOAT" => decode_mysql::<f32>(raw).map(|real| Value::Real(formats::widen_f32(real))),
        "DOUBLE" => decode_mysql::<f64>(raw).map(Value::Real),
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET"
        | "JSON" | "DECIMAL" => decode_mysql::<String>(raw).map(Value::Text),
        "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            // See the note in the module documentation.
            decode_mysql::<Vec<u8>>(raw).map(|bytes| match String::from_utf8(bytes) {
                Ok(text) => Value::Text(text),
                Err(error) => Value::Blob(error.into_bytes()),
            })
        }
        "GEOMETRY" => decode_mysql::<Vec<u8>>(raw).map(Value::Blob),
        "DATE" => mysql_bytes(raw, |bytes| formats::mysql_datetime(bytes, false, false)),
        "DATETIME" => mysql_bytes(raw, |bytes| formats::mysql_datetime(bytes, true, false)),
        // The session time zone is UTC (see the connect options), so TIMESTAMP values are UTC.
        "TIMESTAMP" => mysql_bytes(raw, |bytes| formats::mysql_datetime(bytes, true, true)),
        "TIME" => mysql_bytes(raw, formats::mysql_time),
        "NULL" => Ok(Value::Null),
        _ => return Err(unsupported(row, index, &type_name, "CAST(column AS CHAR)")),
    };
    value.map_err(|error| decode_failed(row, index, &type_name, error))
}

/// Formats a value from its binary protocol bytes.
fn mysql_bytes(
    raw: MySqlValueRef<'_>,
    format: impl FnOnce(&[u8]) -> Result<String, String>,
) -> Result<Value, BoxDynError> {
    let bytes = decode_mysql::<&[u8]>(raw)?;
    Ok(Value::Text(format(bytes)?))
}

fn postgres_value(row: &PgRow, index: usize) -> Result<Value, Error> {
    let raw: PgValueRef<'_> = row
        .try_get_raw(index)
        .map_err(|error| unreadable(row, index, error))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_info = raw.type_info().into_owned();
    let type_name = type_info.name();
    let value = match type_name {
        "BOOL" => decode_postgres::<bool>(raw).map(|flag| Value::Integer(flag.into())),
        "INT2" => decode_postgres::<i16>(raw).map(|integer| Value::Integer(integer.into())),
        "INT4" => decode_postgres::<i32>(raw).map(|integer| Value::Integer(integer.into())),
        "INT8" => decode_postgres::<i64>(raw).map(Value::Integer),
        "OID" => decode_postgres::<Oid>(raw).map(|oid| Value::Integer(oid.0.into())),
        "FLOAT4" => decode_postgres::<f32>(raw).map(|real| Value::Real(formats::widen_f32(real))),
        "FLOAT8" => decode_postgres::<f64>(raw).map(Value::Real),
        // sqlx names CHAR(n) `CHAR` and the one-byte internal type `"CHAR"`.
        "TEXT" | "VARCHAR" | "CHAR" | "\"CHAR\"" | "NAME" | "JSON" | "XML" | "UNKNOWN" => {
            decode_postgres::<String>(raw).map(Value::Text)
        }
        // Binary JSONB is a version byte (1) followed by the JSON text.
        "JSONB" => postgres_text(raw, |bytes| match bytes.split_first() {
            Some((1, json)) => String::from_utf8(json.to_vec()).map_err(|error| error.to_string()),
            _ => Err("JSONB value has an unknown format version".to_owned()),
        }),
        "UUID" => postgres_text(raw, formats::uuid),
        "NUMERIC" => postgres_text(raw, formats::postgres_numeric),
        "DATE" => postgres_text(raw, |bytes| {
            formats::postgres_date(i32::from_be_bytes(fixed(bytes)?))
        }),
        "TIME" => postgres_text(raw, |bytes| {
            Ok(formats::postgres_time(i64::from_be_bytes(fixed(bytes)?)))
        }),
        "TIMESTAMP" => postgres_text(raw, |bytes| {
            formats::postgres_timestamp(i64::from_be_bytes(fixed(bytes)?), false)
        }),
        "TIMESTAMPTZ" => postgres_text(raw, |bytes| {
            formats::postgres_timestamp(i64::from_be_bytes(fixed(bytes)?), true)
        }),
        "BYTEA" => decode_postgres::<Vec<u8>>(raw).map(Value::Blob),
        // The result of a function returning void, as in `SELECT pg_notify(...)`.
        "VOID" => Ok(Value::Null),
        // An enum value's binary form is its label.
        _ if matches!(type_info.kind(), PgTypeKind::Enum(_)) => {
            decode_postgres::<String>(raw).map(Value::Text)
        }
        _ => return Err(unsupported(row, index, type_name, "CAST(column AS TEXT)")),
    };
    value.map_err(|error| decode_failed(row, index, type_name, error))
}

/// Reads a value as text: as it is in the text format, through `from_binary` in the
/// binary format that prepared statements return.
fn postgres_text(
    raw: PgValueRef<'_>,
    from_binary: impl FnOnce(&[u8]) -> Result<String, String>,
) -> Result<Value, BoxDynError> {
    let text = match raw.format() {
        PgValueFormat::Text => raw.as_str()?.to_owned(),
        PgValueFormat::Binary => from_binary(raw.as_bytes()?)?,
    };
    Ok(Value::Text(text))
}

// `Decode` is generic over the database, so each backend gets a helper that fixes it.

fn decode_sqlite<'r, T: Decode<'r, Sqlite>>(raw: SqliteValueRef<'r>) -> Result<T, BoxDynError> {
    T::decode(raw)
}

fn decode_mysql<'r, T: Decode<'r, MySql>>(raw: MySqlValueRef<'r>) -> Result<T, BoxDynError> {
    T::decode(raw)
}

fn decode_postgres<'r, T: Decode<'r, Postgres>>(raw: PgValueRef<'r>) -> Result<T, BoxDynError> {
    T::decode(raw)
}

/// Returns the bytes of a fixed-size binary value as an array.
fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes
        .try_into()
        .map_err(|_| format!("expected {N} bytes, found {}", bytes.len()))
}

fn column_name(row: &impl Row, index: usize) -> Cow<'_, str> {
    use sqlx::Column;
    match row.columns().get(index) {
        Some(column) => Cow::Borrowed(column.name()),
        None => Cow::Owned(format!("#{}", index + 1)),
    }
}

fn unreadable(row: &impl Row, index: usize, error: sqlx::Error) -> Error {
    Error::Other(format!(
        "reading column `{}` failed: {error}",
        column_name(row, index)
    ))
}

fn unsupported(row: &impl Row, index: usize, type_name: &str, cast: &str) -> Error {
    Error::Other(format!(
        "column `{}` has type {type_name}, which the database capability cannot return; \
         cast it to text in the statement, as in {cast}",
        column_name(row, index)
    ))
}

fn decode_failed(row: &impl Row, index: usize, type_name: &str, error: BoxDynError) -> Error {
    Error::Other(format!(
        "reading column `{}` of type {type_name} failed: {error}",
        column_name(row, index)
    ))
}
