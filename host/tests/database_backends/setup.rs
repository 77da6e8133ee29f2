//! Connection settings, migrations, ping and the recorded calls of the `database` context.

use std::path::{Path, PathBuf};

use magnetar::bindings::database::{Backend, Error, Host, Value};
use magnetar::capability::database::{Database, DatabaseCtx, MYSQL_SQL_MODE};
use magnetar::capability::{CallLog, CapabilityCall};

use crate::support::{ALL_BACKENDS, TestDb, assert_row, text};

#[tokio::test]
async fn sqlite_connect_creates_wal_file() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("created.db");
    let db = Database::connect(&format!("sqlite://{}", path.display()), 2)
        .await
        .unwrap();
    assert!(path.is_file(), "{} was not created", path.display());

    let rows = db.query("PRAGMA journal_mode", vec![]).await.unwrap();
    assert_row(Backend::Sqlite, &rows.rows[0], &[text("wal")]);
    let rows = db.query("PRAGMA foreign_keys", vec![]).await.unwrap();
    assert_row(Backend::Sqlite, &rows.rows[0], &[Value::Integer(1)]);
    let rows = db.query("PRAGMA busy_timeout", vec![]).await.unwrap();
    let busy_ms = magnetar::capability::database::SQLITE_BUSY_TIMEOUT.as_millis() as i64;
    assert_row(Backend::Sqlite, &rows.rows[0], &[Value::Integer(busy_ms)]);
}

#[tokio::test]
async fn sqlite_memory_database_keeps_its_tables() {
    let db = Database::connect("sqlite::memory:", 8).await.unwrap();
    db.execute("CREATE TABLE kept (x INTEGER)", vec![])
        .await
        .unwrap();
    db.execute("INSERT INTO kept VALUES (?)", vec![Value::Integer(1)])
        .await
        .unwrap();
    let rows = db.query("SELECT x FROM kept", vec![]).await.unwrap();
    assert_row(Backend::Sqlite, &rows.rows[0], &[Value::Integer(1)]);
}

#[tokio::test]
async fn mysql_session_is_strict_utf8mb4_and_utc() {
    let test = TestDb::new(Backend::Mysql).await;
    let rows = test
        .query("SELECT @@SESSION.sql_mode, @@character_set_connection, @@collation_connection, @@time_zone", vec![])
        .await;
    let Value::Text(mode) = &rows.rows[0][0] else {
        panic!("sql_mode is {:?}", rows.rows[0][0])
    };
    for flag in MYSQL_SQL_MODE.split(',') {
        assert!(
            mode.split(',').any(|set| set == flag),
            "{flag} missing from {mode}"
        );
    }
    assert_row(
        Backend::Mysql,
        &rows.rows[0][1..],
        &[text("utf8mb4"), text("utf8mb4_bin"), text("+00:00")],
    );
    test.drop_database().await;
}

#[tokio::test]
async fn ping_answers_on_every_backend() {
    for backend in ALL_BACKENDS {
        let test = TestDb::new(backend).await;
        assert!(test.db.ping().await.is_ok(), "{backend:?}");
        assert_eq!(test.db.backend(), backend);
        test.drop_database().await;
    }
}

fn project_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations")
}

fn migration_count(folder: &Path) -> i64 {
    std::fs::read_dir(folder)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|ext| ext == "sql")
        })
        .count() as i64
}

/// Applies the project's `migrations/` folder to a fresh database on each backend, twice,
/// and checks a row that its CHECK constraints accept and one they reject.
#[tokio::test]
async fn project_migrations_apply_on_every_backend() {
    let migrations = project_migrations();
    assert!(migrations.is_dir(), "{} is missing", migrations.display());

    for backend in ALL_BACKENDS {
        let test = TestDb::new(backend).await;
        test.db
            .migrate(&migrations)
            .await
            .unwrap_or_else(|error| panic!("{backend:?}: {error:#}"));
        test.db
            .migrate(&migrations)
            .await
            .unwrap_or_else(|error| panic!("{backend:?}, again: {error:#}"));

        let folder = migrations.join(match backend {
            Backend::Sqlite => "sqlite",
            Backend::Mysql => "mysql",
            Backend::Postgres => "postgres",
        });
        let rows = test
            .query(
                "SELECT COUNT(*) FROM _sqlx_migrations WHERE success",
                vec![],
            )
            .await;
        assert_row(
            backend,
            &rows.rows[0],
            &[Value::Integer(migration_count(&folder))],
        );

        let insert =
            "INSERT INTO movies (id, title, release_date, imdb_rating) VALUES (?, ?, ?, ?)";
        let movie = |date: &str| {
            vec![
                text(&format!("Heat ({date})")),
                text("Heat"),
                text(date),
                Value::Real(8.2),
            ]
        };
        test.execute(insert, movie("1995-12-15")).await;
        let error = test.execute_err(insert, movie("15/12/1995")).await;
        assert!(
            matches!(error, Error::CheckViolation(_)),
            "{backend:?}: {error:?}"
        );
        test.drop_database().await;
    }
}

#[tokio::test]
async fn migrate_uses_the_backend_subfolder() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir(folder.path().join("sqlite")).unwrap();
    std::fs::write(
        folder.path().join("sqlite/0001_first.sql"),
        "CREATE TABLE first (x INTEGER);",
    )
    .unwrap();

    let test = TestDb::new(Backend::Sqlite).await;
    test.db.migrate(folder.path()).await.unwrap();
    test.execute("INSERT INTO first VALUES (1)", vec![]).await;

    let empty = tempfile::tempdir().unwrap();
    let error = test.db.migrate(empty.path()).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("sqlite") && message.contains("not found"),
        "{message}"
    );
}

#[tokio::test]
async fn context_records_calls() {
    let test = TestDb::new(Backend::Sqlite).await;
    let calls = CallLog::default();
    let mut ctx = DatabaseCtx {
        db: test.db.clone(),
        calls: Some(calls.clone()),
    };

    assert_eq!(Host::backend_kind(&mut ctx).await, Backend::Sqlite);
    Host::execute(
        &mut ctx,
        "CREATE TABLE t (a TEXT, b BLOB)".to_owned(),
        vec![],
    )
    .await
    .unwrap();
    let params = vec![text("x"), Value::Blob(vec![0; 1000])];
    Host::execute(&mut ctx, "INSERT INTO t VALUES (?, ?)".to_owned(), params)
        .await
        .unwrap();
    Host::query(&mut ctx, "SELECT a FROM t".to_owned(), vec![])
        .await
        .unwrap();
    Host::execute(
        &mut ctx,
        "INSERT INTO missing VALUES (1)".to_owned(),
        vec![],
    )
    .await
    .unwrap_err();

    let recorded: Vec<_> = calls
        .take()
        .into_iter()
        .map(|call| match call {
            CapabilityCall::Database {
                statement,
                params,
                result,
            } => (statement, params, result),
            other => panic!("unexpected call {other:?}"),
        })
        .collect();
    assert_eq!(recorded.len(), 4);
    assert_eq!(
        recorded[1].1,
        vec![
            serde_json::json!("x"),
            serde_json::json!({ "blob_len": 1000 })
        ]
    );
    assert_eq!(recorded[1].2, Ok(serde_json::json!({ "rows_affected": 1 })));
    assert_eq!(
        recorded[2].2,
        Ok(serde_json::json!({ "columns": ["a"], "rows": [["x"]] }))
    );
    let Err(message) = &recorded[3].2 else {
        panic!("{:?}", recorded[3])
    };
    assert!(
        message.starts_with("other: no such table: missing"),
        "{message}"
    );
}
