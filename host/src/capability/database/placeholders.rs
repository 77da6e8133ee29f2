//! `?` placeholders: counted on every backend and renumbered to `$1, $2, ...` for PostgreSQL.
//!
//! A `?` inside a string literal, a quoted identifier or a comment is text, not a
//! placeholder. The scanner follows each backend's lexical rules for those:
//!
//! - all backends: `'...'` strings with `''` escapes, `-- ` line comments and `/* */` blocks;
//! - SQLite: `"..."`, `` `...` `` and `[...]` identifiers;
//! - MySQL and MariaDB: backslash escapes in `'...'` and `"..."` strings (the default
//!   without `NO_BACKSLASH_ESCAPES`), `` `...` `` identifiers, `#` line comments, and
//!   `/*! ... */` comments, whose content the server runs as SQL;
//! - PostgreSQL: `"..."` identifiers, `E'...'` strings with backslash escapes, `$tag$...$tag$`
//!   dollar quoting and nested block comments.
//!
//! Every other `?` is a placeholder, so PostgreSQL's JSONB operators `?`, `?|` and `?&`
//! cannot be written directly: use `jsonb_exists`, `jsonb_exists_any` and `jsonb_exists_all`.

use std::borrow::Cow;
use std::fmt::Write;

use crate::bindings::database::Backend;

/// A statement ready for its backend, with the number of placeholders it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The SQL text as sent: unchanged for SQLite and MySQL, renumbered for PostgreSQL.
    pub sql: Cow<'a, str>,
    pub placeholders: usize,
}

/// Counts the `?` placeholders in `sql` and, for PostgreSQL, replaces them with `$1, $2, ...`.
///
/// An unterminated string or comment runs to the end of the text. The database reports
/// the syntax error when the statement runs.
pub fn rewrite(sql: &str, backend: Backend) -> Statement<'_> {
    let bytes = sql.as_bytes();
    let mut placeholders = 0;
    // Text up to `copied` is already in `rewritten`. Only PostgreSQL rewrites.
    let mut rewritten = String::new();
    let mut copied = 0;

    // Scanning bytes is safe for UTF-8 text: every delimiter is ASCII, and no byte of a
    // multi-byte character is in the ASCII range.
    let mut i = 0;
    while i < bytes.len() {
        i = match bytes[i] {
            b'?' => {
                placeholders += 1;
                if backend == Backend::Postgres {
                    rewritten.push_str(&sql[copied..i]);
                    write!(rewritten, "${placeholders}").expect("writing to a String cannot fail");
                    copied = i + 1;
                }
                i + 1
            }
            b'\'' => {
                let backslash_escapes = match backend {
                    Backend::Mysql => true,
                    Backend::Postgres => is_escape_string_prefix(bytes, i),
                    Backend::Sqlite => false,
                };
                skip_quoted(bytes, i, b'\'', backslash_escapes)
            }
            b'"' => skip_quoted(bytes, i, b'"', backend == Backend::Mysql),
            b'`' if backend != Backend::Postgres => skip_quoted(bytes, i, b'`', false),
            b'[' if backend == Backend::Sqlite => skip_past(bytes, i + 1, b"]"),
            b'-' if starts_line_comment(bytes, i, backend) => skip_past(bytes, i + 2, b"\n"),
            b'#' if backend == Backend::Mysql => skip_past(bytes, i + 1, b"\n"),
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                if backend == Backend::Mysql && bytes.get(i + 2) == Some(&b'!') {
                    // MySQL runs the content of `/*! ... */` as SQL, so it is scanned as such.
                    i + 3
                } else if backend == Backend::Postgres {
                    skip_nested_comment(bytes, i)
                } else {
                    skip_past(bytes, i + 2, b"*/")
                }
            }
            b'$' if backend == Backend::Postgres => match dollar_quote_tag(bytes, i) {
                Some(tag) => skip_past(bytes, i + tag.len(), tag),
                None => i + 1,
            },
            _ => i + 1,
        };
    }

    let sql = if backend == Backend::Postgres && placeholders > 0 {
        rewritten.push_str(&sql[copied..]);
        Cow::Owned(rewritten)
    } else {
        Cow::Borrowed(sql)
    };
    Statement { sql, placeholders }
}

/// Returns the index just past the quoted text that opens at `start`. A doubled quote
/// character stands for itself, and so does a backslash-escaped one when
/// `backslash_escapes` is set.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        let byte = bytes[i];
        if backslash_escapes && byte == b'\\' {
            i += 2;
        } else if byte == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Returns the index just past the first `end` at or after `from`, or the end of the text.
fn skip_past(bytes: &[u8], from: usize, end: &[u8]) -> usize {
    bytes
        .get(from..)
        .and_then(|rest| rest.windows(end.len()).position(|window| window == end))
        .map_or(bytes.len(), |offset| from + offset + end.len())
}

/// PostgreSQL block comments nest: `/* a /* b */ c */` is one comment.
fn skip_nested_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// `--` starts a comment, except in MySQL when no space or control character follows it:
/// there, `1--1` is arithmetic.
fn starts_line_comment(bytes: &[u8], i: usize, backend: Backend) -> bool {
    if bytes.get(i + 1) != Some(&b'-') {
        return false;
    }
    match (backend, bytes.get(i + 2)) {
        (Backend::Mysql, Some(next)) => next.is_ascii_whitespace() || next.is_ascii_control(),
        _ => true,
    }
}

/// Returns whether the `'` at `quote` opens a PostgreSQL escape string, `E'...'`.
fn is_escape_string_prefix(bytes: &[u8], quote: usize) -> bool {
    quote >= 1
        && matches!(bytes[quote - 1], b'E' | b'e')
        && (quote < 2 || !is_identifier_byte(bytes[quote - 2]))
}

/// Returns the `$tag$` (possibly `$$`) that opens a dollar-quoted string at `start`.
/// A `$` inside an identifier or followed by a digit (`$1`) opens nothing.
fn dollar_quote_tag(bytes: &[u8], start: usize) -> Option<&[u8]> {
    if start > 0 && is_identifier_byte(bytes[start - 1]) {
        return None;
    }
    let mut end = start + 1;
    while end < bytes.len() && bytes[end] != b'$' {
        let byte = bytes[end];
        let valid = if end == start + 1 {
            byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80
        } else {
            is_identifier_byte(byte)
        };
        if !valid {
            return None;
        }
        end += 1;
    }
    (end < bytes.len()).then(|| &bytes[start..=end])
}

/// Letters, digits, `_`, `$` and every byte of a non-ASCII character, as PostgreSQL allows
/// in identifiers.
fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
}
