//! The stage's `config` section: which table to write, how to derive the row key, and
//! which payload field fills which column as which type.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// Validated db-writer configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub table: String,
    pub key: Key,
    /// Mapped columns, sorted by column name.
    pub columns: Vec<Column>,
}

/// The primary key column and the columns whose values make up its value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub column: String,
    pub from: Vec<String>,
}

/// One column filled from one payload field.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// Name of the payload field, as it appears in the JSON object.
    pub field: String,
    pub kind: ColumnType,
    /// Whether a null, missing or empty field fails the message.
    pub required: bool,
    /// Maximum length in characters, for text columns.
    pub max_length: Option<usize>,
}

/// The type that a payload field is converted to before it is bound as a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Text,
    Integer,
    Real,
    /// ISO 8601 date text, `YYYY-MM-DD`.
    Date,
    /// Stored as the integer 0 or 1, which every backend accepts.
    Boolean,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    table: String,
    key: Key,
    columns: BTreeMap<String, RawColumn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    field: String,
    #[serde(rename = "type")]
    kind: ColumnType,
    #[serde(default)]
    required: bool,
    max_length: Option<usize>,
}

impl Config {
    /// Parses the JSON that `config::get-json` returns and checks it as a whole.
    ///
    /// The error lists every problem found, each with its path in the config section.
    pub fn parse(json: &str) -> Result<Config, String> {
        let raw: RawConfig = serde_json::from_str(json)
            .map_err(|error| format!("invalid db-writer config: {error}"))?;

        let problems = validate(&raw);
        if !problems.is_empty() {
            return Err(format!("invalid db-writer config: {}", problems.join("; ")));
        }

        let columns = raw
            .columns
            .into_iter()
            .map(|(name, column)| Column {
                name,
                field: column.field,
                kind: column.kind,
                required: column.required,
                max_length: column.max_length,
            })
            .collect();
        Ok(Config {
            table: raw.table,
            key: raw.key,
            columns,
        })
    }
}

fn validate(raw: &RawConfig) -> Vec<String> {
    let mut problems = Vec::new();

    check_identifier("table", &raw.table, &mut problems);
    check_identifier("key.column", &raw.key.column, &mut problems);
    if raw.columns.is_empty() {
        problems.push("columns: no column is mapped".to_string());
    }
    if raw.columns.contains_key(&raw.key.column) {
        problems.push(format!(
            "key.column: {} is also listed under columns, but its value is derived, not read \
             from a field",
            raw.key.column
        ));
    }

    if raw.key.from.is_empty() {
        problems.push("key.from: no column is listed to derive the key from".to_string());
    }
    let mut seen = BTreeSet::new();
    for (index, name) in raw.key.from.iter().enumerate() {
        let path = format!("key.from[{index}]");
        if !seen.insert(name) {
            problems.push(format!("{path}: column {name} is listed twice"));
        }
        match raw.columns.get(name) {
            None => problems.push(format!("{path}: {name} is not listed under columns")),
            Some(column) if !column.required => problems.push(format!(
                "{path}: column {name} must be `required: true`, because a key cannot be \
                 derived from a null value"
            )),
            Some(_) => {}
        }
    }

    for (name, column) in &raw.columns {
        let path = format!("columns.{name}");
        check_identifier(&path, name, &mut problems);
        if column.field.is_empty() {
            problems.push(format!("{path}.field: the field name is empty"));
        }
        match (column.kind, column.max_length) {
            (_, Some(0)) => problems.push(format!("{path}.max_length: must be at least 1")),
            (ColumnType::Text, _) | (_, None) => {}
            (_, Some(_)) => problems.push(format!(
                "{path}.max_length: applies only to columns of type text"
            )),
        }
    }

    problems
}

/// Table and column names are written into SQL statements unquoted, because quoting
/// differs between backends. Plain ASCII identifiers are valid and mean the same on all
/// of them, and they cannot inject SQL.
fn check_identifier(path: &str, name: &str, problems: &mut Vec<String>) {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_start || !valid_rest || name.len() > 63 {
        problems.push(format!(
            "{path}: {name:?} is not a valid SQL name; use at most 63 ASCII letters, digits \
             and underscores, not starting with a digit"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::column_index;

    const MOVIES: &str = r#"{
        "table": "movies",
        "key": { "column": "id", "from": ["title", "release_date"] },
        "columns": {
            "title": { "field": "Title", "type": "text", "required": true, "max_length": 200 },
            "release_date": { "field": "Release Date", "type": "date", "required": true },
            "us_gross": { "field": "US Gross", "type": "integer" },
            "imdb_rating": { "field": "IMDB Rating", "type": "real" }
        }
    }"#;

    #[test]
    fn parse_movies_config() {
        let config = Config::parse(MOVIES).unwrap();

        assert_eq!(config.table, "movies");
        assert_eq!(config.key.from, ["title", "release_date"]);
        let names: Vec<&str> = config.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["imdb_rating", "release_date", "title", "us_gross"]);
        let title = &config.columns[column_index(&config, "title")];
        assert_eq!(title.field, "Title");
        assert_eq!(title.kind, ColumnType::Text);
        assert!(title.required);
        assert_eq!(title.max_length, Some(200));
        assert!(!config.columns[column_index(&config, "us_gross")].required);
    }

    #[test]
    fn parse_rejects_unknown_keys() {
        let json = MOVIES.replace("\"max_length\"", "\"max_len\"");

        let error = Config::parse(&json).unwrap_err();

        assert!(error.contains("unknown field `max_len`"), "{error}");
    }

    #[test]
    fn parse_rejects_unknown_type() {
        let json = MOVIES.replace("\"type\": \"real\"", "\"type\": \"float\"");

        let error = Config::parse(&json).unwrap_err();

        assert!(error.contains("unknown variant `float`"), "{error}");
    }

    #[test]
    fn parse_reports_every_problem() {
        let json = r#"{
            "table": "movies; DROP TABLE movies",
            "key": { "column": "id", "from": ["title", "year", "us_gross"] },
            "columns": {
                "title": { "field": "Title", "type": "text", "required": true },
                "us_gross": { "field": "", "type": "integer", "max_length": 5 }
            }
        }"#;

        let error = Config::parse(json).unwrap_err();

        assert!(error.contains("table: \"movies; DROP TABLE movies\" is not a valid SQL name"));
        assert!(
            error.contains("key.from[1]: year is not listed under columns"),
            "{error}"
        );
        assert!(error.contains("key.from[2]: column us_gross must be `required: true`"));
        assert!(error.contains("columns.us_gross.field: the field name is empty"));
        assert!(
            error.contains("columns.us_gross.max_length: applies only to columns of type text")
        );
    }

    #[test]
    fn parse_rejects_key_column_under_columns() {
        let json = MOVIES.replace(
            "\"us_gross\": {",
            "\"id\": { \"field\": \"Id\", \"type\": \"text\" }, \"us_gross\": {",
        );

        let error = Config::parse(&json).unwrap_err();

        assert!(
            error.contains("key.column: id is also listed under columns"),
            "{error}"
        );
    }
}
