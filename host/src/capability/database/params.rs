//! Binding guest values as statement parameters, one function per backend.
//!
//! Each value is bound with the type of its variant: `integer` as a 64-bit integer, `real`
//! as a double, `text` as text, `blob` as binary. On PostgreSQL this has two consequences:
//!
//! - A text parameter does not convert itself to the column type, so a DATE, TIMESTAMP,
//!   JSONB, UUID or NUMERIC column needs a cast in the statement: `CAST(? AS DATE)`.
//! - `null` is sent without a type, so the server infers it from the context, which works
//!   for columns of any type. Where nothing gives a type (`SELECT ? IS NULL`), the server
//!   rejects the statement, and a cast fixes it: `CAST(? AS TEXT) IS NULL`.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::mysql::MySqlArguments;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgArguments, PgTypeInfo};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Encode, Postgres, Type};

use crate::bindings::database::{Error, Value};

pub(super) fn sqlite(params: Vec<Value>) -> Result<SqliteArguments<'static>, Error> {
    let mut arguments = SqliteArguments::default();
    for (index, value) in params.into_iter().enumerate() {
        let added = match value {
            Value::Null => arguments.add(Option::<i64>::None),
            Value::Integer(integer) => arguments.add(integer),
            Value::Real(real) => arguments.add(real),
            Value::Text(text) => arguments.add(text),
            Value::Blob(blob) => arguments.add(blob),
        };
        added.map_err(|error| bind_failed(index, error))?;
    }
    Ok(arguments)
}

pub(super) fn mysql(params: Vec<Value>) -> Result<MySqlArguments, Error> {
    let mut arguments = MySqlArguments::default();
    for (index, value) in params.into_iter().enumerate() {
        let added = match value {
            // MySQL accepts a NULL of any declared type in a column of any type.
            Value::Null => arguments.add(Option::<String>::None),
            Value::Integer(integer) => arguments.add(integer),
            Value::Real(real) => arguments.add(real),
            Value::Text(text) => arguments.add(text),
            Value::Blob(blob) => arguments.add(blob),
        };
        added.map_err(|error| bind_failed(index, error))?;
    }
    Ok(arguments)
}

/// Returns `sql` prefixed with a comment that lists the parameter types, the arguments,
/// and their declared types, which a statement prepared ahead of its arguments needs.
///
/// sqlx caches a PostgreSQL prepared statement under its SQL text alone, and binds later
/// values in binary format as the types declared at the first preparation. Without the
/// comment, a statement first run with an integer and later with a real would send the
/// real's 8 bytes as an integer. The comment gives each combination of types its own
/// prepared statement.
pub(super) fn postgres(
    sql: &str,
    params: Vec<Value>,
) -> Result<(String, PgArguments, Vec<PgTypeInfo>), Error> {
    let mut arguments = PgArguments::default();
    let mut codes = String::with_capacity(params.len());
    let mut types = Vec::with_capacity(params.len());
    for (index, value) in params.into_iter().enumerate() {
        let (code, type_info, added) = match value {
            Value::Null => (
                'n',
                <UntypedNull as Type<Postgres>>::type_info(),
                arguments.add(UntypedNull),
            ),
            Value::Integer(integer) => (
                'i',
                <i64 as Type<Postgres>>::type_info(),
                arguments.add(integer),
            ),
            Value::Real(real) => (
                'r',
                <f64 as Type<Postgres>>::type_info(),
                arguments.add(real),
            ),
            Value::Text(text) => (
                't',
                <String as Type<Postgres>>::type_info(),
                arguments.add(text),
            ),
            Value::Blob(blob) => (
                'b',
                <Vec<u8> as Type<Postgres>>::type_info(),
                arguments.add(blob),
            ),
        };
        added.map_err(|error| bind_failed(index, error))?;
        codes.push(code);
        types.push(type_info);
    }
    if codes.is_empty() {
        return Ok((sql.to_owned(), arguments, types));
    }
    Ok((
        format!("/* magnetar parameter types: {codes} */ {sql}"),
        arguments,
        types,
    ))
}

fn bind_failed(index: usize, error: BoxDynError) -> Error {
    Error::Other(format!("binding parameter {} failed: {error}", index + 1))
}

/// A NULL declared with type OID 0, which PostgreSQL reads as "unspecified": the server
/// infers the type from where the parameter appears.
struct UntypedNull;

impl Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _buffer: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }
}
