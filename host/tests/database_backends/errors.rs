//! Each error class produced for real on each backend.

use std::time::Duration;

use magnetar::bindings::database::{Backend, Error, Value};
use magnetar::capability::database::{Database, PoolSettings};
use sqlx::Connection;

use crate::support::{ALL_BACKENDS, TestDb, text};

/// A table with a primary key, a NOT NULL column, a length limit, a CHECK and a foreign
/// key. SQLite has no VARCHAR limit, so a CHECK on `length` replaces it.
fn constrained_tables(backend: Backend) -> [&'static str; 2] {
    let parent = "CREATE TABLE parents (id BIGINT PRIMARY KEY)";
    let child = match backend {
        Backend::Sqlite => {
            "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL \
             CONSTRAINT name_length CHECK (length(name) <= 10), quantity BIGINT CHECK (quantity >= 0), \
             parent BIGINT REFERENCES parents (id))"
        }
        _ => {
            "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(10) NOT NULL, \
             quantity BIGINT CHECK (quantity >= 0), parent BIGINT REFERENCES parents (id))"
        }
    };
    [parent, child]
}

const INSERT_ITEM: &str = "INSERT INTO items (id, name, quantity, parent) VALUES (?, ?, ?, ?)";

fn item(id: i64, name: Value, quantity: Value) -> Vec<Value> {
    vec![Value::Integer(id), name, quantity, Value::Null]
}

#[tokio::test]
async fn constraint_violations_are_classified() {
    for backend in ALL_BACKENDS {
        let test = TestDb::new(backend).await;
        for statement in constrained_tables(backend) {
            test.execute(statement, vec![]).await;
        }
        test.execute(INSERT_ITEM, item(1, text("first"), Value::Integer(1)))
            .await;

        let error = test
            .execute_err(INSERT_ITEM, item(1, text("again"), Value::Integer(1)))
            .await;
        assert!(
            matches!(&error, Error::UniqueViolation(message) if message.contains("items") || message.contains("PRIMARY")),
            "{backend:?}: {error:?}"
        );

        let error = test
            .execute_err(INSERT_ITEM, item(2, Value::Null, Value::Integer(1)))
            .await;
        assert!(
            matches!(&error, Error::NotNullViolation(message) if message.contains("name")),
            "{backend:?}: {error:?}"
        );

        let error = test
            .execute_err(INSERT_ITEM, item(3, text("negative"), Value::Integer(-1)))
            .await;
        assert!(
            matches!(error, Error::CheckViolation(_)),
            "{backend:?}: {error:?}"
        );

        let error = test
            .execute_err(
                INSERT_ITEM,
                vec![
                    Value::Integer(4),
                    text("orphan"),
                    Value::Integer(1),
                    Value::Integer(99),
                ],
            )
            .await;
        assert!(
            matches!(error, Error::CheckViolation(_)),
            "{backend:?}: foreign key: {error:?}"
        );

        let error = test
            .execute_err(INSERT_ITEM, item(5, text("eleven char"), Value::Integer(1)))
            .await;
        assert!(
            matches!(error, Error::ValueTooLong(_)),
            "{backend:?}: {error:?}"
        );

        // Ten characters of four bytes each fit: limits count characters, not bytes.
        test.execute(
            INSERT_ITEM,
            item(6, text(&"🎬".repeat(10)), Value::Integer(1)),
        )
        .await;
        test.drop_database().await;
    }
}

#[tokio::test]
async fn invalid_values_are_classified() {
    for backend in ALL_BACKENDS {
        let test = TestDb::new(backend).await;
        // SQLite checks types only in STRICT tables, which allow no SMALLINT.
        let table = match backend {
            Backend::Sqlite => "CREATE TABLE counts (id INTEGER PRIMARY KEY, n INTEGER) STRICT",
            _ => "CREATE TABLE counts (id INTEGER PRIMARY KEY, n INTEGER, small SMALLINT)",
        };
        test.execute(table, vec![]).await;

        let error = test
            .execute_err(
                "INSERT INTO counts (id, n) VALUES (1, ?)",
                vec![text("abc")],
            )
            .await;
        assert!(
            matches!(error, Error::InvalidValue(_)),
            "{backend:?}: text into an integer column: {error:?}"
        );

        if backend != Backend::Sqlite {
            let error = test
                .execute_err(
                    "INSERT INTO counts (id, small) VALUES (2, ?)",
                    vec![Value::Integer(100_000)],
                )
                .await;
            assert!(
                matches!(error, Error::InvalidValue(_)),
                "{backend:?}: out of range: {error:?}"
            );
        }
        test.drop_database().await;
    }
}

#[tokio::test]
async fn postgres_bad_text_for_cast_is_invalid_value() {
    let test = TestDb::new(Backend::Postgres).await;
    let error = test
        .db
        .query("SELECT CAST(? AS BIGINT)", vec![text("abc")])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidValue(message) if message.contains("22P02")),
        "{error:?}"
    );

    let error = test
        .db
        .query("SELECT CAST(? AS DATE)", vec![text("2024-02-30")])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidValue(_)), "{error:?}");
    test.drop_database().await;
}

#[tokio::test]
async fn syntax_error_is_other() {
    for backend in ALL_BACKENDS {
        let test = TestDb::new(backend).await;
        let error = test.execute_err("INSERT INTO WHERE nothing", vec![]).await;
        assert!(matches!(error, Error::Other(_)), "{backend:?}: {error:?}");
        let error = test
            .execute_err("SELECT * FROM no_such_table", vec![])
            .await;
        assert!(matches!(error, Error::Other(_)), "{backend:?}: {error:?}");
        test.drop_database().await;
    }
}

#[tokio::test]
async fn closed_port_is_unavailable() {
    let settings = PoolSettings {
        max_connections: 1,
        acquire_timeout: Duration::from_millis(500),
    };
    for url in [
        "mysql://magnetar:secret@127.0.0.1:1/magnetar_test",
        "postgres://magnetar:secret@127.0.0.1:1/magnetar_test",
    ] {
        let db = Database::connect_lazy(url, settings).unwrap();

        let error = db.execute("SELECT 1", vec![]).await.unwrap_err();
        assert!(
            matches!(error, Error::Unavailable(_)),
            "{url}: execute: {error:?}"
        );
        let error = db.ping().await.unwrap_err();
        assert!(
            matches!(error, Error::Unavailable(_)),
            "{url}: ping: {error:?}"
        );
    }
}

#[tokio::test]
async fn connect_error_hides_password_and_gives_hint() {
    let settings = PoolSettings {
        max_connections: 1,
        acquire_timeout: Duration::from_millis(500),
    };
    let cases = [
        (
            "mariadb://magnetar:secret@127.0.0.1:1/magnetar_test",
            "scripts/services start mariadb",
        ),
        (
            "postgresql://magnetar:secret@127.0.0.1:1/magnetar_test",
            "scripts/services start postgres",
        ),
    ];
    for (url, hint) in cases {
        let error = Database::connect_with(url, settings).await.unwrap_err();
        let message = format!("{error:#}");
        assert!(!message.contains("secret"), "{message}");
        assert!(message.contains("magnetar:***@127.0.0.1:1"), "{message}");
        assert!(message.contains(hint), "{message}");
    }

    let error = Database::connect("mysql://magnetar:wrong@127.0.0.1:3306/magnetar_test", 1)
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(!message.contains("wrong"), "{message}");
    assert!(message.contains("Access denied"), "{message}");
}

#[tokio::test]
async fn unsupported_url_is_rejected() {
    let error = Database::connect("oracle://scott:tiger@127.0.0.1/orcl", 1)
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("oracle://scott:***@127.0.0.1/orcl"),
        "{message}"
    );
    assert!(!message.contains("tiger"), "{message}");
}

/// A write lock that another connection holds past the busy timeout (5 s) makes SQLite
/// return SQLITE_BUSY, which must be retried like an outage.
#[tokio::test]
async fn sqlite_busy_is_unavailable() {
    let test = TestDb::new(Backend::Sqlite).await;
    test.execute("CREATE TABLE events (id INTEGER PRIMARY KEY)", vec![])
        .await;

    let mut holder = sqlx::SqliteConnection::connect(&test.url).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE; INSERT INTO events (id) VALUES (1)")
        .execute(&mut holder)
        .await
        .unwrap();

    let error = test
        .execute_err("INSERT INTO events (id) VALUES (2)", vec![])
        .await;
    assert!(
        matches!(&error, Error::Unavailable(message) if message.contains("locked")),
        "{error:?}"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
}

#[tokio::test]
async fn closed_database_is_unavailable() {
    let test = TestDb::new(Backend::Sqlite).await;
    test.db.close().await;
    let error = test.db.execute("SELECT 1", vec![]).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
}
