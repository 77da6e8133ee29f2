//! Fault scenarios for the movie pipeline under `magnetar run`, against the real broker.
//! The faults are SIGKILL of the host, SMTP replies 4xx and 5xx, an SMTP server that is down,
//! and a database that is down longer than the retry budget. A last test checks the health
//! endpoint. Each scenario checks that every record ends stored once with one email, or
//! dead-lettered once, and prints a `fault-table|...` row that `scripts/fault-tests` collects.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

/// The parts of pipeline.yaml that differ between scenarios.
struct Options {
    database: String,
    mail: String,
    health: String,
    store_retry: &'static str,
    notify_retry: &'static str,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            database: "sqlite://catalogue.db".to_string(),
            mail: "file://outbox".to_string(),
            health: "off".to_string(),
            store_retry: "{ max_attempts: 3, initial_backoff: 200ms, max_backoff: 1s }",
            notify_retry: "{ max_attempts: 3, initial_backoff: 200ms, max_backoff: 1s }",
        }
    }
}

struct Setup {
    dir: tempfile::TempDir,
    pipeline: PathBuf,
    movies_topic: String,
}

impl Setup {
    fn new(options: &Options) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let suffix = unique_suffix();
        let movies_topic = format!("fault-movies-{suffix}");
        let yaml = format!(
            r#"
broker:
  url: {broker}
health:
  listen: "{health}"
database:
  url: {database}
  migrations: {migrations}
mail:
  transport: {mail}
  from: "Catalogue <catalogue@example.com>"
stages:
  - name: store-movies
    plugin: {db_writer}
    inputs: [{movies_topic}]
    subscription: db-writer
    outputs: {{ default: fault-stored-{suffix} }}
    grants: [database, publish]
    dead_letter: fault-dlq-{suffix}
    retry_topic: fault-store-retry-{suffix}
    parallelism: 4
    retry: {store_retry}
    config:
{db_writer_config}
  - name: notify
    plugin: {mailer}
    inputs: [fault-stored-{suffix}]
    subscription: mailer
    grants: [mail, database]
    dead_letter: fault-dlq-{suffix}
    retry_topic: fault-notify-retry-{suffix}
    parallelism: 2
    retry: {notify_retry}
    config:
      to: [team@example.com]
      subject: "New: {{{{title}}}}"
      text: "{{{{title}}}} ({{{{release_date}}}}) was stored."
  - name: log-dead-letters
    plugin: {dlq_logger}
    inputs: [fault-dlq-{suffix}]
    subscription: dlq-logger
    grants: [database]
    dead_letter: fault-dlq-failed-{suffix}
    retry_topic: fault-dlq-retry-{suffix}
"#,
            broker = broker_url(),
            health = options.health,
            database = options.database,
            migrations = repo_root().join("migrations").display(),
            mail = options.mail,
            db_writer = plugin("db_writer.wasm").display(),
            mailer = plugin("mailer.wasm").display(),
            dlq_logger = plugin("dlq_logger.wasm").display(),
            store_retry = options.store_retry,
            notify_retry = options.notify_retry,
            db_writer_config = indent(&db_writer_config_yaml(), 2),
        );
        let pipeline = dir.path().join("pipeline.yaml");
        std::fs::write(&pipeline, yaml).expect("write pipeline.yaml");
        Setup { dir, pipeline, movies_topic }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log_text(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|line| if line.is_empty() { String::new() } else { format!("{pad}{line}") }).collect::<Vec<_>>().join("\n")
}

/// The pipeline's database, SQLite or PostgreSQL, for counting what the host wrote.
enum Db {
    Sqlite(PathBuf),
    Postgres(sqlx::PgPool),
}

impl Db {
    /// Runs a `SELECT COUNT(*) ...` statement. Returns -1 while the database is unreachable.
    async fn count(&self, sql: &str) -> i64 {
        match self {
            Db::Sqlite(path) => {
                if !path.exists() {
                    return 0;
                }
                let url = format!("sqlite://{}", path.display());
                let Ok(pool) = sqlx::SqlitePool::connect(&url).await else { return -1 };
                let value = count(&pool, sql).await;
                pool.close().await;
                value
            }
            Db::Postgres(pool) => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or(-1),
        }
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        match self {
            Db::Sqlite(path) => {
                let url = format!("sqlite://{}", path.display());
                let pool = sqlx::SqlitePool::connect(&url).await.expect("open the pipeline's SQLite file");
                let values = sqlx::query_scalar::<_, String>(sql).fetch_all(&pool).await.expect(sql);
                pool.close().await;
                values
            }
            Db::Postgres(pool) => sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await.expect(sql),
        }
    }
}

/// What a run left behind, counted from the database and the mail folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    stored: i64,
    sent: i64,
    store_dead: i64,
    notify_dead: i64,
    /// Dead letters with distinct (stage, source topic, source message id).
    distinct_dead: i64,
    emails: usize,
    distinct_emails: usize,
}

impl Tally {
    async fn take(db: &Db, mail_folder: &Path) -> Tally {
        let ids = outbox_message_ids(mail_folder);
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        Tally {
            stored: db.count("SELECT COUNT(*) FROM movies").await,
            sent: db.count("SELECT COUNT(*) FROM notifications WHERE state = 'sent'").await,
            store_dead: db.count("SELECT COUNT(*) FROM dead_letters WHERE stage = 'store-movies'").await,
            notify_dead: db.count("SELECT COUNT(*) FROM dead_letters WHERE stage = 'notify'").await,
            distinct_dead: db
                .count("SELECT COUNT(*) FROM (SELECT DISTINCT stage, source_topic, source_message_id FROM dead_letters) AS d")
                .await,
            emails: ids.len(),
            distinct_emails: distinct.len(),
        }
    }

    fn duplicates(&self) -> i64 {
        (self.emails - self.distinct_emails) as i64 + (self.store_dead + self.notify_dead - self.distinct_dead)
    }

    /// Records that reached neither their expected end (stored or dead-lettered) nor, when
    /// stored, an email or a notify dead letter.
    fn lost(&self, expected: (i64, i64)) -> i64 {
        let (expected_stored, expected_dead) = expected;
        (expected_stored - self.stored).max(0)
            + (expected_dead - self.store_dead).max(0)
            + (self.stored - self.distinct_emails as i64 - self.notify_dead).max(0)
    }

    fn print_row(&self, scenario: &str, produced: usize, expected: (i64, i64)) {
        print_fault_row(
            scenario,
            produced,
            self.stored,
            self.emails,
            self.store_dead + self.notify_dead,
            self.duplicates(),
            self.lost(expected),
        );
    }
}

/// Waits until every stored record is notified and the store outcome matches `expected`,
/// then a little longer so that late duplicates would show up.
async fn wait_for_quiet_end(db: &Db, mail_folder: &Path, expected: (i64, i64), within: Duration, log: &Path) -> Tally {
    let (expected_stored, expected_dead) = expected;
    let deadline = Instant::now() + within;
    loop {
        let tally = Tally::take(db, mail_folder).await;
        let finished = tally.stored >= expected_stored
            && tally.store_dead >= expected_dead
            && tally.sent + tally.notify_dead >= tally.stored
            && tally.distinct_emails as i64 + tally.notify_dead >= tally.stored;
        if finished {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {within:?} waiting for {expected_stored} stored records, each notified, and {expected_dead} dead \
                 letters; now {tally:?}; warnings in the host log:\n{}",
                log_warnings(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    Tally::take(db, mail_folder).await
}

/// Returns the last 30 lines of a host log about warnings, errors, retries and consumers.
fn log_warnings(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let notable = ["WARN", "ERROR", "retry", "consumer"];
    let lines: Vec<&str> = text.lines().filter(|line| notable.iter().any(|word| line.contains(word))).collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Asserts the end state every scenario must reach: the reference outcome, one email per
/// notified record apart from `tolerated_duplicate_emails`, and no record dead-lettered twice.
fn assert_nothing_lost_or_duplicated(tally: &Tally, expected: (i64, i64), tolerated_duplicate_emails: usize) {
    assert_eq!((tally.stored, tally.store_dead), expected, "(stored, dead-lettered by store-movies) matches a run without faults");
    assert!(tally.emails - tally.distinct_emails <= tolerated_duplicate_emails, "no email sent twice: {tally:?}");
    assert_eq!(tally.distinct_emails as i64, tally.sent, "one email per notification marked 'sent': {tally:?}");
    assert_eq!(tally.sent + tally.notify_dead, tally.stored, "every stored record notified or dead-lettered by notify: {tally:?}");
    assert_eq!(tally.distinct_dead, tally.store_dead + tally.notify_dead, "no record dead-lettered twice: {tally:?}");
}

/// Returns a number below `modulus` from the clock, so kill points differ between runs.
fn clock_noise(modulus: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    (nanos / 1000) % modulus
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_three_times_loses_and_duplicates_nothing() {
    const RECORDS: usize = 600;
    let setup = Setup::new(&Options::default());
    let pulsar = connect().await;
    let records = movie_records(RECORDS);
    produce(&pulsar, &setup.movies_topic, &records).await;
    let expected = reference_stored_and_dead(&records).await;
    let (expected_stored, expected_dead) = expected;

    let db = Db::Sqlite(setup.path("catalogue.db"));
    let outbox = setup.path("outbox");
    // Kill points: once some records are through, at random counts spread over the run.
    let total = (expected_stored + expected_dead) as u64;
    let mut thresholds: Vec<i64> = (0..3).map(|round| (total * (10 + 25 * round + clock_noise(20)) / 100) as i64).collect();
    thresholds.sort();

    for (round, threshold) in thresholds.iter().enumerate() {
        let log = setup.path(&format!("host-{round}.log"));
        let mut host = Host::start(&setup.pipeline, &log);
        let started = Instant::now();
        loop {
            let tally = Tally::take(&db, &outbox).await;
            if tally.stored + tally.store_dead >= *threshold || started.elapsed() > Duration::from_secs(120) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(clock_noise(300))).await;
        host.child.kill().expect("send SIGKILL to the host");
        host.child.wait().expect("reap the killed host");
        let tally = Tally::take(&db, &outbox).await;
        println!("kill {} at {threshold}+ records handled: {tally:?}", round + 1);
        assert!(tally.stored + tally.store_dead < total as i64, "kill {} came after all records were handled; the run proves nothing", round + 1);
    }

    let log = setup.path("host-final.log");
    let _host = Host::start(&setup.pipeline, &log);
    let tally = wait_for_quiet_end(&db, &outbox, expected, Duration::from_secs(300), &log).await;
    tally.print_row("sigkill x3", RECORDS, expected);

    let notify_workers = 2;
    assert_duplicates_from_send_window(&db, &outbox).await;
    assert_nothing_lost_or_duplicated(&tally, expected, thresholds.len() * notify_workers);
}

/// Asserts that every email sent twice comes from the mailer's documented window.
///
/// NOTE: the mailer sends again when the host dies, or the database fails, between the send
/// and marking the notification 'sent' (see plugins/mailer/src/notify.rs), so each such fault
/// may duplicate one email per notify worker. Such a copy has the same Message-ID and its
/// notification row counts more than one send attempt. Any other duplicate fails the test.
async fn assert_duplicates_from_send_window(db: &Db, mail_folder: &Path) {
    let duplicated = duplicated_message_ids(mail_folder);
    if duplicated.is_empty() {
        return;
    }
    let retried: Vec<String> = db.strings("SELECT message_id FROM notifications WHERE attempts > 1").await;
    println!("duplicate emails (Message-ID): {duplicated:?}; notifications with more than one send attempt: {retried:?}");
    for id in &duplicated {
        assert!(retried.contains(id), "email {id} was sent twice without a fault between its send and marking it 'sent'");
    }
}

/// Message-IDs that occur on more than one email in `folder`.
fn duplicated_message_ids(folder: &Path) -> Vec<String> {
    let mut ids = outbox_message_ids(folder);
    ids.sort();
    let mut duplicated: Vec<String> = ids.windows(2).filter(|pair| pair[0] == pair[1]).map(|pair| pair[0].clone()).collect();
    duplicated.dedup();
    duplicated
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_4xx_replies_are_retried_and_sent_once() {
    const RECORDS: usize = 20;
    const TEMPORARY_FAILURES: i64 = 3;
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = SmtpSink::start(dir.path());
    sink.set_mode(&format!(r#"{{"mode": "tempfail", "times": {TEMPORARY_FAILURES}}}"#));
    let options = Options {
        mail: sink.transport(),
        notify_retry: "{ max_attempts: 5, initial_backoff: 200ms, max_backoff: 1s }",
        ..Options::default()
    };
    let setup = Setup::new(&options);
    let pulsar = connect().await;
    let records = movie_records(RECORDS);
    produce(&pulsar, &setup.movies_topic, &records).await;
    let expected = reference_stored_and_dead(&records).await;

    let log = setup.path("host.log");
    let _host = Host::start(&setup.pipeline, &log);
    let db = Db::Sqlite(setup.path("catalogue.db"));
    let tally = wait_for_quiet_end(&db, &sink.inbox, expected, Duration::from_secs(120), &log).await;
    tally.print_row("smtp 451 x3 then ok", RECORDS, expected);

    assert_nothing_lost_or_duplicated(&tally, expected, 0);
    assert_eq!(tally.notify_dead, 0, "a 4xx reply is retried, not dead-lettered");
    assert_eq!(tally.distinct_emails as i64, tally.stored, "every stored record arrives by SMTP");
    // Every MAIL FROM the sink saw is one counted send attempt.
    let attempts = db.count("SELECT SUM(attempts) FROM notifications").await;
    assert_eq!(attempts, tally.stored + TEMPORARY_FAILURES, "one extra send attempt per 451 reply");
    assert!(setup.log_text("host.log").contains("scheduled a retry"), "the notify stage retried through its retry topic");
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_5xx_reply_dead_letters_with_reason() {
    const RECORDS: usize = 10;
    const REASON: &str = "5.7.1 Recipient rejected by the fault test";
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = SmtpSink::start(dir.path());
    sink.set_mode(&format!(r#"{{"mode": "permfail", "reason": "{REASON}"}}"#));
    let setup = Setup::new(&Options { mail: sink.transport(), ..Options::default() });
    let pulsar = connect().await;
    let records = movie_records(RECORDS);
    produce(&pulsar, &setup.movies_topic, &records).await;
    let expected = reference_stored_and_dead(&records).await;

    let log = setup.path("host.log");
    let _host = Host::start(&setup.pipeline, &log);
    let db = Db::Sqlite(setup.path("catalogue.db"));
    let tally = wait_for_quiet_end(&db, &sink.inbox, expected, Duration::from_secs(120), &log).await;
    tally.print_row("smtp 550", RECORDS, expected);

    assert_nothing_lost_or_duplicated(&tally, expected, 0);
    assert_eq!(tally.emails, 0, "the sink stored no email");
    assert_eq!(tally.notify_dead, tally.stored, "every stored record is dead-lettered by notify");
    let kinds = db.strings("SELECT failure_kind || ' attempts=' || attempts FROM dead_letters WHERE stage = 'notify'").await;
    for kind in &kinds {
        assert_eq!(kind, "permanent attempts=1", "a 5xx reply is permanent and not retried");
    }
    let reasons = db.strings("SELECT reason FROM dead_letters WHERE stage = 'notify'").await;
    for reason in &reasons {
        assert!(reason.contains("550"), "dead letter names the reply code: {reason}");
        assert!(reason.contains(REASON), "dead letter carries the server's reply text: {reason}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_server_down_pauses_notify_until_back() {
    const RECORDS: usize = 30;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sink = SmtpSink::reserve(dir.path());
    let options = Options {
        mail: sink.transport(),
        notify_retry: "{ max_attempts: 2, initial_backoff: 100ms, max_backoff: 200ms }",
        ..Options::default()
    };
    let setup = Setup::new(&options);
    let pulsar = connect().await;
    let records = movie_records(RECORDS);
    produce(&pulsar, &setup.movies_topic, &records).await;
    let expected = reference_stored_and_dead(&records).await;
    let (expected_stored, expected_dead) = expected;

    let log = setup.path("host.log");
    let _host = Host::start(&setup.pipeline, &log);
    let db = Db::Sqlite(setup.path("catalogue.db"));
    wait_until(Duration::from_secs(120), &log, "every record stored or dead-lettered while SMTP is down", || async {
        let tally = Tally::take(&db, &sink.inbox).await;
        tally.stored == expected_stored && tally.store_dead == expected_dead
    })
    .await;
    // Many times the notify retry budget (2 attempts, 100 ms backoff).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let paused = Tally::take(&db, &sink.inbox).await;
    assert_eq!(paused.notify_dead, 0, "an unreachable SMTP server dead-letters nothing");
    assert_eq!(paused.sent, 0, "nothing is marked sent while the SMTP server is down");
    assert!(setup.log_text("host.log").contains("pausing the stages that use it"), "the mail breaker opened");

    sink.launch();
    let tally = wait_for_quiet_end(&db, &sink.inbox, expected, Duration::from_secs(120), &log).await;
    tally.print_row("smtp down, then up", RECORDS, expected);

    assert_nothing_lost_or_duplicated(&tally, expected, 0);
    assert_eq!(tally.notify_dead, 0, "no email dead-lettered because of the outage");
    assert_eq!(tally.distinct_emails as i64, tally.stored, "every stored record arrives once the server is back");
    assert!(setup.log_text("host.log").contains("backend answers again"), "the mail breaker closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_down_pauses_stages_without_dead_letters() {
    const RECORDS: usize = 300;
    let postgres = PrivatePostgres::start();
    let options = Options {
        database: postgres.url(),
        store_retry: "{ max_attempts: 2, initial_backoff: 100ms, max_backoff: 200ms }",
        notify_retry: "{ max_attempts: 2, initial_backoff: 100ms, max_backoff: 200ms }",
        ..Options::default()
    };
    let setup = Setup::new(&options);
    let pulsar = connect().await;
    let records = movie_records(RECORDS);
    produce(&pulsar, &setup.movies_topic, &records).await;
    let expected = reference_stored_and_dead(&records).await;

    let log = setup.path("host.log");
    let _host = Host::start(&setup.pipeline, &log);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&postgres.url())
        .await
        .expect("connect to the private PostgreSQL");
    let db = Db::Postgres(pool);
    let outbox = setup.path("outbox");
    wait_until(Duration::from_secs(120), &log, "30 stored records before the outage", || async {
        db.count("SELECT COUNT(*) FROM movies").await >= 30
    })
    .await;

    postgres.stop();
    // Many times the retry budget (2 attempts, 100 ms backoff).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(setup.log_text("host.log").contains("pausing the stages that use it"), "the database breaker opened");
    postgres.resume();

    let tally = wait_for_quiet_end(&db, &outbox, expected, Duration::from_secs(300), &log).await;
    tally.print_row("postgres down 8 s", RECORDS, expected);

    let notify_workers = 2;
    assert_duplicates_from_send_window(&db, &outbox).await;
    assert_nothing_lost_or_duplicated(&tally, expected, notify_workers);
    let kinds = db.strings("SELECT DISTINCT failure_kind FROM dead_letters WHERE failure_kind <> 'permanent'").await;
    assert!(kinds.is_empty(), "only records at fault are dead-lettered, none because of the outage: {kinds:?}");
    assert_eq!(tally.notify_dead, 0, "no email dead-lettered because of the outage");
    assert!(setup.log_text("host.log").contains("backend answers again"), "the database breaker closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_endpoint_reports_ok_while_connected() {
    let port = free_port();
    let setup = Setup::new(&Options { health: format!("127.0.0.1:{port}"), ..Options::default() });
    let pulsar = connect().await;
    let records = movie_records(5);
    produce(&pulsar, &setup.movies_topic, &records).await;

    let log = setup.path("host.log");
    let _host = Host::start(&setup.pipeline, &log);
    wait_until(Duration::from_secs(60), &log, "GET /health returns 200 with 5 messages received", || async {
        let Ok((status, body)) = http_request(port, "GET", "/health", "") else { return false };
        let received = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|report| report["stages"]["store-movies"]["received"].as_u64())
            .unwrap_or(0);
        status == 200 && received >= 5
    })
    .await;

    let (status, body) = http_request(port, "GET", "/health", "").expect("GET /health");
    assert_eq!(status, 200, "healthy while connected: {body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("health report is JSON");
    assert_eq!(report["status"], "ok");
    for stage in ["store-movies", "notify", "log-dead-letters"] {
        assert_eq!(report["stages"][stage]["connected"], true, "{stage} is connected: {body}");
    }
    let (status, _) = http_request(port, "GET", "/nowhere", "").expect("GET /nowhere");
    assert_eq!(status, 404, "only /health is served");
}
