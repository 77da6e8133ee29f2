//! Pulsar topic names and topic patterns.

use regex::Regex;

/// Tenant and namespace used for short topic names, as in Pulsar's own clients.
pub const DEFAULT_NAMESPACE: &str = "public/default";

const SCHEMES: &[&str] = &["persistent://", "non-persistent://"];

const TOPIC_HINT: &str = "write `movies`, `tenant/namespace/movies` or \
                          `persistent://tenant/namespace/movies`, each part made of letters, \
                          digits, `_`, `-`, `=`, `:` and `.`";

/// A compiled `input_pattern`.
#[derive(Debug, Clone)]
pub struct TopicPattern {
    /// The pattern as written, anchored at both ends and allowing a `-partition-N` suffix.
    /// Pulsar's Java client (`TopicList.filterTopics`) matches the whole base name of each
    /// topic, while the Rust client only searches in the names it lists, partitions included.
    pub regex: Regex,
    /// The `tenant/namespace` whose topics are listed and matched against the regex.
    pub namespace: String,
}

/// Returns the fully qualified form of a topic name, or why it is invalid.
///
/// `movies` becomes `persistent://public/default/movies`, `tenant/ns/movies` becomes
/// `persistent://tenant/ns/movies`, and names with a `persistent://` or `non-persistent://`
/// scheme are kept.
pub fn expand_topic(name: &str) -> Result<String, (String, String)> {
    let invalid = |reason: String| {
        Err((
            format!("invalid topic name `{name}`: {reason}"),
            TOPIC_HINT.to_owned(),
        ))
    };

    let (scheme, rest) = match SCHEMES
        .iter()
        .find_map(|scheme| Some((*scheme, name.strip_prefix(scheme)?)))
    {
        Some(split) => split,
        None if name.contains("://") => {
            return invalid("the scheme must be persistent:// or non-persistent://".into());
        }
        None => ("persistent://", name),
    };

    let segments: Vec<&str> = rest.split('/').collect();
    let (namespace, local) = match segments.as_slice() {
        [local] if scheme == "persistent://" && rest == name => {
            (DEFAULT_NAMESPACE.to_owned(), *local)
        }
        [tenant, namespace, local] => {
            for part in [tenant, namespace] {
                if let Err(reason) = check_segment(part, false) {
                    return invalid(reason);
                }
            }
            (format!("{tenant}/{namespace}"), *local)
        }
        _ => return invalid("expected a name, tenant/namespace/name or a full topic URL".into()),
    };

    if let Err(reason) = check_segment(local, true) {
        return invalid(reason);
    }
    Ok(format!("{scheme}{namespace}/{local}"))
}

/// Checks one part of a topic name against Pulsar's rule for tenant and namespace names
/// (`NamedEntity` in pulsar-common): letters, digits and `_ - = : .`. Local topic names may
/// also contain `%`, which Pulsar allows as part of URL encoding.
fn check_segment(segment: &str, local_name: bool) -> Result<(), String> {
    if segment.is_empty() {
        return Err("a part between `/` is empty".into());
    }
    let invalid = segment
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "_-=:.".contains(c) || (local_name && c == '%')));
    match invalid {
        Some(c) => Err(format!("character {c:?} is not allowed")),
        None => Ok(()),
    }
}

/// Compiles an `input_pattern`, or returns why it is invalid.
///
/// A pattern with a scheme names its namespace literally, as
/// `persistent://public/default/movies-.*`. A pattern without `/` matches topics in
/// `public/default`, as `movies-.*`.
pub(crate) fn compile_pattern(pattern: &str) -> Result<TopicPattern, (String, String)> {
    let example = "write `persistent://tenant/namespace/movies-.*`, or `movies-.*` for the \
                   public/default namespace";

    let full = if SCHEMES.iter().any(|scheme| pattern.starts_with(scheme)) {
        pattern.to_owned()
    } else if !pattern.contains('/') {
        format!("persistent://{DEFAULT_NAMESPACE}/{pattern}")
    } else {
        return Err((
            format!(
                "invalid topic pattern `{pattern}`: a pattern with a namespace must start with persistent:// or non-persistent://"
            ),
            example.to_owned(),
        ));
    };

    // The namespace is listed before matching, so it must be literal text.
    let after_scheme = &full[full.find("://").unwrap_or(0) + 3..];
    let parts: Vec<&str> = after_scheme.splitn(3, '/').collect();
    let namespace = match parts.as_slice() {
        [tenant, namespace, _] => {
            let tenant = tenant.replace("\\.", ".");
            let namespace = namespace.replace("\\.", ".");
            if check_segment(&tenant, false).is_err() || check_segment(&namespace, false).is_err() {
                return Err((
                    format!(
                        "invalid topic pattern `{pattern}`: tenant and namespace must be literal names"
                    ),
                    example.to_owned(),
                ));
            }
            format!("{tenant}/{namespace}")
        }
        _ => {
            return Err((
                format!(
                    "invalid topic pattern `{pattern}`: expected scheme://tenant/namespace/pattern"
                ),
                example.to_owned(),
            ));
        }
    };

    match Regex::new(&format!("^(?:{full})(?:-partition-[0-9]+)?$")) {
        Ok(regex) => Ok(TopicPattern { regex, namespace }),
        Err(error) => Err((
            format!(
                "invalid regular expression `{pattern}`: {}",
                regex_error_summary(&error.to_string())
            ),
            "check the regex syntax; escape a literal `.` as `\\.`".to_owned(),
        )),
    }
}

/// Returns the last line of a regex error, which states the cause without the ASCII-art
/// pointer of the lines before it.
fn regex_error_summary(text: &str) -> &str {
    text.lines().last().unwrap_or(text).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_topic_qualifies_short_names() {
        assert_eq!(
            expand_topic("movies").unwrap(),
            "persistent://public/default/movies"
        );
        assert_eq!(
            expand_topic("acme/media/movies").unwrap(),
            "persistent://acme/media/movies"
        );
        assert_eq!(
            expand_topic("persistent://a/b/c").unwrap(),
            "persistent://a/b/c"
        );
        assert_eq!(
            expand_topic("non-persistent://a/b/c").unwrap(),
            "non-persistent://a/b/c"
        );
    }

    #[test]
    fn expand_topic_rejects_invalid_names() {
        for name in [
            "",
            "media/movies",
            "a/b/c/d",
            "mov ies",
            "http://a/b/c",
            "persistent://movies",
            "a//c",
        ] {
            assert!(expand_topic(name).is_err(), "{name:?} was accepted");
        }
    }

    #[test]
    fn compile_pattern_anchors_and_finds_namespace() {
        let pattern = compile_pattern("persistent://acme/media/movies-.*").unwrap();
        assert_eq!(pattern.namespace, "acme/media");
        assert!(
            pattern
                .regex
                .is_match("persistent://acme/media/movies-2024")
        );
        assert!(
            !pattern
                .regex
                .is_match("persistent://acme/media/old-movies-2024")
        );

        let exact = compile_pattern("persistent://acme/media/movies").unwrap();
        assert!(exact.regex.is_match("persistent://acme/media/movies"));
        assert!(
            exact
                .regex
                .is_match("persistent://acme/media/movies-partition-3")
        );
        assert!(!exact.regex.is_match("persistent://acme/media/movies-2024"));

        let short = compile_pattern("movies-.*").unwrap();
        assert_eq!(short.namespace, "public/default");
        assert!(short.regex.is_match("persistent://public/default/movies-1"));
    }

    #[test]
    fn compile_pattern_rejects_bad_regex_and_namespace() {
        assert!(compile_pattern("movies-(").is_err());
        assert!(compile_pattern("acme/media/movies-.*").is_err());
        assert!(compile_pattern("persistent://acme/.*/movies").is_err());
    }
}
