//! Conversion of the dates found in payloads to ISO 8601 date text.

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

/// Converts a date such as `Jun 12 1998`, `June 12, 1998` or `1998-06-12` to `1998-06-12`.
///
/// Month names are English, full or abbreviated to three letters, in any case. Years have
/// four digits. Returns `None` for any other form and for days that do not exist, such as
/// `Feb 29 1999`.
pub fn parse_date(text: &str) -> Option<String> {
    let text = text.trim();
    let (year, month, day) = parse_iso(text).or_else(|| parse_month_day_year(text))?;

    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
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
        month_word == *name || (month_word.len() == 3 && name.starts_with(&month_word))
    })?;
    let day_word = day_word.strip_suffix(',').unwrap_or(day_word);
    if day_word.is_empty() || day_word.len() > 2 {
        return None;
    }
    Some((digits(year_word)?, month as u32 + 1, digits(day_word)?))
}

/// Parses ASCII digits only: `str::parse` would also accept a leading `+`.
fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_date;

    #[test]
    fn parse_date_accepts_dataset_and_iso_forms() {
        let cases = [
            ("Jun 12 1998", "1998-06-12"),
            ("Jan 01 2025", "2025-01-01"),
            ("Dec 31 2046", "2046-12-31"),
            ("sep 7 2001", "2001-09-07"),
            ("June 12, 1998", "1998-06-12"),
            ("  Jun  12  1998 ", "1998-06-12"),
            ("1998-06-12", "1998-06-12"),
            ("Feb 29 2000", "2000-02-29"),
            ("2024-02-29", "2024-02-29"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_date(input).as_deref(),
                Some(expected),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn parse_date_rejects_invalid_dates() {
        let cases = [
            "",
            "Jun 31 1998",
            "Feb 29 1900",
            "Feb 29 1999",
            "2023-02-29",
            "1998-13-01",
            "1998-00-10",
            "1998-6-12",
            "Ju 12 1998",
            "Jun 12 98",
            "Jun 123 1998",
            "Jun +1 1998",
            "Jun 12 1998 extra",
            "12 Jun 1998",
            "Junk 12 1998",
            "06/12/1998",
        ];
        for input in cases {
            assert_eq!(parse_date(input), None, "input {input:?}");
        }
    }
}
