//! Backend-neutral comparison of a value db-writer would insert with the value a backend
//! returns for it.
//!
//! Backends return stored values in their own types: SQLite may return an integer from a
//! REAL column, a backend may return a number as text, and MySQL returns text from a
//! utf8mb4_bin column as a blob (sqlx 0.8 reports such a column as VARBINARY). Values
//! that mean the same compare equal here.

use crate::bindings::magnetar::stage::database::Value;

/// Relative tolerance for reals. It absorbs the rounding of a backend that returns a real
/// as decimal text, and is far below the precision of the dataset's ratings.
const REAL_TOLERANCE: f64 = 1e-9;

/// Returns whether `stored` is the same value as `new`.
pub fn same_value(new: &Value, stored: &Value) -> bool {
    match (new, stored) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,

        (Value::Integer(a), Value::Integer(b)) => a == b,
        (Value::Text(a), Value::Text(b)) => a == b,
        (Value::Blob(a), Value::Blob(b)) => a == b,
        (Value::Text(text), Value::Blob(bytes)) | (Value::Blob(bytes), Value::Text(text)) => {
            text.as_bytes() == bytes.as_slice()
        }

        (new, stored) => match (as_number(new), as_number(stored)) {
            (Some(a), Some(b)) => same_real(a, b),
            _ => false,
        },
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(number) => Some(*number as f64),
        Value::Real(number) => Some(*number),
        Value::Text(text) => text.trim().parse().ok(),
        Value::Null | Value::Blob(_) => None,
    }
}

fn same_real(a: f64, b: f64) -> bool {
    let scale = a.abs().max(b.abs()).max(1.0);
    (a - b).abs() <= REAL_TOLERANCE * scale
}

#[cfg(test)]
mod tests {
    use super::same_value;
    use crate::bindings::magnetar::stage::database::Value;

    fn text(value: &str) -> Value {
        Value::Text(value.to_string())
    }

    #[test]
    fn same_value_matches_equal_values_across_types() {
        let cases = [
            (Value::Null, Value::Null),
            (Value::Integer(146083), Value::Integer(146083)),
            (Value::Real(6.1), Value::Real(6.1)),
            (Value::Real(7.0), Value::Integer(7)),
            (Value::Integer(7), Value::Real(7.0)),
            (Value::Real(6.1), text("6.1")),
            (Value::Integer(146083), text("146083")),
            (Value::Real(0.1 + 0.2), Value::Real(0.3)),
            (
                text("AstÈrix aux Jeux Olympiques"),
                text("AstÈrix aux Jeux Olympiques"),
            ),
            (text("1998-06-12"), Value::Blob(b"1998-06-12".to_vec())),
        ];
        for (new, stored) in cases {
            assert!(same_value(&new, &stored), "{new:?} vs {stored:?}");
        }
    }

    #[test]
    fn same_value_separates_different_values() {
        let cases = [
            (Value::Null, Value::Integer(0)),
            (text(""), Value::Null),
            (Value::Integer(146083), Value::Integer(146084)),
            (Value::Real(6.1), Value::Real(6.2)),
            (Value::Real(7.5), Value::Integer(7)),
            (text("Heat"), text("HEAT")),
            (text("Heat"), text("Heat ")),
            (text("Astérix"), text("AstÈrix")),
            (text("abc"), Value::Integer(0)),
        ];
        for (new, stored) in cases {
            assert!(!same_value(&new, &stored), "{new:?} vs {stored:?}");
        }
    }
}
