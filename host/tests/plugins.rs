//! The three plugins (db-writer, mailer, dlq-logger) loaded as real components in the
//! harness, against SQLite and, for the idempotency checks, against MariaDB and PostgreSQL.
//!
//! Needs the guest components built (`scripts/build-plugins`). The MariaDB and PostgreSQL
//! tests read MAGNETAR_TEST_MYSQL_URL and MAGNETAR_TEST_PG_URL (`eval "$(scripts/services
//! env)"`) and fail when those are missing.

mod support;

// Fresh server databases per test. This binary uses only part of that module.
#[allow(dead_code)]
#[path = "database_backends/support.rs"]
mod backend_support;

use backend_support::TestDb;
use magnetar::bindings::database::{Backend, Value};
use magnetar::bindings::types::Message;
use magnetar::harness::{Harness, Outcome};
use magnetar::runtime::FailureKind;
use serde_json::{Value as Json, json};
use support::{plugin, repo_root};

/// Returns the db-writer config section of the repository's pipeline.yaml, so that these
/// tests run the config that users start from.
fn db_writer_config() -> Json {
    let text = support::db_writer_config_yaml();
    let width = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let yaml: Vec<&str> = text
        .lines()
        .map(|line| line.get(width..).unwrap_or(""))
        .collect();
    serde_saphyr::from_str(&yaml.join("\n")).expect("the db-writer config in pipeline.yaml parses")
}

async fn harness(wasm: &str, config: Json, database_url: Option<&str>) -> Harness {
    let mut builder = Harness::builder(plugin(wasm))
        .config(config)
        .migrations(repo_root().join("migrations"));
    if let Some(url) = database_url {
        builder = builder.database_url(url);
    }
    builder.build().await.expect("the harness starts")
}

fn land_girls(us_gross: i64) -> Vec<u8> {
    json!({
        "Title": "The Land Girls", "US Gross": us_gross, "Worldwide Gross": 146083,
        "US DVD Sales": null, "Production Budget": 8000000, "Release Date": "Jun 12 1998",
        "MPAA Rating": "R", "Running Time min": null, "Distributor": "Gramercy",
        "Source": null, "Major Genre": null, "Creative Type": null, "Director": null,
        "Rotten Tomatoes Rating": null, "IMDB Rating": 6.1, "IMDB Votes": 1071
    })
    .to_string()
    .into_bytes()
}

fn permanent_reason(outcome: &Outcome) -> &str {
    match &outcome.result {
        Err(failure) if failure.kind == FailureKind::Permanent => &failure.reason,
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

/// Converts a database value to JSON, so that rows compare with `assert_eq!`. A blob
/// becomes `{"blob": "<bytes as UTF-8>"}`.
fn value_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Integer(integer) => json!(integer),
        Value::Real(real) => json!(real),
        Value::Text(text) => json!(text),
        Value::Blob(bytes) => json!({ "blob": String::from_utf8_lossy(bytes) }),
    }
}

async fn query_json(harness: &Harness, sql: &str) -> Vec<Vec<Json>> {
    let rows = harness
        .database()
        .query(sql, Vec::new())
        .await
        .expect("query");
    rows.rows
        .iter()
        .map(|row| row.iter().map(value_json).collect())
        .collect()
}

async fn count(harness: &Harness, sql: &str) -> i64 {
    let rows = harness
        .database()
        .query(sql, Vec::new())
        .await
        .expect("count query");
    match rows.rows[0][0] {
        Value::Integer(count) => count,
        ref other => panic!("{sql} returned {other:?}"),
    }
}

/// Stores a record, repeats it, then sends a conflicting one, on the given database.
async fn check_db_writer_idempotency(database_url: Option<&str>) {
    let harness = harness("db_writer.wasm", db_writer_config(), database_url).await;

    let first = harness.handle(Harness::message(land_girls(146083))).await;
    let published = first.result.expect("the first delivery is stored");
    assert_eq!(published.len(), 1);
    assert_eq!(
        published[0].key.as_deref(),
        Some("The Land Girls (1998-06-12)")
    );
    let event: Json = serde_json::from_slice(&published[0].payload).expect("the event is JSON");
    assert_eq!(event["id"], "The Land Girls (1998-06-12)");
    assert_eq!(event["table"], "movies");
    assert_eq!(event["record"]["release_date"], "1998-06-12");
    assert_eq!(event["record"]["imdb_rating"], 6.1);

    let repeat = harness.handle(Harness::message(land_girls(146083))).await;
    let published = repeat.result.expect("an identical repeat succeeds");
    assert_eq!(published.len(), 1, "the repeat publishes the event again");
    assert_eq!(count(&harness, "SELECT COUNT(*) FROM movies").await, 1);

    let conflict = harness.handle(Harness::message(land_girls(999))).await;
    assert_eq!(
        permanent_reason(&conflict),
        "conflict: a different record with key \"The Land Girls (1998-06-12)\" is already stored \
         in table movies (differs in: us_gross: stored 146083, received 999)"
    );
    assert_eq!(count(&harness, "SELECT COUNT(*) FROM movies").await, 1);
}

#[tokio::test]
async fn db_writer_is_idempotent_on_sqlite() {
    check_db_writer_idempotency(None).await;
}

#[tokio::test]
async fn db_writer_is_idempotent_on_mariadb() {
    let db = TestDb::new(Backend::Mysql).await;
    check_db_writer_idempotency(Some(&db.url)).await;
    db.drop_database().await;
}

#[tokio::test]
async fn db_writer_is_idempotent_on_postgres() {
    let db = TestDb::new(Backend::Postgres).await;
    check_db_writer_idempotency(Some(&db.url)).await;
    db.drop_database().await;
}

#[tokio::test]
async fn db_writer_stores_text_byte_for_byte() {
    let harness = harness("db_writer.wasm", db_writer_config(), None).await;
    let titles = [
        json!(1776),
        json!("AstÈrix aux Jeux Olympiques"),
        json!("Amélie 🎬"),
    ];

    for title in &titles {
        let payload = json!({ "Title": title, "Release Date": "2000-01-01" }).to_string();
        let outcome = harness.handle(Harness::message(payload)).await;
        assert!(outcome.result.is_ok(), "{title}: {:?}", outcome.result);
    }

    let stored = query_json(&harness, "SELECT title FROM movies ORDER BY title").await;
    assert_eq!(
        stored,
        [
            [json!("1776")],
            [json!("Amélie 🎬")],
            [json!("AstÈrix aux Jeux Olympiques")]
        ]
    );
}

#[tokio::test]
async fn db_writer_rejects_bad_records() {
    let harness = harness("db_writer.wasm", db_writer_config(), None).await;
    let cases = [
        (
            json!({ "Title": null, "Release Date": "Nov 03 2006" }).to_string(),
            "field \"Title\" is null, but column title requires a value",
        ),
        (
            json!({ "Title": "x".repeat(201), "Release Date": "Nov 03 2006" }).to_string(),
            "field \"Title\" is 201 characters long, but column title allows at most 200",
        ),
        (
            "[1, 2]".to_string(),
            "the payload is an array; expected a JSON object",
        ),
        (
            String::new(),
            "the payload is empty; expected a JSON object",
        ),
    ];

    for (payload, reason) in cases {
        let outcome = harness.handle(Harness::message(payload)).await;
        assert_eq!(permanent_reason(&outcome), reason);
    }
    assert_eq!(count(&harness, "SELECT COUNT(*) FROM movies").await, 0);
}

#[tokio::test]
async fn db_writer_reports_database_length_limit() {
    // Without max_length in the config, the database rejects the title: the length CHECK of
    // the SQLite schema here, VARCHAR(200) on MariaDB and PostgreSQL.
    let mut config = db_writer_config();
    config["columns"]["title"]
        .as_object_mut()
        .unwrap()
        .remove("max_length");
    let harness = harness("db_writer.wasm", config, None).await;
    let payload = json!({ "Title": "x".repeat(201), "Release Date": "Nov 03 2006" }).to_string();

    let outcome = harness.handle(Harness::message(payload)).await;

    let reason = permanent_reason(&outcome);
    assert!(
        reason.starts_with("a value was too long for its column while inserting the record"),
        "{reason}"
    );
    assert!(
        reason.ends_with("CHECK constraint failed: length(title) <= 200 (SQLite error 275)"),
        "{reason}"
    );
}

#[tokio::test]
async fn db_writer_stores_whole_dataset() {
    let harness = harness("db_writer.wasm", db_writer_config(), None).await;
    let movies: Vec<Json> =
        serde_json::from_slice(&std::fs::read(repo_root().join("data/movies.json")).unwrap())
            .unwrap();

    let mut failures = Vec::new();
    for movie in &movies {
        let outcome = harness.handle(Harness::message(movie.to_string())).await;
        if let Err(failure) = outcome.result {
            failures.push(failure.reason);
        }
    }

    assert_eq!(
        failures,
        ["field \"Title\" is null, but column title requires a value"]
    );
    assert_eq!(count(&harness, "SELECT COUNT(*) FROM movies").await, 3200);
}

fn mailer_config() -> Json {
    json!({
        "to": ["films@example.com"],
        "subject": "Stored: {{title}} ({{release_date}})",
        "text": "{{title}} is stored as {{id}}. Director: {{director}}.",
        "html": "<p>{{title}}</p>"
    })
}

fn stored_event(title: &str) -> Message {
    let id = format!("{title} (1998-06-12)");
    let payload = json!({
        "id": id,
        "table": "movies",
        "record": { "title": title, "release_date": "1998-06-12", "director": null }
    });
    let mut message = Harness::message(payload.to_string());
    message.key = Some(id);
    message
}

async fn check_mailer_sends_once(database_url: Option<&str>) {
    let harness = harness("mailer.wasm", mailer_config(), database_url).await;

    for _ in 0..2 {
        let outcome = harness.handle(stored_event("Tom & Jerry")).await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    }

    let emails = harness.mailer().captured();
    assert_eq!(emails.len(), 1, "a redelivered event sends nothing");
    let email = &emails[0].email;
    assert_eq!(email.subject, "Stored: Tom & Jerry (1998-06-12)");
    assert_eq!(
        email.text_body,
        "Tom & Jerry is stored as Tom & Jerry (1998-06-12). Director: ."
    );
    assert_eq!(email.html_body.as_deref(), Some("<p>Tom &amp; Jerry</p>"));
    assert!(
        emails[0].message_id.ends_with("@magnetar>"),
        "{}",
        emails[0].message_id
    );
    assert_eq!(
        count(
            &harness,
            "SELECT COUNT(*) FROM notifications WHERE state = 'sent'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn mailer_sends_once_on_sqlite() {
    check_mailer_sends_once(None).await;
}

#[tokio::test]
async fn mailer_sends_once_on_mariadb() {
    let db = TestDb::new(Backend::Mysql).await;
    check_mailer_sends_once(Some(&db.url)).await;
    db.drop_database().await;
}

#[tokio::test]
async fn mailer_sends_once_on_postgres() {
    let db = TestDb::new(Backend::Postgres).await;
    check_mailer_sends_once(Some(&db.url)).await;
    db.drop_database().await;
}

#[tokio::test]
async fn mailer_rejects_unknown_placeholder() {
    let mut config = mailer_config();
    config["subject"] = json!("Stored: {{titel}}");
    let harness = harness("mailer.wasm", config, None).await;

    let outcome = harness.handle(stored_event("Heat")).await;

    let reason = permanent_reason(&outcome);
    assert!(
        reason.starts_with(
            "the subject template uses {{titel}}, but the stored event has no such field"
        ),
        "{reason}"
    );
    assert!(harness.mailer().captured().is_empty());
}

fn dead_letter(properties: &[(&str, &str)]) -> Message {
    let mut message = Harness::message(b"{\"Title\": null}".to_vec());
    message.key = Some("k1".to_string());
    message.properties = properties
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    message
}

#[tokio::test]
async fn dlq_logger_records_each_dead_letter_once() {
    let harness = harness("dlq_logger.wasm", json!({}), None).await;
    let context = [
        ("magnetar.stage", "store-movies"),
        ("magnetar.failure.kind", "permanent"),
        (
            "magnetar.failure.reason",
            "field \"Title\" is null, but column title requires a value",
        ),
        ("magnetar.attempts", "1"),
        (
            "magnetar.source.topic",
            "persistent://public/default/movies",
        ),
        ("magnetar.source.message-id", "7:8:-1:-1"),
        ("magnetar.failed-at", "2026-12-04T20:07:33Z"),
    ];

    for _ in 0..2 {
        let outcome = harness.handle(dead_letter(&context)).await;
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    }

    assert_eq!(
        count(&harness, "SELECT COUNT(*) FROM dead_letters").await,
        1,
        "a redelivery adds no row"
    );
    let rows = query_json(&harness, "SELECT stage, failure_kind, attempts, source_message_id, message_key, payload FROM dead_letters").await;
    assert_eq!(
        rows[0],
        [
            json!("store-movies"),
            json!("permanent"),
            json!(1),
            json!("7:8:-1:-1"),
            json!("k1"),
            json!({ "blob": "{\"Title\": null}" })
        ]
    );
}

#[tokio::test]
async fn dlq_logger_records_letter_without_context() {
    let harness = harness("dlq_logger.wasm", json!({}), None).await;

    let outcome = harness.handle(dead_letter(&[("origin", "by hand")])).await;

    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    let rows = query_json(
        &harness,
        "SELECT stage, failure_kind, reason, properties FROM dead_letters",
    )
    .await;
    assert_eq!(
        rows[0],
        [
            json!("unknown"),
            json!("unknown"),
            json!("no magnetar context properties"),
            json!("{\"origin\":\"by hand\"}")
        ]
    );
}
