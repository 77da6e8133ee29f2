//! `${VAR}` substitution from the environment.
//!
//! Substitution runs on the parsed tree, one string value at a time, so a variable whose value
//! contains YAML syntax (`: `, `#`, a line break) stays one string and cannot change the
//! structure of the file. Mapping keys are not expanded.

use super::errors::ConfigErrors;
use super::tree::{Node, Value, index_path, key_path};

/// Replaces every `${NAME}` in the string values below `node` with the variable's value from
/// `env`, and `$${` with a literal `${`. Reports each missing variable with its path and
/// marks that string [`Value::Unresolved`].
pub(crate) fn expand_env(
    node: &mut Node,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut ConfigErrors,
) {
    match &mut node.value {
        Value::String(text) => {
            if !text.contains('$') {
                return;
            }
            match expand_string(text, env) {
                Ok((expanded, substituted)) => {
                    node.expanded = substituted;
                    *text = expanded;
                }
                Err(failures) => {
                    for failure in failures {
                        let (message, hint) = failure.describe();
                        errors.push_at(path, node.location, message, Some(hint));
                    }
                    node.value = Value::Unresolved;
                }
            }
        }
        Value::Seq(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                expand_env(item, &index_path(path, index), env, errors);
            }
        }
        Value::Map(entries) => {
            for entry in entries {
                expand_env(&mut entry.value, &key_path(path, &entry.key), env, errors);
            }
        }
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Unresolved => {}
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Failure {
    Missing(String),
    InvalidName(String),
    Unterminated,
}

impl Failure {
    fn describe(&self) -> (String, String) {
        match self {
            Failure::Missing(name) => (
                format!("environment variable `{name}` is not set"),
                format!("set it, for example `export {name}=...`, or remove `${{{name}}}`"),
            ),
            Failure::InvalidName(name) => (
                format!("invalid variable name `{name}` in `${{{name}}}`"),
                "a name contains only letters, digits and `_`, and does not start with a digit; \
                 defaults such as `${VAR:-x}` are not supported; write `$${` for a literal `${`"
                    .to_owned(),
            ),
            Failure::Unterminated => (
                "`${` has no closing `}`".to_owned(),
                "close the variable reference, or write `$${` for a literal `${`".to_owned(),
            ),
        }
    }
}

/// Returns `text` with its variables substituted and whether it contained any variable, or
/// every failure found in it.
fn expand_string(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, bool), Vec<Failure>> {
    let mut output = String::with_capacity(text.len());
    let mut substituted = false;
    let mut failures = Vec::new();
    let mut rest = text;

    while let Some(dollar) = rest.find('$') {
        output.push_str(&rest[..dollar]);
        let after = &rest[dollar..];

        if let Some(escaped) = after.strip_prefix("$${") {
            output.push_str("${");
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix("${") {
            let Some(end) = reference.find('}') else {
                failures.push(Failure::Unterminated);
                break;
            };
            let name = &reference[..end];
            if !is_variable_name(name) {
                failures.push(Failure::InvalidName(name.to_owned()));
            } else if let Some(value) = env(name) {
                output.push_str(&value);
                substituted = true;
            } else {
                failures.push(Failure::Missing(name.to_owned()));
            }
            rest = &reference[end + 1..];
        } else {
            // A `$` that does not start `${` is kept as written, as in `price: $5`.
            output.push('$');
            rest = &after[1..];
        }
    }
    output.push_str(rest);

    if failures.is_empty() {
        Ok((output, substituted))
    } else {
        Err(failures)
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("abc: {x}".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expand_string_substitutes_variables() {
        assert_eq!(
            expand_string("Bearer ${TOKEN}!", &env),
            Ok(("Bearer abc: {x}!".to_owned(), true))
        );
        assert_eq!(expand_string("${EMPTY}", &env), Ok((String::new(), true)));
    }

    #[test]
    fn expand_string_keeps_escaped_and_lone_dollars() {
        assert_eq!(
            expand_string("$${TOKEN} costs $5", &env),
            Ok(("${TOKEN} costs $5".to_owned(), false))
        );
        assert_eq!(
            expand_string("$$${TOKEN}", &env),
            Ok(("$${TOKEN}".to_owned(), false))
        );
    }

    #[test]
    fn expand_string_reports_every_missing_variable() {
        let failures = expand_string("${A}-${TOKEN}-${B}", &env).unwrap_err();
        assert_eq!(
            failures,
            vec![Failure::Missing("A".into()), Failure::Missing("B".into())]
        );
    }

    #[test]
    fn expand_string_rejects_bad_references() {
        assert_eq!(
            expand_string("${A:-x}", &env),
            Err(vec![Failure::InvalidName("A:-x".into())])
        );
        assert_eq!(
            expand_string("${1A}", &env),
            Err(vec![Failure::InvalidName("1A".into())])
        );
        assert_eq!(
            expand_string("x ${TOKEN", &env),
            Err(vec![Failure::Unterminated])
        );
    }
}
