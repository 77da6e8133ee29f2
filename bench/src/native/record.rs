//! A movie payload as the row of `movies` that store-movies writes, and the stored event it
//! publishes.
//!
//! The mapping is pipeline.yaml's store-movies config, compiled in: the same fields, types,
//! required columns and length limits, converted by db-writer's rules (see
//! `plugins/db-writer/README.md`).

use serde_json::{Map, Number, Value as Json};

use super::date::parse_date;

pub const TABLE: &str = "movies";
pub const KEY_COLUMN: &str = "id";

/// A column value, bound as a statement parameter and read back for comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Text of at most `max_length` characters.
    Text {
        max_length: Option<usize>,
    },
    Integer,
    Real,
    /// ISO 8601 date text.
    Date,
}

/// One column of `movies` and the payload field that fills it.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub field: &'static str,
    pub kind: Kind,
    /// Whether a missing, null or empty field fails the message.
    pub required: bool,
}

const fn column(name: &'static str, field: &'static str, kind: Kind) -> Column {
    Column {
        name,
        field,
        kind,
        required: false,
    }
}

const fn text(max_length: usize) -> Kind {
    Kind::Text {
        max_length: Some(max_length),
    }
}

/// The mapped columns, sorted by name as db-writer sorts its config's columns, so that the
/// statements and the event list them in the same order.
pub const COLUMNS: [Column; 16] = [
    column("creative_type", "Creative Type", text(100)),
    column("director", "Director", text(100)),
    column("distributor", "Distributor", text(100)),
    column("imdb_rating", "IMDB Rating", Kind::Real),
    column("imdb_votes", "IMDB Votes", Kind::Integer),
    column("major_genre", "Major Genre", text(100)),
    column("mpaa_rating", "MPAA Rating", text(20)),
    column("production_budget", "Production Budget", Kind::Integer),
    Column {
        required: true,
        ..column("release_date", "Release Date", Kind::Date)
    },
    column(
        "rotten_tomatoes_rating",
        "Rotten Tomatoes Rating",
        Kind::Integer,
    ),
    column("running_time_min", "Running Time min", Kind::Integer),
    column("source", "Source", text(100)),
    Column {
        required: true,
        ..column("title", "Title", text(200))
    },
    column("us_dvd_sales", "US DVD Sales", Kind::Integer),
    column("us_gross", "US Gross", Kind::Integer),
    column("worldwide_gross", "Worldwide Gross", Kind::Integer),
];

/// Columns the key is derived from, in order: `<title> (<release_date>)`.
const KEY_FROM: [&str; 2] = ["title", "release_date"];

/// One row to store: the derived key and the value of each column of [`COLUMNS`].
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: String,
    pub values: Vec<Value>,
}

/// Parses a payload that must be one non-empty JSON object.
pub fn parse_payload(payload: &[u8]) -> Result<Map<String, Json>, String> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err("the payload is empty; expected a JSON object".to_string());
    }
    let value: Json = serde_json::from_slice(payload)
        .map_err(|error| format!("the payload is not valid JSON: {error}"))?;
    match value {
        Json::Object(object) if object.is_empty() => {
            Err("the payload is an empty JSON object; expected the fields of a record".to_string())
        }
        Json::Object(object) => Ok(object),
        other => Err(format!(
            "the payload is {}; expected a JSON object",
            describe_kind(&other)
        )),
    }
}

/// Converts the mapped fields of `object` and derives the key. The error names every
/// field that could not be converted.
pub fn build_row(object: &Map<String, Json>) -> Result<Row, String> {
    let mut values = Vec::with_capacity(COLUMNS.len());
    let mut problems = Vec::new();
    for column in &COLUMNS {
        match convert(column, object.get(column.field)) {
            Ok(value) => values.push(value),
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }

    let parts: Vec<String> = KEY_FROM
        .iter()
        .map(|name| {
            let index = COLUMNS
                .iter()
                .position(|column| column.name == *name)
                .expect("every key column is in COLUMNS");
            value_text(&values[index])
        })
        .collect();
    let key = format!("{} ({})", parts[0], parts[1..].join(", "));
    Ok(Row { key, values })
}

/// Returns the payload of the stored event that db-writer publishes:
/// `{"id": <key>, "table": "movies", "record": {<column>: <value>, ...}}`.
pub fn stored_event(row: &Row) -> Vec<u8> {
    let record: Map<String, Json> = COLUMNS
        .iter()
        .zip(&row.values)
        .map(|(column, value)| {
            let json = match value {
                Value::Null => Json::Null,
                Value::Integer(number) => Json::from(*number),
                Value::Real(number) => Number::from_f64(*number).map_or(Json::Null, Json::Number),
                Value::Text(text) => Json::String(text.clone()),
            };
            (column.name.to_string(), json)
        })
        .collect();
    let event = serde_json::json!({ "id": row.key, "table": TABLE, "record": record });
    event.to_string().into_bytes()
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Integer(number) => number.to_string(),
        Value::Real(number) => number.to_string(),
        Value::Text(text) => text.clone(),
    }
}

/// Converts one field to its column's type. Text keeps the field exactly, and a number in a
/// text column becomes its JSON text. For the other types, a clean string converts and an
/// empty string counts as null.
fn convert(column: &Column, field: Option<&Json>) -> Result<Value, String> {
    let value = match (column.kind, field) {
        (_, None | Some(Json::Null)) => Value::Null,
        (Kind::Text { max_length }, Some(json)) => convert_text(column, max_length, json)?,
        (_, Some(Json::String(text))) if text.trim().is_empty() => Value::Null,
        (Kind::Integer, Some(json)) => convert_integer(json)
            .ok_or_else(|| mismatch(column, json, "a whole number within the 64-bit range"))?,
        (Kind::Real, Some(json)) => {
            convert_real(json).ok_or_else(|| mismatch(column, json, "a finite number"))?
        }
        (Kind::Date, Some(json)) => json
            .as_str()
            .and_then(parse_date)
            .map(Value::Text)
            .ok_or_else(|| {
                mismatch(
                    column,
                    json,
                    "a date such as \"Jun 12 1998\" or \"1998-06-12\"",
                )
            })?,
    };

    if column.required && value == Value::Null {
        let state = match field {
            None => "missing",
            Some(Json::Null) => "null",
            Some(_) => "empty",
        };
        return Err(format!(
            "field {:?} is {state}, but column {} requires a value",
            column.field, column.name
        ));
    }
    Ok(value)
}

fn convert_text(column: &Column, max_length: Option<usize>, json: &Json) -> Result<Value, String> {
    let text = match json {
        Json::String(text) if column.required && text.trim().is_empty() => return Ok(Value::Null),
        Json::String(text) => text.clone(),
        Json::Number(number) => number.to_string(),
        other => return Err(mismatch(column, other, "text or a number")),
    };

    let length = text.chars().count();
    if let Some(max) = max_length
        && length > max
    {
        return Err(format!(
            "field {:?} is {length} characters long, but column {} allows at most {max}",
            column.field, column.name
        ));
    }
    Ok(Value::Text(text))
}

fn convert_integer(json: &Json) -> Option<Value> {
    let number = match json {
        Json::Number(number) => number.clone(),
        Json::String(text) => Number::from(text.trim().parse::<i64>().ok()?),
        _ => return None,
    };
    if let Some(integer) = number.as_i64() {
        return Some(Value::Integer(integer));
    }
    // A whole float such as 7.0 converts when it fits in an i64. The bound 2^63 is exact as
    // an f64, and every whole float below it converts without loss.
    let float = number.as_f64()?;
    let in_range = (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&float);
    (float.fract() == 0.0 && in_range).then_some(Value::Integer(float as i64))
}

fn convert_real(json: &Json) -> Option<Value> {
    let number = match json {
        Json::Number(number) => number.as_f64()?,
        Json::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    number.is_finite().then_some(Value::Real(number))
}

fn mismatch(column: &Column, json: &Json, expected: &str) -> String {
    format!(
        "field {:?} is {}, but column {} expects {expected}",
        column.field,
        describe_value(json),
        column.name
    )
}

/// Describes a JSON value for an error message, shortened to 60 characters.
fn describe_value(json: &Json) -> String {
    const MAX_CHARS: usize = 60;
    let text = json.to_string();
    let shortened = if text.chars().count() > MAX_CHARS {
        format!("{}...", text.chars().take(MAX_CHARS).collect::<String>())
    } else {
        text
    };
    match json {
        Json::Array(_) | Json::Object(_) => format!("{} {shortened}", describe_kind(json)),
        _ => shortened,
    }
}

fn describe_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}
