//! Fresh databases for each test: a SQLite file in a temporary folder, or a new database on
//! the MariaDB or PostgreSQL server that `scripts/services start` runs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use magnetar::bindings::database::{Backend, Error, Rows, Value};
use magnetar::capability::database::Database;
use tempfile::TempDir;
use url::Url;

pub const ALL_BACKENDS: [Backend; 3] = [Backend::Sqlite, Backend::Mysql, Backend::Postgres];

/// Returns the server URL in `variable`, or fails the test with the way to get one.
pub fn server_url(variable: &str) -> String {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{variable} is not set. These tests need the MariaDB and PostgreSQL test servers: \
             run `scripts/services start`, then `eval \"$(scripts/services env)\"`, then the tests"
        ),
    }
}

/// Returns a name that no other test, process or earlier run uses: `prefix`, process id, time, counter.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}_{nanos}_{count}", std::process::id())
}

/// A database created for one test. [`TestDb::drop_database`] removes a server database.
pub struct TestDb {
    pub db: Database,
    pub backend: Backend,
    pub url: String,
    server: Option<(Database, String)>,
    _folder: Option<TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let folder = tempfile::tempdir().expect("creating a temporary folder failed");
                let url = format!("sqlite://{}", folder.path().join("test.db").display());
                let db = Database::connect(&url, 4)
                    .await
                    .expect("opening the SQLite file failed");
                TestDb {
                    db,
                    backend,
                    url,
                    server: None,
                    _folder: Some(folder),
                }
            }
            Backend::Mysql | Backend::Postgres => {
                let variable = match backend {
                    Backend::Mysql => "MAGNETAR_TEST_MYSQL_URL",
                    _ => "MAGNETAR_TEST_PG_URL",
                };
                let server_url = server_url(variable);
                let admin = Database::connect(&server_url, 1)
                    .await
                    .unwrap_or_else(|error| panic!("connecting to {variable} failed: {error:#}"));
                // The magnetar user may create databases whose names start with `magnetar_`.
                let name = unique_name("magnetar_t_");
                let create = match backend {
                    Backend::Mysql => format!(
                        "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                    ),
                    _ => format!("CREATE DATABASE {name}"),
                };
                admin
                    .execute(&create, vec![])
                    .await
                    .unwrap_or_else(|error| panic!("{create} failed: {error:?}"));

                let mut url = Url::parse(&server_url).expect("the server URL parses");
                url.set_path(&name);
                let url = url.to_string();
                let db = Database::connect(&url, 4)
                    .await
                    .expect("connecting to the new database failed");
                TestDb {
                    db,
                    backend,
                    url,
                    server: Some((admin, name)),
                    _folder: None,
                }
            }
        }
    }

    /// Removes a server database, so repeated runs do not pile them up. A failed test skips
    /// this and leaves its database behind, under a name no later run reuses.
    pub async fn drop_database(self) {
        self.db.close().await;
        if let Some((admin, name)) = self.server {
            let statement = match self.backend {
                Backend::Postgres => format!("DROP DATABASE {name} WITH (FORCE)"),
                _ => format!("DROP DATABASE {name}"),
            };
            admin
                .execute(&statement, vec![])
                .await
                .unwrap_or_else(|error| panic!("{statement} failed: {error:?}"));
            admin.close().await;
        }
    }

    pub async fn execute(&self, sql: &str, params: Vec<Value>) -> u64 {
        self.db
            .execute(sql, params)
            .await
            .unwrap_or_else(|error| panic!("{sql} failed on {:?}: {error:?}", self.backend))
    }

    pub async fn query(&self, sql: &str, params: Vec<Value>) -> Rows {
        self.db
            .query(sql, params)
            .await
            .unwrap_or_else(|error| panic!("{sql} failed on {:?}: {error:?}", self.backend))
    }

    /// Runs `sql` and returns its error, failing the test when it succeeds.
    pub async fn execute_err(&self, sql: &str, params: Vec<Value>) -> Error {
        match self.db.execute(sql, params).await {
            Ok(rows) => panic!(
                "{sql} succeeded on {:?} ({rows} rows) but should fail",
                self.backend
            ),
            Err(error) => error,
        }
    }
}

pub fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

/// Returns whether two values are the same variant with the same content. Reals compare by bits,
/// so a value that changed in its last digit is caught.
pub fn same_value(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Null, Value::Null) => true,
        (Value::Integer(left), Value::Integer(right)) => left == right,
        (Value::Real(left), Value::Real(right)) => left.to_bits() == right.to_bits(),
        (Value::Text(left), Value::Text(right)) => left == right,
        (Value::Blob(left), Value::Blob(right)) => left == right,
        _ => false,
    }
}

/// Asserts that `actual` equals `expected`, value by value, naming the backend and position.
pub fn assert_row(backend: Backend, actual: &[Value], expected: &[Value]) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{backend:?}: row length of {actual:?}"
    );
    for (index, (actual, expected)) in actual.iter().zip(expected).enumerate() {
        assert!(
            same_value(actual, expected),
            "{backend:?}: column {index} is {actual:?}, expected {expected:?}"
        );
    }
}
