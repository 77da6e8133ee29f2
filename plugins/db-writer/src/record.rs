//! Conversion of a JSON payload into the row that db-writer stores.

use serde_json::{Map, Number, Value as Json};

use crate::bindings::magnetar::stage::database::Value;
use crate::config::{Column, ColumnType, Config};
use crate::date::parse_date;

/// One row to store: the derived key and the value of each mapped column.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: String,
    /// Values in the order of `Config::columns`.
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

/// Converts the mapped fields of `object` and derives the row key.
///
/// Fields that no column maps are ignored. The error names every field that could not be
/// converted, each with its value and the reason.
pub fn build_row(config: &Config, object: &Map<String, Json>) -> Result<Row, String> {
    let mut values = Vec::with_capacity(config.columns.len());
    let mut problems = Vec::new();
    for column in &config.columns {
        match convert(column, object.get(&column.field)) {
            Ok(value) => values.push(value),
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }

    let key = derive_key(config, &values);
    Ok(Row { key, values })
}

/// Derives the key from the `key.from` columns: the first value, followed by the others
/// in parentheses, separated by ", ". For movies keyed by title and release date this gives
/// `The Land Girls (1998-06-12)`: readable in logs and emails, and the same for every
/// delivery of the same record, which makes the insert idempotent.
pub fn derive_key(config: &Config, values: &[Value]) -> String {
    let parts: Vec<String> = config
        .key
        .from
        .iter()
        .map(|name| {
            let index = config
                .columns
                .iter()
                .position(|column| &column.name == name);
            index
                .map(|index| value_text(&values[index]))
                .unwrap_or_default()
        })
        .collect();

    match parts.split_first() {
        Some((first, [])) => first.clone(),
        Some((first, rest)) => format!("{first} ({})", rest.join(", ")),
        None => String::new(),
    }
}

/// Returns the column values as a JSON object, for the stored event.
pub fn record_json(config: &Config, values: &[Value]) -> Map<String, Json> {
    config
        .columns
        .iter()
        .zip(values)
        .map(|(column, value)| {
            let json = match value {
                Value::Null => Json::Null,
                Value::Integer(number) => Json::from(*number),
                Value::Real(number) => Number::from_f64(*number).map_or(Json::Null, Json::Number),
                Value::Text(text) => Json::String(text.clone()),
                Value::Blob(bytes) => Json::from(bytes.clone()),
            };
            (column.name.clone(), json)
        })
        .collect()
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Integer(number) => number.to_string(),
        Value::Real(number) => number.to_string(),
        Value::Text(text) => text.clone(),
        Value::Blob(bytes) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Converts one field to the column's type.
///
/// Text is stored exactly as received, including mojibake and emoji. A number in a text
/// column becomes its JSON text (the title `1776` becomes "1776"). For the other types, a
/// clean string converts (`"146083"` to 146083) and an empty string counts as null.
fn convert(column: &Column, field: Option<&Json>) -> Result<Value, String> {
    let name = &column.field;
    let value = match (column.kind, field) {
        (_, None | Some(Json::Null)) => Value::Null,
        (ColumnType::Text, Some(json)) => convert_text(column, json)?,
        (_, Some(Json::String(text))) if text.trim().is_empty() => Value::Null,
        (ColumnType::Integer, Some(json)) => convert_integer(json)
            .ok_or_else(|| mismatch(column, json, "a whole number within the 64-bit range"))?,
        (ColumnType::Real, Some(json)) => {
            convert_real(json).ok_or_else(|| mismatch(column, json, "a finite number"))?
        }
        (ColumnType::Date, Some(json)) => json
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
        (ColumnType::Boolean, Some(json)) => convert_boolean(json)
            .ok_or_else(|| mismatch(column, json, "true, false, 1, 0, \"true\" or \"false\""))?,
    };

    if column.required && matches!(&value, Value::Null) {
        let state = match field {
            None => "missing",
            Some(Json::Null) => "null",
            Some(_) => "empty",
        };
        return Err(format!(
            "field {name:?} is {state}, but column {} requires a value",
            column.name
        ));
    }
    Ok(value)
}

fn convert_text(column: &Column, json: &Json) -> Result<Value, String> {
    let text = match json {
        Json::String(text) if column.required && text.trim().is_empty() => return Ok(Value::Null),
        Json::String(text) => text.clone(),
        Json::Number(number) => number.to_string(),
        other => return Err(mismatch(column, other, "text or a number")),
    };

    let length = text.chars().count();
    if let Some(max) = column.max_length
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
        Json::String(text) => text.trim().parse::<i64>().ok().map(Number::from)?,
        _ => return None,
    };
    if let Some(integer) = number.as_i64() {
        return Some(Value::Integer(integer));
    }
    // A float such as 7.0 or 1e6 converts when it is whole and fits in an i64: the bound
    // 2^63 is exact as f64, and every whole float below it converts without loss.
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

fn convert_boolean(json: &Json) -> Option<Value> {
    let flag = match json {
        Json::Bool(flag) => *flag,
        Json::Number(number) => match number.as_i64()? {
            0 => false,
            1 => true,
            _ => return None,
        },
        Json::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return None,
        },
        _ => return None,
    };
    Some(Value::Integer(i64::from(flag)))
}

fn mismatch(column: &Column, json: &Json, expected: &str) -> String {
    format!(
        "field {:?} is {}, but column {} expects {expected}",
        column.field,
        describe_value(json),
        column.name
    )
}

/// Describes a JSON value for an error message, shortening long values.
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

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
