use std::cell::RefCell;
use std::collections::BTreeMap;

use super::*;
use crate::record::build_row;
use crate::testing::{column_index, movies_config};

/// A table keyed by the first parameter of each INSERT, with optional injected errors.
#[derive(Default)]
struct FakeDatabase {
    rows: RefCell<BTreeMap<String, Vec<Value>>>,
    insert_error: Option<DbError>,
    query_error: Option<DbError>,
    statements: RefCell<Vec<String>>,
}

impl Database for FakeDatabase {
    fn execute(&self, statement: &str, params: &[Value]) -> Result<u64, DbError> {
        self.statements.borrow_mut().push(statement.to_string());
        if let Some(error) = &self.insert_error {
            return Err(error.clone());
        }
        let Value::Text(key) = &params[0] else {
            panic!("key is not text")
        };
        let mut rows = self.rows.borrow_mut();
        if rows.contains_key(key) {
            return Err(DbError::UniqueViolation(
                "UNIQUE constraint failed: movies.id".into(),
            ));
        }
        rows.insert(key.clone(), params[1..].to_vec());
        Ok(1)
    }

    fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, DbError> {
        self.statements.borrow_mut().push(statement.to_string());
        if let Some(error) = &self.query_error {
            return Err(error.clone());
        }
        let Value::Text(key) = &params[0] else {
            panic!("key is not text")
        };
        let rows = self.rows.borrow().get(key).cloned().into_iter().collect();
        Ok(Rows {
            columns: Vec::new(),
            rows,
        })
    }
}

fn row(title: &str, us_gross: i64) -> Row {
    let payload = serde_json::json!({
        "Title": title, "US Gross": us_gross, "Release Date": "Jun 12 1998", "IMDB Rating": 6.1
    });
    build_row(&movies_config(), payload.as_object().unwrap()).unwrap()
}

#[test]
fn store_inserts_new_row() {
    let db = FakeDatabase::default();

    let outcome = store(&db, &movies_config(), &row("The Land Girls", 146083));

    assert_eq!(outcome, Ok(Outcome::Inserted));
    assert_eq!(db.rows.borrow().len(), 1);
    let statement = &db.statements.borrow()[0];
    assert!(
        statement.starts_with("INSERT INTO movies (id, creative_type, director, "),
        "{statement}"
    );
    assert!(statement.ends_with("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
}

#[test]
fn store_accepts_identical_repeat() {
    let db = FakeDatabase::default();
    let config = movies_config();
    store(&db, &config, &row("The Land Girls", 146083)).unwrap();

    let outcome = store(&db, &config, &row("The Land Girls", 146083));

    assert_eq!(outcome, Ok(Outcome::AlreadyStored));
    let statements = db.statements.borrow();
    assert!(
        statements[2].starts_with("SELECT creative_type, director, "),
        "{}",
        statements[2]
    );
    assert!(statements[2].ends_with(" FROM movies WHERE id = ?"));
}

#[test]
fn store_accepts_repeat_when_backend_returns_other_types() {
    let db = FakeDatabase::default();
    let config = movies_config();
    let stored = row("The Land Girls", 146083);
    let mut values = stored.values.clone();
    // As a backend could return them: a real as text, an integer as a real.
    values[column_index(&config, "imdb_rating")] = Value::Text("6.1".into());
    values[column_index(&config, "us_gross")] = Value::Real(146083.0);
    db.rows.borrow_mut().insert(stored.key.clone(), values);

    assert_eq!(store(&db, &config, &stored), Ok(Outcome::AlreadyStored));
}

#[test]
fn store_reports_conflict_with_differing_columns() {
    let db = FakeDatabase::default();
    let config = movies_config();
    store(&db, &config, &row("The Land Girls", 146083)).unwrap();

    let outcome = store(&db, &config, &row("The Land Girls", 999));

    assert_eq!(
        outcome,
        Err(Failure::Permanent(
            "conflict: a different record with key \"The Land Girls (1998-06-12)\" is already \
             stored in table movies (differs in: us_gross: stored 146083, received 999)"
                .into()
        ))
    );
}

#[test]
fn store_reports_unique_violation_on_other_constraint() {
    let db = FakeDatabase {
        insert_error: Some(DbError::UniqueViolation(
            "duplicate key value: imdb_votes".into(),
        )),
        ..FakeDatabase::default()
    };

    let outcome = store(&db, &movies_config(), &row("The Land Girls", 146083));

    let Err(Failure::Permanent(reason)) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        reason.contains("although no record with that key is stored"),
        "{reason}"
    );
    assert!(
        reason.ends_with(": duplicate key value: imdb_votes"),
        "{reason}"
    );
}

#[test]
fn store_classifies_database_errors() {
    let cases = [
        (
            DbError::Unavailable("connection refused".into()),
            true,
            "the database is unavailable",
        ),
        (
            DbError::NotNullViolation("title".into()),
            false,
            "a NOT NULL constraint failed",
        ),
        (
            DbError::CheckViolation("length(title)".into()),
            false,
            "a check constraint failed",
        ),
        (
            DbError::ValueTooLong("title".into()),
            false,
            "a value was too long for its column",
        ),
        (
            DbError::InvalidValue("date".into()),
            false,
            "a value had the wrong type or format",
        ),
        (
            DbError::Other("syntax error".into()),
            false,
            "the database returned an error",
        ),
    ];
    for (error, transient, start) in cases {
        let db = FakeDatabase {
            insert_error: Some(error.clone()),
            ..FakeDatabase::default()
        };

        let outcome = store(&db, &movies_config(), &row("The Land Girls", 146083));

        let reason = match (&outcome, transient) {
            (Err(Failure::Transient(reason)), true) | (Err(Failure::Permanent(reason)), false) => {
                reason
            }
            _ => panic!("{error:?} gave {outcome:?}"),
        };
        assert!(reason.starts_with(start), "{reason}");
        assert!(
            reason.contains("while inserting the record with key \"The Land Girls (1998-06-12)\""),
            "{reason}"
        );
    }
}

#[test]
fn store_retries_when_duplicate_check_is_unavailable() {
    let db = FakeDatabase {
        query_error: Some(DbError::Unavailable("server has gone away".into())),
        ..FakeDatabase::default()
    };
    let config = movies_config();
    db.rows
        .borrow_mut()
        .insert("The Land Girls (1998-06-12)".into(), Vec::new());

    let outcome = store(&db, &config, &row("The Land Girls", 146083));

    let Err(Failure::Transient(reason)) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(reason.contains("while reading back the record"), "{reason}");
}

#[test]
fn store_compares_text_returned_as_blob() {
    let db = FakeDatabase::default();
    let config = movies_config();
    let stored = row("The Land Girls", 146083);
    let title = column_index(&config, "title");
    // As MySQL returns a utf8mb4_bin column: text as bytes.
    let mut values = stored.values.clone();
    values[title] = Value::Blob(b"The Land Girls".to_vec());
    db.rows
        .borrow_mut()
        .insert(stored.key.clone(), values.clone());
    assert_eq!(store(&db, &config, &stored), Ok(Outcome::AlreadyStored));

    values[column_index(&config, "us_gross")] = Value::Integer(1);
    db.rows.borrow_mut().insert(stored.key.clone(), values);
    let Err(Failure::Permanent(reason)) = store(&db, &config, &stored) else {
        panic!()
    };
    assert!(
        reason.ends_with("(differs in: us_gross: stored 1, received 146083)"),
        "{reason}"
    );
}
