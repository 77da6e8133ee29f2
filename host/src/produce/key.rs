//! Message keys built from the fields of a record.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// Source of each message's key in its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The value of one top-level field.
    Field(String),
    /// A template whose placeholders name top-level fields.
    Template(KeyTemplate),
}

impl KeySource {
    /// Builds the key of the record whose JSON text is `json`, or returns why it cannot.
    ///
    /// A field must be present and contain a string, a number or a boolean. Strings are used as
    /// they are, and numbers and booleans as their JSON text. Integers wider than 64 bits are
    /// rendered as `f64`, so they lose digits.
    pub fn key_for(&self, json: &str) -> Result<String, String> {
        let record: Value =
            serde_json::from_str(json).map_err(|error| format!("invalid JSON: {error}"))?;

        match self {
            KeySource::Field(name) => field_text(&record, name),
            KeySource::Template(template) => {
                let mut key = String::new();
                for part in &template.parts {
                    match part {
                        Part::Literal(text) => key.push_str(text),
                        Part::Field(name) => key.push_str(&field_text(&record, name)?),
                    }
                }
                Ok(key)
            }
        }
    }
}

/// A key template such as `{Title} ({Release Date})`: text with field names in braces.
/// `{{` and `}}` stand for literal braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
}

impl FromStr for KeyTemplate {
    type Err = String;

    fn from_str(template: &str) -> Result<KeyTemplate, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = template.char_indices().peekable();

        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.next_if(|&(_, next)| next == '{').is_some() => literal.push('{'),
                '}' if chars.next_if(|&(_, next)| next == '}').is_some() => literal.push('}'),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, '{')) | None => {
                                return Err(format!(
                                    "the `{{` at character {} has no closing `}}` (write `{{{{` for a literal brace)",
                                    at + 1
                                ));
                            }
                            Some((_, c)) => name.push(c),
                        }
                    }
                    if name.is_empty() {
                        return Err(format!(
                            "the placeholder at character {} is empty, so put a field name between the braces",
                            at + 1
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(name));
                }
                '}' => {
                    return Err(format!(
                        "the `}}` at character {} has no opening `{{` (write `}}}}` for a literal brace)",
                        at + 1
                    ));
                }
                _ => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }

        if !parts.iter().any(|part| matches!(part, Part::Field(_))) {
            return Err(
                "the key template has no placeholder, so every message would get the same key. \
                 Name a field in braces, as `{id}`"
                    .to_owned(),
            );
        }
        Ok(KeyTemplate { parts })
    }
}

impl fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(text) => write!(f, "{}", text.replace('{', "{{").replace('}', "}}"))?,
                Part::Field(name) => write!(f, "{{{name}}}")?,
            }
        }
        Ok(())
    }
}

/// Returns the text of top-level field `name` of `record`, or why there is none.
fn field_text(record: &Value, name: &str) -> Result<String, String> {
    let Value::Object(fields) = record else {
        return Err(format!(
            "the record is {}, not an object, so it has no key field `{name}`",
            kind(record)
        ));
    };
    match fields.get(name) {
        None => Err(format!("key field `{name}` is missing")),
        Some(Value::Null) => Err(format!("key field `{name}` is null")),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        Some(Value::Bool(flag)) => Ok(flag.to_string()),
        Some(other) => Err(format!(
            "key field `{name}` is {}, but a key can only be built from a string, number or boolean",
            kind(other)
        )),
    }
}

/// Names the JSON type of `value` with its article, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> KeySource {
        KeySource::Template(text.parse().unwrap())
    }

    #[test]
    fn template_fills_placeholders() {
        let key = template("{Title} ({Release Date})")
            .key_for(r#"{"Title": "Alien", "Release Date": "May 25 1979"}"#);
        assert_eq!(key.as_deref(), Ok("Alien (May 25 1979)"));
    }

    #[test]
    fn template_keeps_escaped_braces() {
        let key = template("{{{id}}}").key_for(r#"{"id": 7}"#);
        assert_eq!(key.as_deref(), Ok("{7}"));
    }

    #[test]
    fn template_round_trips_through_display() {
        let parsed: KeyTemplate = "a{{b}} {x} c".parse().unwrap();
        assert_eq!(parsed.to_string(), "a{{b}} {x} c");
    }

    #[test]
    fn template_syntax_errors_name_the_character() {
        let cases = [
            ("{Title", "the `{` at character 1 has no closing `}`"),
            ("a {}", "the placeholder at character 3 is empty"),
            ("a } b {x}", "the `}` at character 3 has no opening `{`"),
            ("plain", "the key template has no placeholder"),
        ];
        for (text, expected) in cases {
            let error = text.parse::<KeyTemplate>().unwrap_err();
            assert!(error.starts_with(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn field_renders_numbers_and_booleans_as_text() {
        let field = |name: &str| KeySource::Field(name.to_owned());
        let record = r#"{"n": 42, "f": 1.5, "b": true, "s": "x"}"#;
        assert_eq!(field("n").key_for(record).as_deref(), Ok("42"));
        assert_eq!(field("f").key_for(record).as_deref(), Ok("1.5"));
        assert_eq!(field("b").key_for(record).as_deref(), Ok("true"));
        assert_eq!(field("s").key_for(record).as_deref(), Ok("x"));
    }

    #[test]
    fn field_errors_say_why() {
        let field = |name: &str| KeySource::Field(name.to_owned());
        let record = r#"{"n": null, "o": {}}"#;
        assert_eq!(
            field("id").key_for(record),
            Err("key field `id` is missing".to_owned())
        );
        assert_eq!(
            field("n").key_for(record),
            Err("key field `n` is null".to_owned())
        );
        assert!(
            field("o")
                .key_for(record)
                .unwrap_err()
                .contains("is an object")
        );
        assert!(
            field("id")
                .key_for("[1]")
                .unwrap_err()
                .contains("the record is an array")
        );
    }
}
