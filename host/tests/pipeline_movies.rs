//! The movie pipeline under `magnetar run`, against the real broker: stored records are
//! notified once, failures are dead-lettered with their context, retries and limits behave,
//! and a SIGTERM mid-stream loses and duplicates nothing.

mod support;

use std::time::Duration;

use support::*;

struct Setup {
    dir: tempfile::TempDir,
    pipeline: std::path::PathBuf,
    movies_topic: String,
    flaky_topic: String,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let suffix = unique_suffix();
        let movies_topic = format!("movies-{suffix}");
        let flaky_topic = format!("flaky-{suffix}");
        let yaml = format!(
            r#"
broker:
  url: {broker}
database:
  url: sqlite://catalogue.db
  migrations: {migrations}
mail:
  transport: file://outbox
  from: "Catalogue <catalogue@example.com>"
stages:
  - name: store-movies
    plugin: {db_writer}
    inputs: [{movies_topic}]
    subscription: db-writer
    outputs: {{ default: stored-{suffix} }}
    grants: [database, publish]
    dead_letter: dlq-{suffix}
    retry_topic: store-retry-{suffix}
    parallelism: 4
    retry: {{ max_attempts: 3, initial_backoff: 200ms, max_backoff: 1s }}
    config:
{db_writer_config}
  - name: notify
    plugin: {mailer}
    inputs: [stored-{suffix}]
    subscription: mailer
    subscription_type: key_shared
    grants: [mail, database]
    dead_letter: dlq-{suffix}
    retry_topic: notify-retry-{suffix}
    parallelism: 2
    config:
      to: [team@example.com]
      subject: "New: {{{{title}}}}"
      text: "{{{{title}}}} ({{{{release_date}}}}) was stored."
  - name: flaky
    plugin: {hostile}
    inputs: [{flaky_topic}]
    subscription: flaky
    grants: [publish]
    outputs: {{ default: flaky-out-{suffix} }}
    dead_letter: dlq-{suffix}
    retry_topic: flaky-retry-{suffix}
    retry: {{ max_attempts: 3, initial_backoff: 200ms, max_backoff: 1s }}
    limits: {{ timeout: 500ms, memory: 16MiB, max_message_size: 1KiB }}
  - name: log-dead-letters
    plugin: {dlq_logger}
    inputs: [dlq-{suffix}]
    subscription: dlq-logger
    grants: [database]
    dead_letter: dlq-failed-{suffix}
    retry_topic: dlq-retry-{suffix}
"#,
            broker = broker_url(),
            migrations = repo_root().join("migrations").display(),
            db_writer = plugin("db_writer.wasm").display(),
            mailer = plugin("mailer.wasm").display(),
            hostile = plugin("hostile.wasm").display(),
            dlq_logger = plugin("dlq_logger.wasm").display(),
            db_writer_config = indent(&db_writer_config_yaml(), 2),
        );
        let pipeline = dir.path().join("pipeline.yaml");
        std::fs::write(&pipeline, yaml).expect("write pipeline.yaml");
        Setup { dir, pipeline, movies_topic, flaky_topic }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    async fn database(&self) -> sqlx::SqlitePool {
        // The host creates the file when it starts; give it time to.
        let file = self.path("catalogue.db");
        for _ in 0..600 {
            if file.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = format!("sqlite://{}", file.display());
        sqlx::SqlitePool::connect(&url).await.expect("open the pipeline's SQLite file")
    }
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|line| if line.is_empty() { String::new() } else { format!("{pad}{line}") }).collect::<Vec<_>>().join("\n")
}

fn movie(title: serde_json::Value, date: &str, gross: i64) -> String {
    serde_json::json!({ "Title": title, "Release Date": date, "US Gross": gross, "Director": "Ada Lovelace" }).to_string()
}

async fn dead_letter_kinds(pool: &sqlx::SqlitePool) -> Vec<(String, String, String, i64)> {
    sqlx::query_as::<_, (String, String, String, i64)>(
        "SELECT stage, failure_kind, CAST(payload AS TEXT), attempts FROM dead_letters ORDER BY stage, failure_kind",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn movie_pipeline_stores_notifies_and_dead_letters() {
    let setup = Setup::new();
    let pulsar = connect().await;
    let log = setup.path("host.log");
    let _host = Host::start(&setup.pipeline, &log);

    let movies = vec![
        movie("Heat".into(), "Dec 15 1995", 67_436_818),
        movie("Amélie 🎬".into(), "Apr 25 2001", 33_225_499),
        movie(serde_json::json!(1776), "Mar 16 1972", 1_000),
        movie(serde_json::Value::Null, "Jun 12 1998", 5),
        // Same key as Heat with the same content: stored once, notified once.
        movie("Heat".into(), "Dec 15 1995", 67_436_818),
        // Same key as Heat with different content: a permanent conflict.
        movie("Heat".into(), "Dec 15 1995", 1),
        "{not json".to_string(),
    ];
    let with_no_properties: Vec<(String, Vec<(String, String)>)> = movies.into_iter().map(|m| (m, Vec::new())).collect();
    produce(&pulsar, &setup.movies_topic, &with_no_properties).await;

    let flaky = ["transient-until-2", "transient", "panic", "loop", "ok", &"x".repeat(2000)];
    let flaky: Vec<(String, Vec<(String, String)>)> =
        flaky.iter().map(|p| (p.to_string(), vec![("origin".to_string(), "test".to_string())])).collect();
    produce(&pulsar, &setup.flaky_topic, &flaky).await;

    let pool = setup.database().await;
    let outbox = setup.path("outbox");
    // 3 bad movies + transient (retries spent) + panic + loop + too large.
    wait_until(Duration::from_secs(90), &log, "3 stored movies, 3 emails and 7 dead letters", || async {
        count(&pool, "SELECT COUNT(*) FROM movies").await == 3
            && outbox_message_ids(&outbox).len() == 3
            && count(&pool, "SELECT COUNT(*) FROM dead_letters").await == 7
    })
    .await;
    // Give redeliveries a moment to show up if something were duplicated.
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(count(&pool, "SELECT COUNT(*) FROM movies").await, 3);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM movies WHERE title = '1776'").await, 1, "numeric title stored as text");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM movies WHERE title = 'Amélie 🎬'").await, 1, "text stored byte for byte");
    let ids = outbox_message_ids(&outbox);
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(ids.len(), 3, "one email per stored movie");
    assert_eq!(distinct.len(), 3, "no email sent twice");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM notifications WHERE state = 'sent'").await, 3);

    let dead = dead_letter_kinds(&pool).await;
    let kinds: Vec<(&str, &str)> = dead.iter().map(|(stage, kind, _, _)| (stage.as_str(), kind.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            ("flaky", "retries-exhausted"),
            ("flaky", "timeout"),
            ("flaky", "too-large"),
            ("flaky", "trap"),
            ("store-movies", "permanent"),
            ("store-movies", "permanent"),
            ("store-movies", "permanent"),
        ]
    );
    for (stage, kind, payload, attempts) in &dead {
        match kind.as_str() {
            "retries-exhausted" | "timeout" | "trap" => assert_eq!(*attempts, 3, "{stage} {kind} spends all attempts"),
            _ => assert_eq!(*attempts, 1, "{stage} {kind} {payload} is not retried"),
        }
    }

    let reasons: Vec<String> = sqlx::query_scalar("SELECT reason FROM dead_letters WHERE stage = 'store-movies' ORDER BY reason")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(reasons.iter().any(|r| r.contains("Title")), "null title reason names the field: {reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("conflict") || r.contains("differ")), "conflict reason: {reasons:?}");
    assert!(reasons.iter().any(|r| r.to_lowercase().contains("json")), "invalid JSON reason: {reasons:?}");

    let context: Vec<(String, String)> =
        sqlx::query_as("SELECT source_topic, properties FROM dead_letters WHERE stage = 'flaky'").fetch_all(&pool).await.unwrap();
    for (source_topic, properties) in &context {
        assert!(source_topic.ends_with(&setup.flaky_topic), "dead letter names its source topic: {source_topic}");
        assert!(properties.contains("\"origin\""), "original properties kept: {properties}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_stream_loses_and_duplicates_nothing() {
    // More records than the client's receiver queue (1,000) holds, so the queue is full when
    // the host stops pulling, as on a real backlog.
    const RECORDS: usize = 2000;
    let setup = Setup::new();
    let pulsar = connect().await;
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("data/movies.json")).unwrap()).unwrap();
    let records: Vec<(String, Vec<(String, String)>)> =
        records.iter().take(RECORDS).map(|r| (r.to_string(), Vec::new())).collect();
    produce(&pulsar, &setup.movies_topic, &records).await;

    let pool_url = setup.path("catalogue.db");
    let first_log = setup.path("host-1.log");
    let host = Host::start(&setup.pipeline, &first_log);
    let started = std::time::Instant::now();
    // Stop once some but not all records are through.
    loop {
        let stored = if pool_url.exists() { count(&setup.database().await, "SELECT COUNT(*) FROM movies").await } else { 0 };
        if stored >= 50 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exits 0 after SIGTERM, got {status}");
    let log_text = std::fs::read_to_string(&first_log).unwrap();
    assert!(log_text.contains("pipeline stopped"), "host drained and stopped cleanly");

    let pool = setup.database().await;
    let stored_before = count(&pool, "SELECT COUNT(*) FROM movies").await;
    let second_log = setup.path("host-2.log");
    let _host = Host::start(&setup.pipeline, &second_log);

    // Every record ends stored or dead-lettered by store-movies, exactly once.
    wait_until(Duration::from_secs(180), &second_log, "all records stored or dead-lettered", || async {
        let stored_and_repeats = count(&pool, "SELECT COUNT(*) FROM movies").await;
        let dead = count(&pool, "SELECT COUNT(*) FROM dead_letters WHERE stage = 'store-movies'").await;
        let sent = count(&pool, "SELECT COUNT(*) FROM notifications WHERE state = 'sent'").await;
        stored_and_repeats > 0 && sent == stored_and_repeats && stored_and_repeats + dead >= RECORDS as i64 - 10
            && outbox_message_ids(&setup.path("outbox")).len() as i64 == sent
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let stored = count(&pool, "SELECT COUNT(*) FROM movies").await;
    let dead = count(&pool, "SELECT COUNT(*) FROM dead_letters WHERE stage = 'store-movies'").await;
    assert!(stored > stored_before, "the second host continued the work");

    // The reference: the same records through the db-writer alone, without a broker.
    let expected = reference_stored_and_dead(&records).await;
    assert_eq!((stored, dead), expected, "(stored, dead-lettered) matches a run without interruption");

    let ids = outbox_message_ids(&setup.path("outbox"));
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(ids.len() as i64, stored, "one email per stored movie");
    assert_eq!(distinct.len(), ids.len(), "no email sent twice");
    let distinct_dead = count(&pool, "SELECT COUNT(DISTINCT source_message_id) FROM dead_letters WHERE stage = 'store-movies'").await;
    assert_eq!(distinct_dead, dead, "no record dead-lettered twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn full_movie_file_ends_in_exactly_one_place() {
    let setup = Setup::new();
    let pulsar = connect().await;
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("data/movies.json")).unwrap()).unwrap();
    assert_eq!(records.len(), 3201, "data/movies.json holds the whole dataset");
    let records: Vec<(String, Vec<(String, String)>)> = records.iter().map(|r| (r.to_string(), Vec::new())).collect();
    let (expected_stored, expected_dead) = reference_stored_and_dead(&records).await;

    let log = setup.path("host.log");
    let _host = Host::start(&setup.pipeline, &log);
    produce(&pulsar, &setup.movies_topic, &records).await;

    let pool = setup.database().await;
    let outbox = setup.path("outbox");
    wait_until(Duration::from_secs(600), &log, "every record stored or dead-lettered, and every email sent", || async {
        let stored = count(&pool, "SELECT COUNT(*) FROM movies").await;
        let dead = count(&pool, "SELECT COUNT(*) FROM dead_letters WHERE stage = 'store-movies'").await;
        stored == expected_stored && dead == expected_dead && outbox_message_ids(&outbox).len() as i64 == stored
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_eq!(count(&pool, "SELECT COUNT(*) FROM movies").await, expected_stored);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM dead_letters WHERE stage = 'store-movies'").await, expected_dead);
    let ids = outbox_message_ids(&outbox);
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(ids.len() as i64, expected_stored, "one email per stored movie");
    assert_eq!(distinct.len(), ids.len(), "no email sent twice");
    let unexplained = count(&pool, "SELECT COUNT(*) FROM dead_letters WHERE reason IS NULL OR reason = ''").await;
    assert_eq!(unexplained, 0, "every dead letter has a reason");
}
