//! Reading the records of a file: a JSON array, JSON Lines, or CSV with a header row.
//!
//! Each record becomes its compact JSON text. JSON records keep their text as written, minus
//! the whitespace between tokens, so key order and number spelling (`1.50`, integers wider
//! than 64 bits) reach the broker unchanged. A record that cannot be read is returned as a
//! [`Problem`] with its position, and reading goes on with the next one. Only a JSON array
//! that does not parse as a whole fails the whole file.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use serde::de::IgnoredAny;

/// Format of the input file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON array whose elements are the records.
    Json,
    /// One JSON value per line. Blank lines are skipped.
    #[value(name = "jsonl", alias = "ndjson")]
    JsonLines,
    /// Comma-separated values with a header row. Each row becomes an object of strings, and an
    /// empty cell becomes null.
    Csv,
}

impl Format {
    /// Picks the format from the extension of `path`: `.json`, `.jsonl` or `.ndjson`, `.csv`.
    pub fn from_extension(path: &Path) -> anyhow::Result<Format> {
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("json") => Ok(Format::Json),
            Some("jsonl" | "ndjson") => Ok(Format::JsonLines),
            Some("csv") => Ok(Format::Csv),
            _ => bail!(
                "cannot tell the format of {} from its extension, so pass --format json, jsonl or csv",
                path.display()
            ),
        }
    }
}

/// Position of a record in its file, by the line on which it starts. Lines are counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Element `index` (counted from 1) of a JSON array, which starts on `line`.
    Element { index: usize, line: usize },
    /// A line of a JSON Lines file, or the line on which a CSV row starts.
    Line(usize),
}

impl Position {
    /// Line on which the record starts.
    pub fn line(&self) -> usize {
        match *self {
            Position::Element { line, .. } | Position::Line(line) => line,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Element { index, line } => write!(f, "record {index} (line {line})"),
            Position::Line(line) => write!(f, "line {line}"),
        }
    }
}

/// A record that was read, as compact JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub position: Position,
    pub json: String,
}

/// A record that was not sent or not confirmed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub position: Position,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.position, self.reason)
    }
}

/// The records of a file in file order, and the ones that could not be read.
#[derive(Debug, Default)]
pub struct Records {
    pub valid: Vec<Record>,
    pub invalid: Vec<Problem>,
}

/// Reads every record of the file at `path`.
///
/// Fails when the file cannot be read, when a JSON array does not parse (the message names
/// the file, line and column), and when a CSV header row is unreadable or repeats a column.
pub fn read_file(path: &Path, format: Format) -> anyhow::Result<Records> {
    let bytes =
        std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);

    match format {
        Format::Json => {
            read_json_array(bytes).map_err(|error| anyhow!("{}: {error}", path.display()))
        }
        Format::JsonLines => Ok(read_json_lines(bytes)),
        Format::Csv => read_csv(bytes).map_err(|error| anyhow!("{}: {error}", path.display())),
    }
}

fn read_json_array(bytes: &[u8]) -> anyhow::Result<Records> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let (line, column) = line_and_column(bytes, error.valid_up_to());
            bail!("invalid UTF-8 at line {line}, column {column}");
        }
    };
    if let Err(error) = serde_json::from_str::<IgnoredAny>(text) {
        let mut message = format!(
            "invalid JSON at line {}, column {}: {}",
            error.line(),
            error.column(),
            parser_message(&error)
        );
        if parser_message(&error) == "trailing characters" {
            message.push_str(" (if the file has one JSON value per line, pass --format jsonl)");
        }
        bail!(message);
    }

    let Some(elements) = array_elements(text) else {
        bail!(
            "the top-level JSON value is not an array, so write the records as [{{...}}, {{...}}] \
             or pass --format jsonl for one record per line"
        );
    };
    let line_starts = line_starts(text.as_bytes());
    let valid = elements
        .into_iter()
        .enumerate()
        .map(|(index, range)| Record {
            position: Position::Element {
                index: index + 1,
                line: line_of(&line_starts, range.start),
            },
            json: compact(&text[range]),
        })
        .collect();
    Ok(Records {
        valid,
        invalid: Vec::new(),
    })
}

fn read_json_lines(bytes: &[u8]) -> Records {
    let mut records = Records::default();
    for (index, line) in bytes.split(|&byte| byte == b'\n').enumerate() {
        let position = Position::Line(index + 1);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = match std::str::from_utf8(line) {
            Ok(text) => text,
            Err(error) => {
                let reason = format!("invalid UTF-8 at column {}", error.valid_up_to() + 1);
                records.invalid.push(Problem { position, reason });
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }

        match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => records.valid.push(Record {
                position,
                json: compact(text),
            }),
            Err(error) => {
                let reason = format!(
                    "invalid JSON at column {}: {}",
                    error.column(),
                    parser_message(&error)
                );
                records.invalid.push(Problem { position, reason });
            }
        }
    }
    records
}

fn read_csv(bytes: &[u8]) -> anyhow::Result<Records> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let headers = reader
        .headers()
        .context("failed to read the CSV header row")?
        .clone();
    for (column, name) in headers.iter().enumerate() {
        if let Some(first) = headers.iter().take(column).position(|other| other == name) {
            bail!(
                "column name `{name}` appears twice in the CSV header row (columns {} and {}), \
                 so rename one of them",
                first + 1,
                column + 1
            );
        }
    }

    let mut records = Records::default();
    let mut row = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {
                let position = Position::Line(row.position().map_or(0, |at| at.line() as usize));
                if row.len() == headers.len() {
                    let json = csv_row_to_json(&headers, &row);
                    records.valid.push(Record { position, json });
                } else {
                    let reason = format!(
                        "the row has {} fields but the header row has {}",
                        row.len(),
                        headers.len()
                    );
                    records.invalid.push(Problem { position, reason });
                }
            }
            // The reader has already moved past a row whose field is not UTF-8.
            Err(error) => match error.kind() {
                csv::ErrorKind::Utf8 { pos, err } => {
                    let line = pos.as_ref().map_or(0, |at| at.line() as usize);
                    records.invalid.push(Problem {
                        position: Position::Line(line),
                        reason: format!("field {} is not valid UTF-8", err.field() + 1),
                    });
                }
                _ => return Err(error).context("failed to read a CSV row"),
            },
        }
    }
    Ok(records)
}

/// Builds the JSON object of one CSV row, with the columns in header order.
fn csv_row_to_json(headers: &csv::StringRecord, row: &csv::StringRecord) -> String {
    let mut json = String::from("{");
    for (column, (name, cell)) in headers.iter().zip(row.iter()).enumerate() {
        if column > 0 {
            json.push(',');
        }
        json.push_str(&serde_json::Value::from(name).to_string());
        json.push(':');
        if cell.is_empty() {
            json.push_str("null");
        } else {
            json.push_str(&serde_json::Value::from(cell).to_string());
        }
    }
    json.push('}');
    json
}

/// Returns the message of a serde_json error without its " at line L column C" suffix.
fn parser_message(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match full.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => full,
    }
}

/// Returns the byte range of each element of the top-level array in `text`, or `None` when
/// the top-level value is not an array. `text` must be valid JSON.
fn array_elements(text: &str) -> Option<Vec<Range<usize>>> {
    let bytes = text.as_bytes();
    let open = bytes.iter().position(|byte| !byte.is_ascii_whitespace())?;
    if bytes[open] != b'[' {
        return None;
    }

    let mut elements = Vec::new();
    let mut start = None;
    // Nesting depth inside the top-level array.
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, &byte) in bytes.iter().enumerate().skip(open + 1) {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }

        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b',' if depth == 0 => {
                elements.push(start.take()?..at);
                continue;
            }
            b']' if depth == 0 => {
                if let Some(start) = start.take() {
                    elements.push(start..at);
                }
                return Some(elements);
            }
            _ => {}
        }
        start.get_or_insert(at);
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Removes the whitespace between the tokens of valid JSON `text`, keeping strings and
/// numbers exactly as written.
fn compact(text: &str) -> String {
    let mut compacted = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            compacted.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            ' ' | '\t' | '\n' | '\r' => {}
            '"' => {
                in_string = true;
                compacted.push(c);
            }
            _ => compacted.push(c),
        }
    }
    compacted
}

/// Byte offsets at which the lines of `bytes` start.
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    let newlines = bytes
        .iter()
        .enumerate()
        .filter(|&(_, &byte)| byte == b'\n')
        .map(|(at, _)| at + 1);
    std::iter::once(0).chain(newlines).collect()
}

/// Line, counted from 1, of the byte at `offset`.
fn line_of(line_starts: &[usize], offset: usize) -> usize {
    line_starts.partition_point(|&start| start <= offset)
}

/// Line and byte column, both counted from 1, of the byte at `offset`.
fn line_and_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let starts = line_starts(bytes);
    let line = line_of(&starts, offset);
    (line, offset - starts[line - 1] + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elements(text: &str) -> Vec<&str> {
        array_elements(text)
            .expect("an array")
            .into_iter()
            .map(|range| &text[range])
            .collect()
    }

    #[test]
    fn array_elements_skip_nested_commas_and_brackets() {
        let text = r#" [ {"a": [1, 2], "b": "x,]}\""} , 3,"s" ,[[]] ] "#;
        assert_eq!(
            elements(text),
            [r#"{"a": [1, 2], "b": "x,]}\""} "#, "3", r#""s" "#, "[[]] "]
        );
    }

    #[test]
    fn array_elements_of_empty_array() {
        assert!(elements("[ \n ]").is_empty());
    }

    #[test]
    fn array_elements_reject_other_values() {
        assert_eq!(array_elements(r#"{"a": 1}"#), None);
        assert_eq!(array_elements("3"), None);
    }

    #[test]
    fn compact_keeps_strings_numbers_and_order() {
        let text = "{ \"b\" : 1.50,\n\t\"a\": \"x  y \\\" z\", \"n\": 123456789012345678901234 }";
        assert_eq!(
            compact(text),
            r#"{"b":1.50,"a":"x  y \" z","n":123456789012345678901234}"#
        );
    }

    #[test]
    fn line_and_column_count_from_one() {
        let bytes = b"ab\ncd\n";
        assert_eq!(line_and_column(bytes, 0), (1, 1));
        assert_eq!(line_and_column(bytes, 4), (2, 2));
        assert_eq!(line_and_column(bytes, 6), (3, 1));
    }

    #[test]
    fn json_array_positions_name_record_and_line() {
        let records = read_json_array(b"[\n  {\"id\": 1},\n\n  {\"id\": 2}\n]\n").unwrap();
        let positions: Vec<Position> = records.valid.iter().map(|record| record.position).collect();
        assert_eq!(
            positions,
            [
                Position::Element { index: 1, line: 2 },
                Position::Element { index: 2, line: 4 }
            ]
        );
    }

    #[test]
    fn truncated_json_array_names_line_and_column() {
        let error = read_json_array(b"[\n  {\"id\": 1},\n  {\"id\": 2").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid JSON at line 3, column 10: EOF while parsing an object"
        );
    }

    #[test]
    fn json_lines_invalid_and_blank_lines() {
        let records = read_json_lines(b"{\"id\": 1}\r\n\n{\"id\": \n\xFF\n[2]");
        assert_eq!(records.valid.len(), 2);
        assert_eq!(records.valid[1].position, Position::Line(5));
        let invalid: Vec<String> = records.invalid.iter().map(Problem::to_string).collect();
        assert_eq!(
            invalid,
            [
                "line 3: invalid JSON at column 7: EOF while parsing a value",
                "line 4: invalid UTF-8 at column 1"
            ]
        );
    }

    #[test]
    fn csv_rows_become_objects_in_column_order() {
        let records =
            read_csv(b"Title,Year,Note\n\"A, B\",1999,\nC,2001,\"say \"\"hi\"\"\"\n").unwrap();
        let json: Vec<&str> = records
            .valid
            .iter()
            .map(|record| record.json.as_str())
            .collect();
        assert_eq!(
            json,
            [
                r#"{"Title":"A, B","Year":"1999","Note":null}"#,
                r#"{"Title":"C","Year":"2001","Note":"say \"hi\""}"#
            ]
        );
    }

    #[test]
    fn csv_reports_wrong_field_count_and_invalid_utf8() {
        let records = read_csv(b"a,b\n1,2\n1,2,3\n\xFF,4\n5,6\n").unwrap();
        assert_eq!(records.valid.len(), 2);
        assert_eq!(records.valid[1].position, Position::Line(5));
        let invalid: Vec<String> = records.invalid.iter().map(Problem::to_string).collect();
        assert_eq!(
            invalid,
            [
                "line 3: the row has 3 fields but the header row has 2",
                "line 4: field 1 is not valid UTF-8"
            ]
        );
    }

    #[test]
    fn csv_rejects_repeated_column_names() {
        let error = read_csv(b"a,b,a\n1,2,3\n").unwrap_err();
        assert!(error.to_string().contains("`a` appears twice"), "{error}");
    }
}
