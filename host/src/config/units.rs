//! Durations (`500ms`, `5s`, `2m`) and byte sizes (`64MiB`, `1000000`).

use std::time::Duration;

use super::errors::ConfigErrors;
use super::tree::{Node, Value, describe};

const DURATION_UNITS: &[(&str, u64)] = &[("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Binary units are powers of 1024 and decimal units powers of 1000, as in IEC 80000-13.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

/// Parses a whole number followed by `ms`, `s`, `m` or `h`, as `500ms` or `5s`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = split_number(text)?;
    let (_, millis_per_unit) = DURATION_UNITS.iter().find(|(name, _)| *name == unit)?;
    number
        .checked_mul(*millis_per_unit)
        .map(Duration::from_millis)
}

/// Parses a number of bytes, either bare (`1000000`) or with a unit (`64MiB`, `512KiB`, `5MB`).
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let (number, unit) = split_number(text)?;
    if unit.is_empty() {
        return Some(number);
    }
    let (_, bytes_per_unit) = SIZE_UNITS.iter().find(|(name, _)| *name == unit)?;
    number.checked_mul(*bytes_per_unit)
}

/// Splits `64MiB` into 64 and `MiB`. One space between number and unit is allowed.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return None;
    }
    let number = text[..digits].parse().ok()?;
    let unit = text[digits..].strip_prefix(' ').unwrap_or(&text[digits..]);
    Some((number, unit))
}

/// Formats a byte count with the largest binary unit that divides it, as `64 MiB`.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

/// Reads a duration value, reporting an invalid one with an example.
pub(crate) fn duration(
    node: &Node,
    path: &str,
    example: &str,
    errors: &mut ConfigErrors,
) -> Option<Duration> {
    let parsed = match &node.value {
        Value::String(text) => parse_duration(text),
        _ => None,
    };
    if parsed.is_none() && !node.is_unresolved() {
        let hint = match node.value {
            Value::Int(_) => format!("add a unit: ms, s, m or h, for example `{example}`"),
            _ => {
                format!("write a whole number and a unit (ms, s, m or h), for example `{example}`")
            }
        };
        errors.push_at(
            path,
            node.location,
            format!("invalid duration {}", describe(node)),
            Some(hint),
        );
    }
    parsed
}

/// Reads a byte size value, reporting an invalid one with an example.
pub(crate) fn size(
    node: &Node,
    path: &str,
    example: &str,
    errors: &mut ConfigErrors,
) -> Option<u64> {
    let parsed = match &node.value {
        Value::Int(number) => u64::try_from(*number).ok(),
        Value::String(text) => parse_size(text),
        _ => None,
    };
    if parsed.is_none() && !node.is_unresolved() {
        errors.push_at(
            path,
            node.location,
            format!("invalid size {}", describe(node)),
            Some(format!(
                "write a number of bytes or a number and a unit (B, KiB, MiB, GiB, kB, MB, GB), \
                 for example `{example}`"
            )),
        );
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_duration_accepts_each_unit() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("5 s"), Some(Duration::from_secs(5)));
    }

    #[test]
    fn parse_duration_rejects_missing_or_unknown_unit() {
        for text in [
            "5",
            "s",
            "",
            "1.5s",
            "5sec",
            "-1s",
            "5S",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }

    #[test]
    fn parse_size_accepts_bytes_and_units() {
        assert_eq!(parse_size("1000000"), Some(1_000_000));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("512KiB"), Some(512 << 10));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("5MB"), Some(5_000_000));
    }

    #[test]
    fn parse_size_rejects_unknown_unit() {
        for text in ["64mib", "64M", "MiB", "1.5MiB", "-1", "64 MiB extra"] {
            assert_eq!(parse_size(text), None, "{text}");
        }
    }

    #[test]
    fn format_size_picks_largest_exact_unit() {
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size(2048), "2 KiB");
        assert_eq!(format_size(1536), "1536 bytes");
        assert_eq!(format_size(1000), "1000 bytes");
    }
}
