//! The YAML document as a tree of values with their source locations.
//!
//! The loader parses the whole file into this tree first and validates it afterwards, so that
//! it can report every problem with its path instead of stopping at the first one, as serde's
//! derived `deny_unknown_fields` would.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::errors::{ConfigErrors, Location};

/// One YAML value and where it was defined.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub value: Value,
    pub location: Location,
    /// Whether `${VAR}` expansion produced this string. Only such strings may stand in for
    /// numbers, because YAML cannot type a value that is not known until load time.
    pub expanded: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
    /// A string whose `${VAR}` could not be substituted. That is reported already, so readers
    /// of values skip it instead of adding a second problem for the same string.
    Unresolved,
}

/// One key and value of a mapping. Non-string scalar keys are kept as their text.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_location: Location,
    pub value: Node,
}

/// Parses YAML text into a tree, or returns the syntax error with its line and column.
pub(crate) fn parse_yaml(text: &str) -> Result<Node, ConfigErrors> {
    // Strict booleans keep `off`, `yes` and `no` strings. Snippets are off because they would
    // copy source lines, which may contain a password, into the message.
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };

    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|error| {
        // Control characters could rewrite the terminal, so they become spaces.
        let message: String = UserMessageFormatter
            .format_message(&error)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let location = error
            .location()
            .filter(|location| location.line() > 0)
            .map(|location| Location {
                line: location.line(),
                column: location.column(),
            });

        // A plain `${VAR}` inside `[ ]` or `{ }` ends the collection at its `}`.
        let line = location.and_then(|at| text.lines().nth(at.line as usize - 1));
        let hint = line
            .filter(|line| line.contains("${") && line.replace("${", "").contains(['{', '[']))
            .map(|_| {
                "inside `[ ]` or `{ }`, quote values that contain `${VAR}`, as \"${VAR}\""
                    .to_owned()
            });

        let mut errors = ConfigErrors::new();
        errors.problems.push(super::Problem {
            path: String::new(),
            message: format!("invalid YAML: {message}"),
            hint,
            location,
        });
        errors
    })
}

impl Node {
    /// Describes the kind of value for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Unresolved => "an unresolved string",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn is_unresolved(&self) -> bool {
        matches!(self.value, Value::Unresolved)
    }

    /// Converts the tree to JSON for a stage's free-form `config`.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null | Value::Unresolved => serde_json::Value::Null,
            Value::Bool(flag) => serde_json::Value::Bool(*flag),
            Value::Int(number) => match (i64::try_from(*number), u64::try_from(*number)) {
                (Ok(signed), _) => signed.into(),
                (_, Ok(unsigned)) => unsigned.into(),
                // YAML integers beyond 64 bits have no exact JSON number, so keep the digits.
                _ => serde_json::Value::String(number.to_string()),
            },
            Value::Float(number) => serde_json::Number::from_f64(*number)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::String(text) => serde_json::Value::String(text.clone()),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|entry| (entry.key.clone(), entry.value.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

/// Returns the path of a mapping key below `parent`, as `stages[0].config.key`.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if plain {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    match (parent.is_empty(), plain) {
        (true, _) => key,
        (false, true) => format!("{parent}.{key}"),
        (false, false) => format!("{parent}[{key}]"),
    }
}

/// Returns the path of a list element below `parent`, as `stages[1]`.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The entries of one mapping section, after its unknown keys have been reported.
pub(crate) struct Section<'a> {
    pub path: String,
    pub location: Location,
    entries: &'a [Entry],
}

impl<'a> Section<'a> {
    /// Checks that `node` is a mapping and reports every key not in `known`, suggesting the
    /// closest known key. Returns `None`, after reporting, when `node` is not a mapping.
    pub fn new(
        node: &'a Node,
        path: &str,
        known: &[&str],
        errors: &mut ConfigErrors,
    ) -> Option<Section<'a>> {
        let Value::Map(entries) = &node.value else {
            errors.push_at(
                path,
                node.location,
                format!("expected a mapping, found {}", node.kind()),
                Some(format!(
                    "write `key: value` lines; valid keys: {}",
                    known.join(", ")
                )),
            );
            return None;
        };

        for entry in entries {
            if !known.contains(&entry.key.as_str()) {
                errors.push_at(
                    &key_path(path, &entry.key),
                    entry.key_location,
                    format!("unknown key `{}`", entry.key),
                    Some(super::errors::suggestion(&entry.key, known, "keys")),
                );
            }
        }

        Some(Section {
            path: path.to_owned(),
            location: node.location,
            entries,
        })
    }

    /// Returns the path and value of `key`. A key whose value is null counts as absent.
    pub fn get(&self, key: &str) -> Option<(String, &'a Node)> {
        self.entries
            .iter()
            .find(|entry| entry.key == key && !entry.value.is_null())
            .map(|entry| (key_path(&self.path, key), &entry.value))
    }

    /// Returns the path and value of `key`, reporting it as missing with an example otherwise.
    pub fn require(
        &self,
        key: &str,
        example: &str,
        errors: &mut ConfigErrors,
    ) -> Option<(String, &'a Node)> {
        let found = self.get(key);
        if found.is_none() {
            errors.push_at(
                &self.path,
                self.location,
                format!("missing required key `{key}`"),
                Some(format!("add `{example}`")),
            );
        }
        found
    }
}

/// Returns the text of a string value, or of an integer where a string is expected (YAML
/// types `name: 2024` as an integer). Reports any other kind of value.
pub(crate) fn string(node: &Node, path: &str, errors: &mut ConfigErrors) -> Option<String> {
    match &node.value {
        Value::String(text) => Some(text.clone()),
        Value::Int(number) => Some(number.to_string()),
        Value::Unresolved => None,
        _ => {
            errors.push_at(
                path,
                node.location,
                format!("expected a string, found {}", node.kind()),
                None,
            );
            None
        }
    }
}

/// Returns an integer value in `min..=max`, reporting anything else with the valid range.
pub(crate) fn integer(
    node: &Node,
    path: &str,
    min: i128,
    max: i128,
    errors: &mut ConfigErrors,
) -> Option<i128> {
    let number = match &node.value {
        Value::Int(number) => Some(*number),
        Value::String(text) if node.expanded => text.trim().parse::<i128>().ok(),
        _ => None,
    };

    match number {
        _ if node.is_unresolved() => None,
        Some(number) if (min..=max).contains(&number) => Some(number),
        Some(number) => {
            errors.push_at(
                path,
                node.location,
                format!("{number} is out of range"),
                Some(format!("use a whole number from {min} to {max}")),
            );
            None
        }
        None => {
            errors.push_at(
                path,
                node.location,
                format!("expected a whole number, found {}", describe(node)),
                Some(format!("use a whole number from {min} to {max}")),
            );
            None
        }
    }
}

/// Describes a value for a message: strings and numbers by their text, others by kind.
pub(crate) fn describe(node: &Node) -> String {
    match &node.value {
        Value::String(text) => format!("`{text}`"),
        Value::Int(number) => format!("`{number}`"),
        Value::Float(number) => format!("`{number}`"),
        Value::Bool(flag) => format!("`{flag}`"),
        _ => node.kind().to_owned(),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;

        // `defined` is the anchored definition of an alias or the source of a merged key,
        // which is the text to fix when the value is wrong.
        let location = Location {
            line: spanned.defined.line(),
            column: spanned.defined.column(),
        };
        Ok(Node {
            value: spanned.value,
            location,
            expanded: false,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E>(self, flag: bool) -> Result<Value, E> {
        Ok(Value::Bool(flag))
    }

    fn visit_i64<E>(self, number: i64) -> Result<Value, E> {
        Ok(Value::Int(number.into()))
    }

    fn visit_u64<E>(self, number: u64) -> Result<Value, E> {
        Ok(Value::Int(number.into()))
    }

    fn visit_i128<E>(self, number: i128) -> Result<Value, E> {
        Ok(Value::Int(number))
    }

    fn visit_u128<E: de::Error>(self, number: u128) -> Result<Value, E> {
        i128::try_from(number)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {number} is too large")))
    }

    fn visit_f64<E>(self, number: f64) -> Result<Value, E> {
        Ok(Value::Float(number))
    }

    fn visit_str<E>(self, text: &str) -> Result<Value, E> {
        Ok(Value::String(text.to_owned()))
    }

    fn visit_string<E>(self, text: String) -> Result<Value, E> {
        Ok(Value::String(text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let text = match key.value {
                Value::String(text) => text,
                Value::Int(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                Value::Float(number) => number.to_string(),
                Value::Null => "null".to_owned(),
                Value::Seq(_) | Value::Map(_) | Value::Unresolved => {
                    return Err(de::Error::custom("mapping keys must be plain strings"));
                }
            };
            let value = map.next_value::<Node>()?;
            entries.push(Entry {
                key: text,
                key_location: key.location,
                value,
            });
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_yaml_keeps_value_locations() {
        let root = parse_yaml("broker:\n  url: pulsar://x\n").unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("root is not a mapping")
        };
        let Value::Map(broker) = &entries[0].value.value else {
            panic!("broker is not a mapping")
        };
        assert_eq!(broker[0].key_location, Location { line: 2, column: 3 });
        assert_eq!(broker[0].value.location, Location { line: 2, column: 8 });
    }

    #[test]
    fn parse_yaml_reports_syntax_error_position() {
        let errors = parse_yaml("a: [1, 2\nb: c\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors.problems[0].message.starts_with("invalid YAML"),
            "{errors}"
        );
        assert!(errors.problems[0].location.is_some(), "{errors}");
    }

    #[test]
    fn parse_yaml_rejects_duplicate_keys() {
        let errors = parse_yaml("a: 1\na: 2\n").unwrap_err();
        assert!(errors.to_string().contains("duplicate"), "{errors}");
        assert_eq!(
            errors.problems[0].location,
            Some(Location { line: 2, column: 1 })
        );
    }

    #[test]
    fn key_path_quotes_unusual_keys() {
        assert_eq!(key_path("", "broker"), "broker");
        assert_eq!(key_path("stages[0]", "config"), "stages[0].config");
        assert_eq!(
            key_path("stages[0].config", "a.b"),
            "stages[0].config[\"a.b\"]"
        );
    }
}
