//! `?` placeholders: what counts as one on each backend, and the PostgreSQL renumbering.

use magnetar::bindings::database::{Backend, Error, Value};
use magnetar::capability::database::placeholders::rewrite;

use crate::support::{ALL_BACKENDS, TestDb, assert_row, text};

fn postgres(sql: &str) -> (String, usize) {
    let statement = rewrite(sql, Backend::Postgres);
    (statement.sql.into_owned(), statement.placeholders)
}

fn count(sql: &str, backend: Backend) -> usize {
    rewrite(sql, backend).placeholders
}

#[test]
fn postgres_placeholders_are_numbered() {
    assert_eq!(
        postgres("INSERT INTO t (a, b) VALUES (?, ?)"),
        ("INSERT INTO t (a, b) VALUES ($1, $2)".to_owned(), 2)
    );
    assert_eq!(
        postgres("SELECT ?::int + ?"),
        ("SELECT $1::int + $2".to_owned(), 2)
    );
    assert_eq!(postgres("SELECT 1"), ("SELECT 1".to_owned(), 0));
}

#[test]
fn postgres_skips_quotes_and_comments() {
    let cases = [
        ("SELECT '?', ? FROM t", "SELECT '?', $1 FROM t"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1"),
        (
            "SELECT \"odd?name\" FROM t WHERE x = ?",
            "SELECT \"odd?name\" FROM t WHERE x = $1",
        ),
        ("SELECT E'\\'?', ?", "SELECT E'\\'?', $1"),
        ("SELECT $$ ? $$, ?", "SELECT $$ ? $$, $1"),
        (
            "SELECT $body$ it's ? $body$, ?",
            "SELECT $body$ it's ? $body$, $1",
        ),
        ("SELECT a$b, ? FROM t", "SELECT a$b, $1 FROM t"),
        ("SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2"),
        (
            "SELECT /* a /* nested ? */ still ? */ ?",
            "SELECT /* a /* nested ? */ still ? */ $1",
        ),
        (
            "SELECT 'caf\u{e9} ?', '\u{1f3ac}', ?",
            "SELECT 'caf\u{e9} ?', '\u{1f3ac}', $1",
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(postgres(sql).0, expected, "{sql}");
    }
}

#[test]
fn postgres_backslash_is_plain_in_standard_strings() {
    // With standard_conforming_strings (the default since PostgreSQL 9.1), 'a\' ends at
    // the second quote, so the `?` after it is a placeholder.
    assert_eq!(
        postgres("SELECT 'a\\', ?"),
        ("SELECT 'a\\', $1".to_owned(), 1)
    );
}

#[test]
fn mysql_skips_its_own_quotes_and_comments() {
    let cases = [
        ("SELECT 'it\\'s ?', ?", 1),
        ("SELECT \"double ? quoted\", ?", 1),
        ("SELECT `odd?column` FROM t WHERE x = ?", 1),
        ("SELECT ? # trailing ?\n", 1),
        ("SELECT ? -- trailing ?\n", 1),
        ("SELECT 1--?", 1),
        ("SELECT /*! ? */ 1", 1),
        ("SELECT /* ? */ 1", 0),
    ];
    for (sql, expected) in cases {
        assert_eq!(count(sql, Backend::Mysql), expected, "{sql}");
    }
}

#[test]
fn sqlite_skips_its_own_quotes_and_comments() {
    let cases = [
        ("SELECT [odd?column] FROM t WHERE x = ?", 1),
        ("SELECT `odd?column`, \"other?\" FROM t", 0),
        ("SELECT 'a\\', ?", 1),
        ("SELECT ? /* ? */ -- ?", 1),
    ];
    for (sql, expected) in cases {
        assert_eq!(count(sql, Backend::Sqlite), expected, "{sql}");
    }
}

#[test]
fn unterminated_quote_runs_to_the_end() {
    for backend in ALL_BACKENDS {
        assert_eq!(count("SELECT ?, 'open ?", backend), 1, "{backend:?}");
    }
}

#[tokio::test]
async fn parameter_count_mismatch_is_other() {
    let test = TestDb::new(Backend::Sqlite).await;
    let error = test
        .db
        .query("SELECT ?, ?", vec![Value::Integer(1)])
        .await
        .unwrap_err();
    let Error::Other(message) = error else {
        panic!("expected other, got {error:?}")
    };
    assert!(
        message.contains("2 `?` placeholders but 1 parameters"),
        "{message}"
    );

    let error = test
        .db
        .execute("SELECT '?'", vec![Value::Integer(1)])
        .await
        .unwrap_err();
    let Error::Other(message) = error else {
        panic!("expected other, got {error:?}")
    };
    assert!(
        message.contains("0 `?` placeholders but 1 parameters"),
        "{message}"
    );
}

#[tokio::test]
async fn quoted_question_marks_reach_the_database() {
    for backend in ALL_BACKENDS {
        let test = TestDb::new(backend).await;
        let rows = test
            .query(
                "SELECT 'why?' AS q, ? AS p /* what? */",
                vec![text("because")],
            )
            .await;
        assert_row(backend, &rows.rows[0], &[text("why?"), text("because")]);
        test.drop_database().await;
    }
}
