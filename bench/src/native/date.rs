//! Release dates: `Jun 12 1998`, `June 12, 1998` or `1998-06-12`, to ISO 8601 date text.

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Converts a date to `YYYY-MM-DD`, accepting the forms db-writer accepts: English month
/// names, full or of three letters in any case, before the day and a four-digit year, or
/// ISO 8601. Returns `None` for other forms and for days that do not exist.
pub fn parse_date(text: &str) -> Option<String> {
    let text = text.trim();
    let (year, month, day) = parse_iso(text).or_else(|| parse_month_day_year(text))?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

fn parse_iso(text: &str) -> Option<(u32, u32, u32)> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    Some((
        digits(&text[0..4])?,
        digits(&text[5..7])?,
        digits(&text[8..10])?,
    ))
}

fn parse_month_day_year(text: &str) -> Option<(u32, u32, u32)> {
    let mut words = text.split_whitespace();
    let month_word = words.next()?.to_ascii_lowercase();
    let day_word = words.next()?;
    let year_word = words.next()?;
    if words.next().is_some() || year_word.len() != 4 {
        return None;
    }

    let month = MONTHS.iter().position(|name| {
        month_word == *name || (month_word.len() == 3 && name.starts_with(month_word.as_str()))
    })?;
    let day_word = day_word.strip_suffix(',').unwrap_or(day_word);
    if day_word.is_empty() || day_word.len() > 2 {
        return None;
    }
    Some((digits(year_word)?, month as u32 + 1, digits(day_word)?))
}

/// Parses ASCII digits only, because `str::parse` also accepts a leading `+`.
fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}
