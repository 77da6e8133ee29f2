//! Text forms of the binary values that have no WIT counterpart: dates and times, exact
//! decimals and UUIDs.
//!
//! Dates are ISO 8601 (`2024-05-17`). Timestamps are `2024-05-17T08:30:00`, with a fraction
//! of 3 or 6 digits when it is not zero, and with `Z` when the database stores the instant
//! in UTC (PostgreSQL TIMESTAMPTZ, MySQL TIMESTAMP), so that those are RFC 3339. Timestamps
//! without a time zone (PostgreSQL TIMESTAMP, MySQL DATETIME) get no offset, because
//! the database does not know it either.

use std::fmt::Write;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};

/// PostgreSQL counts dates and timestamps from 2000-01-01 in its binary format.
fn postgres_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .expect("2000-01-01 is a valid date")
}

/// Formats a PostgreSQL DATE, days since 2000-01-01.
pub(super) fn postgres_date(days: i32) -> Result<String, String> {
    match days {
        i32::MAX => return Ok("infinity".to_owned()),
        i32::MIN => return Ok("-infinity".to_owned()),
        _ => {}
    }
    postgres_epoch()
        .date()
        .checked_add_signed(TimeDelta::days(days.into()))
        .map(|date| date.format("%Y-%m-%d").to_string())
        .ok_or_else(|| format!("date {days} days after 2000-01-01 is out of range"))
}

/// Formats a PostgreSQL TIMESTAMP or TIMESTAMPTZ, microseconds since 2000-01-01 00:00:00.
/// TIMESTAMPTZ values are in UTC on the wire, so `utc` adds the `Z`.
pub(super) fn postgres_timestamp(micros: i64, utc: bool) -> Result<String, String> {
    match micros {
        i64::MAX => return Ok("infinity".to_owned()),
        i64::MIN => return Ok("-infinity".to_owned()),
        _ => {}
    }
    let timestamp = postgres_epoch()
        .checked_add_signed(TimeDelta::microseconds(micros))
        .ok_or_else(|| format!("timestamp {micros} µs after 2000-01-01 is out of range"))?;
    let fraction = fraction(timestamp.and_utc().timestamp_subsec_micros());
    let zone = if utc { "Z" } else { "" };
    Ok(format!(
        "{}{fraction}{zone}",
        timestamp.format("%Y-%m-%dT%H:%M:%S")
    ))
}

/// Formats a PostgreSQL TIME, microseconds since midnight.
pub(super) fn postgres_time(micros: i64) -> String {
    duration(false, micros.unsigned_abs())
}

/// Formats a PostgreSQL NUMERIC from its binary form: digit count, weight, sign and display
/// scale (each 16 bits), then base-10000 digits, the first of which is multiplied by
/// 10000^weight.
pub(super) fn postgres_numeric(bytes: &[u8]) -> Result<String, String> {
    let word = |index: usize| -> Result<u16, String> {
        bytes
            .get(2 * index..2 * index + 2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .ok_or_else(|| format!("NUMERIC value of {} bytes is truncated", bytes.len()))
    };
    let digit_count = usize::from(word(0)?);
    let weight = i32::from(word(1)? as i16);
    let sign = word(2)?;
    let scale = usize::from(word(3)?);
    let digits = (0..digit_count)
        .map(|index| word(4 + index))
        .collect::<Result<Vec<u16>, _>>()?;
    let digit = |position: i32| -> u16 {
        usize::try_from(position)
            .ok()
            .and_then(|index| digits.get(index))
            .copied()
            .unwrap_or(0)
    };

    let mut text = match sign {
        0x0000 => String::new(),
        0x4000 => "-".to_owned(),
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        other => {
            return Err(format!(
                "NUMERIC value has an unknown sign word {other:#06x}"
            ));
        }
    };
    if weight < 0 {
        text.push('0');
    } else {
        write!(text, "{}", digit(0)).expect("writing to a String cannot fail");
        for position in 1..=weight {
            write!(text, "{:04}", digit(position)).expect("writing to a String cannot fail");
        }
    }
    if scale > 0 {
        let mut fraction = String::with_capacity(scale + 4);
        let mut position = weight + 1;
        while fraction.len() < scale {
            write!(fraction, "{:04}", digit(position)).expect("writing to a String cannot fail");
            position += 1;
        }
        fraction.truncate(scale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

/// Formats a 16-byte UUID in its hyphenated lowercase form.
pub(super) fn uuid(bytes: &[u8]) -> Result<String, String> {
    if bytes.len() != 16 {
        return Err(format!(
            "UUID value has {} bytes instead of 16",
            bytes.len()
        ));
    }
    let mut text = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        write!(text, "{byte:02x}").expect("writing to a String cannot fail");
    }
    Ok(text)
}

/// Formats a MySQL DATE, DATETIME or TIMESTAMP from the binary protocol: a length byte
/// (0, 4, 7 or 11), then year (16 bits, little-endian), month, day, hour, minute, second and
/// microseconds (32 bits). A length of 0 is the zero date, `0000-00-00`. `with_time` is
/// false for DATE, and `utc` adds the `Z` for TIMESTAMP.
pub(super) fn mysql_datetime(bytes: &[u8], with_time: bool, utc: bool) -> Result<String, String> {
    let length = usize::from(*bytes.first().ok_or("date value is empty")?);
    let fields = bytes.get(1..1 + length).ok_or("date value is truncated")?;
    let byte = |index: usize| fields.get(index).copied().unwrap_or(0);
    let year = u16::from_le_bytes([byte(0), byte(1)]);
    let micros = u32::from_le_bytes([byte(7), byte(8), byte(9), byte(10)]);

    let mut text = format!("{year:04}-{:02}-{:02}", byte(2), byte(3));
    if with_time {
        write!(
            text,
            "T{:02}:{:02}:{:02}{}",
            byte(4),
            byte(5),
            byte(6),
            fraction(micros)
        )
        .expect("writing to a String cannot fail");
        if utc {
            text.push('Z');
        }
    }
    Ok(text)
}

/// Formats a MySQL TIME from the binary protocol: a length byte (0, 8 or 12), a sign byte,
/// days (32 bits, little-endian), hour, minute, second and microseconds (32 bits). A TIME
/// is a duration from -838:59:59 to 838:59:59, so the hours are not limited to 23.
pub(super) fn mysql_time(bytes: &[u8]) -> Result<String, String> {
    let length = usize::from(*bytes.first().ok_or("time value is empty")?);
    let fields = bytes.get(1..1 + length).ok_or("time value is truncated")?;
    let byte = |index: usize| fields.get(index).copied().unwrap_or(0);
    let negative = byte(0) == 1;
    let days = u64::from(u32::from_le_bytes([byte(1), byte(2), byte(3), byte(4)]));
    let seconds =
        ((days * 24 + u64::from(byte(5))) * 60 + u64::from(byte(6))) * 60 + u64::from(byte(7));
    let micros = u64::from(u32::from_le_bytes([byte(8), byte(9), byte(10), byte(11)]));
    Ok(duration(negative, seconds * 1_000_000 + micros))
}

/// Formats a duration as `[-]HH:MM:SS` with an optional fraction.
fn duration(negative: bool, micros: u64) -> String {
    let seconds = micros / 1_000_000;
    let sign = if negative { "-" } else { "" };
    let fraction = fraction((micros % 1_000_000) as u32);
    format!(
        "{sign}{:02}:{:02}:{:02}{fraction}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Formats microseconds as a fraction of a second: none when zero, 3 digits for whole
/// milliseconds, 6 digits otherwise.
fn fraction(micros: u32) -> String {
    if micros == 0 {
        String::new()
    } else if micros.is_multiple_of(1000) {
        format!(".{:03}", micros / 1000)
    } else {
        format!(".{micros:06}")
    }
}

/// Widens a 4-byte float through its shortest decimal form, so that a REAL or FLOAT column
/// holding 0.1 reads back as 0.1 and not as 0.10000000149011612.
pub(super) fn widen_f32(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}
