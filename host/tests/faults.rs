//! Fault scenarios for the movie pipeline under `magnetar run`, against the real broker.
//! The faults are SIGKILL of the host (also while a Python client's batches arrive), SMTP
//! replies 4xx and 5xx, dropped SMTP connections, an SMTP server that is down, PostgreSQL
//! and MariaDB down longer than the retry budget, SQLite write-locked by another process, a
//! broker restart, an idle spell longer than the broker's keep-alive, messages that trap or
//! time out on every attempt across host restarts, and a plugin that reports its config
//! invalid. Each scenario checks that every record ends stored once with one email, or
//! dead-lettered once, and prints a `fault-table|...` row that `scripts/fault-tests` collects.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

/// The parts of pipeline.yaml that differ between scenarios.
struct Options {
    broker: String,
    database: String,
    mail: String,
    health: String,
    store_retry: &'static str,
    notify_retry: &'static str,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            broker: broker_url(),
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
    # As in pipeline.yaml: copies of one event go to one handler at a time.
    subscription_type: key_shared
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
            broker = options.broker,
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

/// The pipeline's database, for counting what the host wrote.
enum Db {
    Sqlite(PathBuf),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
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
            Db::Mysql(pool) => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or(-1),
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
            // Columns with a binary collation come back as bytes.
            Db::Mysql(pool) => sqlx::query_scalar::<_, Vec<u8>>(sql)
                .fetch_all(pool)
                .await
                .expect(sql)
                .into_iter()
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .collect(),
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
    // A notification stays 'pending' when the database failed right after its send.
    assert!(tally.sent <= tally.distinct_emails as i64, "no notification marked 'sent' without an email: {tally:?}");
    assert_eq!(
        tally.distinct_emails as i64 + tally.notify_dead,
        tally.stored,
        "every stored record emailed or dead-lettered by notify: {tally:?}"
    );
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

    let db = Db::Sqlite(setup.path("catalogue.db"));
    let outbox = setup.path("outbox");
    let (kills, log, _host) = run_with_three_kills(&setup, &db, &outbox, expected).await;
    let tally = wait_for_quiet_end(&db, &outbox, expected, Duration::from_secs(300), &log).await;
    tally.print_row("sigkill x3", RECORDS, expected);

    let notify_workers = 2;
    assert_duplicates_from_send_window(&db, &outbox).await;
    assert_nothing_lost_or_duplicated(&tally, expected, kills * notify_workers);
}

/// Starts the host and kills it with SIGKILL three times, at random points once some records
/// are through, then starts it a last time. Returns the number of kills, the last log and the
/// running host.
async fn run_with_three_kills(setup: &Setup, db: &Db, outbox: &Path, expected: (i64, i64)) -> (usize, PathBuf, Host) {
    let total = (expected.0 + expected.1) as u64;
    // Thresholds stay below 60% of the records so that some are still unhandled at the kill,
    // because a warm host handles dozens more between the poll and the kill.
    let mut thresholds: Vec<i64> = (0..3).map(|round| (total * (5 + 20 * round + clock_noise(15)) / 100) as i64).collect();
    thresholds.sort();

    for (round, threshold) in thresholds.iter().enumerate() {
        let log = setup.path(&format!("host-{round}.log"));
        let mut host = Host::start(&setup.pipeline, &log);
        let started = Instant::now();
        loop {
            let tally = Tally::take(db, outbox).await;
            if tally.stored + tally.store_dead >= *threshold || started.elapsed() > Duration::from_secs(120) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(clock_noise(50))).await;
        host.child.kill().expect("send SIGKILL to the host");
        host.child.wait().expect("reap the killed host");
        let tally = Tally::take(db, outbox).await;
        println!("kill {} at {threshold}+ records handled: {tally:?}", round + 1);
        assert!(tally.stored + tally.store_dead < total as i64, "kill {} came after all records were handled; the run proves nothing", round + 1);
    }

    let log = setup.path("host-final.log");
    let host = Host::start(&setup.pipeline, &log);
    (thresholds.len(), log, host)
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_batches_survive_failing_members_and_sigkill() {
    const RECORDS: usize = 400;
    const BATCH: usize = 10;
    let setup = Setup::new(&Options::default());
    // Every 23rd message is not JSON, so many batches hold a member that fails for good.
    let records: Vec<(String, Vec<(String, String)>)> = movie_records(RECORDS)
        .into_iter()
        .enumerate()
        .map(|(index, record)| if index % 23 == 5 { (format!("not a movie #{index}"), Vec::new()) } else { record })
        .collect();
    let lines: String = records.iter().map(|(payload, _)| format!("{payload}\n")).collect();
    let input = setup.path("records.jsonl");
    std::fs::write(&input, lines).expect("write records.jsonl");
    python_produce_in_batches(&broker_url(), &setup.movies_topic, &input, BATCH);
    let entries = topic_entries(&setup.movies_topic);
    assert!(entries * 3 <= RECORDS as u64, "{RECORDS} messages arrived in batches ({entries} ledger entries)");
    let expected = reference_stored_and_dead(&records).await;
    assert!(expected.1 >= (RECORDS / 23) as i64, "the run has failing batch members: {expected:?}");

    let db = Db::Sqlite(setup.path("catalogue.db"));
    let outbox = setup.path("outbox");
    let (kills, log, _host) = run_with_three_kills(&setup, &db, &outbox, expected).await;
    let tally = wait_for_quiet_end(&db, &outbox, expected, Duration::from_secs(300), &log).await;
    tally.print_row("python batches of 10 + sigkill x3", RECORDS, expected);

    let notify_workers = 2;
    assert_duplicates_from_send_window(&db, &outbox).await;
    assert_nothing_lost_or_duplicated(&tally, expected, kills * notify_workers);
}

/// Produces each line of `input` as one message with the Python `pulsar-client` package,
/// which batches up to `batch` messages per broker entry.
fn python_produce_in_batches(broker: &str, topic: &str, input: &Path, batch: usize) {
    // scripts/test exports a Python with pulsar-client; without it, try the services' venv.
    let python = std::env::var_os("MAGNETAR_TEST_PYTHON")
        .or_else(|| std::env::var_os("MAGNETAR_TEST_SMTP_PYTHON"))
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/services/venv/bin/python"));
    let python = python.display();
    let output = std::process::Command::new(python.to_string())
        .arg(repo_root().join("host/tests/fixtures/batch_producer.py"))
        .args(["--broker", broker, "--topic", topic, "--batch", &batch.to_string()])
        .arg(input)
        .output()
        .expect("run the Python batch producer");
    assert!(
        output.status.success(),
        "the Python batch producer failed (install pulsar-client with `{python} -m pip install pulsar-client`):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Number of ledger entries written to `topic` on the shared broker (a batch is one entry).
fn topic_entries(topic: &str) -> u64 {
    let (status, body) =
        http_request(admin_port(), "GET", &format!("/admin/v2/persistent/public/default/{topic}/internalStats"), "").expect("GET internalStats");
    assert_eq!(status, 200, "internal stats of {topic}: {body}");
    let stats: serde_json::Value = serde_json::from_str(&body).expect("internal stats are JSON");
    stats["entriesAddedCounter"].as_u64().unwrap_or_else(|| panic!("no entriesAddedCounter in {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_and_idle_past_keep_alive_resume_by_themselves() {
    const FIRST: usize = 200;
    const LATER: usize = 20;
    const KEEP_ALIVE_S: u64 = 5;
    let broker = PrivateBroker::start(&format!("keepAliveIntervalSeconds={KEEP_ALIVE_S}"));
    let port = free_port();
    let options = Options { broker: broker.url(), health: format!("127.0.0.1:{port}"), ..Options::default() };
    let setup = Setup::new(&options);
    let all = movie_records(FIRST + LATER);
    let (first, later) = all.split_at(FIRST);
    {
        let pulsar = connect_to(&broker.url()).await;
        produce(&pulsar, &setup.movies_topic, first).await;
    }
    let db = Db::Sqlite(setup.path("catalogue.db"));
    let outbox = setup.path("outbox");
    let log = setup.path("host.log");
    let _host = Host::start(&setup.pipeline, &log);
    wait_until(Duration::from_secs(120), &log, "40 stored records before the restart", || async {
        db.count("SELECT COUNT(*) FROM movies").await >= 40
    })
    .await;

    broker.stop();
    let stopped = Instant::now();
    wait_until(Duration::from_secs(30), &log, "GET /health to answer 503 while the broker is down", || async {
        matches!(http_request(port, "GET", "/health", ""), Ok((503, _)))
    })
    .await;
    println!("health reported the broker down {:.1} s after it stopped", stopped.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A store only succeeds once its event is published, so this count stands still while
    // the broker is down.
    let succeeded = || {
        let body = http_request(port, "GET", "/health", "").map(|(_, body)| body).unwrap_or_default();
        let report: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        report["stages"]["store-movies"]["succeeded"].as_u64().unwrap_or(0)
    };
    let before_restart = succeeded();
    broker.resume();
    let restarted = Instant::now();
    wait_until(Duration::from_secs(60), &log, "stores to succeed again after the broker restart", || async {
        succeeded() > before_restart || before_restart >= FIRST as u64
    })
    .await;
    println!("stores succeeded again {:.1} s after the broker was ready", restarted.elapsed().as_secs_f64());
    let expected_first = reference_stored_and_dead(first).await;
    let tally = wait_for_quiet_end(&db, &outbox, expected_first, Duration::from_secs(180), &log).await;
    tally.print_row("broker restart", FIRST, expected_first);
    assert_nothing_lost_or_duplicated(&tally, expected_first, 0);
    wait_until(Duration::from_secs(30), &log, "GET /health to answer 200 again", || async {
        matches!(http_request(port, "GET", "/health", ""), Ok((200, _)))
    })
    .await;

    // Idle for three keep-alive intervals: the broker closes connections that miss its pings.
    tokio::time::sleep(Duration::from_secs(3 * KEEP_ALIVE_S + 2)).await;
    {
        let pulsar = connect_to(&broker.url()).await;
        produce(&pulsar, &setup.movies_topic, later).await;
    }
    let produced = Instant::now();
    let expected = reference_stored_and_dead(&all).await;
    let tally = wait_for_quiet_end(&db, &outbox, expected, Duration::from_secs(30), &log).await;
    println!("after {} s idle, {LATER} records finished within {:.1} s", 3 * KEEP_ALIVE_S + 2, produced.elapsed().as_secs_f64());
    tally.print_row("idle 3x keep-alive, then records", FIRST + LATER, expected);
    assert_nothing_lost_or_duplicated(&tally, expected, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn trap_and_timeout_reach_dead_letters_across_host_restarts() {
    const MAX_ATTEMPTS: i64 = 3;
    let dir = tempfile::tempdir().expect("temp dir");
    let suffix = unique_suffix();
    let topic = format!("fault-hostile-{suffix}");
    let yaml = format!(
        r#"
broker:
  url: {broker}
database:
  url: sqlite://dead.db
  migrations: {migrations}
stages:
  - name: hostile
    plugin: {hostile}
    inputs: [{topic}]
    subscription: hostile
    outputs: {{ default: fault-hostile-out-{suffix} }}
    grants: [publish]
    dead_letter: fault-hostile-dlq-{suffix}
    retry_topic: fault-hostile-retry-{suffix}
    retry: {{ max_attempts: {MAX_ATTEMPTS}, initial_backoff: 1500ms, max_backoff: 1500ms }}
    limits: {{ timeout: 300ms }}
  - name: log-dead-letters
    plugin: {dlq_logger}
    inputs: [fault-hostile-dlq-{suffix}]
    subscription: dlq-logger
    grants: [database]
    dead_letter: fault-hostile-dlq-failed-{suffix}
    retry_topic: fault-hostile-dlq-retry-{suffix}
"#,
        broker = broker_url(),
        migrations = repo_root().join("migrations").display(),
        hostile = plugin("hostile.wasm").display(),
        dlq_logger = plugin("dlq_logger.wasm").display(),
    );
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(&pipeline, yaml).expect("write pipeline.yaml");
    let pulsar = connect().await;
    produce(&pulsar, &topic, &[("panic".to_string(), Vec::new()), ("loop".to_string(), Vec::new())]).await;

    // Kill the host after each round of attempts, while both messages wait in the retry topic.
    let db = Db::Sqlite(dir.path().join("dead.db"));
    for round in 1..MAX_ATTEMPTS {
        let log = dir.path().join(format!("host-{round}.log"));
        let mut host = Host::start(&pipeline, &log);
        wait_until(Duration::from_secs(60), &log, "both messages to be scheduled for a retry", || async {
            std::fs::read_to_string(&log).unwrap_or_default().matches("scheduled a retry").count() >= 2
        })
        .await;
        host.child.kill().expect("send SIGKILL to the host");
        host.child.wait().expect("reap the killed host");
        assert_eq!(db.count("SELECT COUNT(*) FROM dead_letters").await.max(0), 0, "nothing dead-lettered after round {round}");
    }

    let log = dir.path().join("host-final.log");
    let _host = Host::start(&pipeline, &log);
    wait_until(Duration::from_secs(60), &log, "two dead letters", || async {
        db.count("SELECT COUNT(*) FROM dead_letters").await >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut rows = db.strings("SELECT failure_kind || ' attempts=' || attempts || ' ' || CAST(payload AS TEXT) FROM dead_letters").await;
    rows.sort();
    assert_eq!(
        rows,
        vec![format!("timeout attempts={MAX_ATTEMPTS} loop"), format!("trap attempts={MAX_ATTEMPTS} panic")],
        "each message dead-lettered once, after {MAX_ATTEMPTS} attempts spread over {MAX_ATTEMPTS} host processes"
    );
    print_fault_row("trap and timeout across 2 kills", 2, 0, 0, rows.len() as i64, 0, 0);
}

/// Asserts that every email sent twice comes from the mailer's documented window.
///
/// NOTE: the mailer sends again when the host dies between the send and marking the
/// notification 'sent' (see plugins/mailer/src/notify.rs), so each kill may duplicate one
/// email per notify worker. Such a copy has the same Message-ID and its
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
    smtp_transient_faults_are_retried("tempfail", "smtp 451 x3 then ok").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_dropped_connections_are_retried_and_sent_once() {
    smtp_transient_faults_are_retried("drop", "smtp drops x3 then ok").await;
}

/// The sink answers the first three mail transactions with fault `mode`, then accepts.
async fn smtp_transient_faults_are_retried(mode: &str, scenario: &str) {
    const RECORDS: usize = 20;
    const TEMPORARY_FAILURES: i64 = 3;
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = SmtpSink::start(dir.path());
    sink.set_mode(&format!(r#"{{"mode": "{mode}", "times": {TEMPORARY_FAILURES}}}"#));
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
    tally.print_row(scenario, RECORDS, expected);

    assert_nothing_lost_or_duplicated(&tally, expected, 0);
    assert_eq!(tally.notify_dead, 0, "a {mode} fault is retried, not dead-lettered");
    assert_eq!(tally.distinct_emails as i64, tally.stored, "every stored record arrives by SMTP");
    // Every MAIL FROM the sink saw is one counted send attempt.
    let attempts = db.count("SELECT SUM(attempts) FROM notifications").await;
    assert_eq!(attempts, tally.stored + TEMPORARY_FAILURES, "one extra send attempt per {mode} fault");
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

/// A database server that a test can crash and start again.
trait OutageDatabase {
    fn url(&self) -> String;
    fn stop(&self);
    fn resume(&self);
}

impl OutageDatabase for PrivatePostgres {
    fn url(&self) -> String {
        PrivatePostgres::url(self)
    }
    fn stop(&self) {
        PrivatePostgres::stop(self)
    }
    fn resume(&self) {
        PrivatePostgres::resume(self)
    }
}

impl OutageDatabase for PrivateMariadb {
    fn url(&self) -> String {
        PrivateMariadb::url(self)
    }
    fn stop(&self) {
        PrivateMariadb::stop(self)
    }
    fn resume(&self) {
        PrivateMariadb::resume(self)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_down_pauses_stages_without_dead_letters() {
    let postgres = PrivatePostgres::start();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&postgres.url())
        .await
        .expect("connect to the private PostgreSQL");
    database_down_pauses_stages(&postgres, Db::Postgres(pool), "postgres down 8 s").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_down_pauses_stages_without_dead_letters() {
    let mariadb = PrivateMariadb::start();
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&mariadb.url())
        .await
        .expect("connect to the private MariaDB");
    database_down_pauses_stages(&mariadb, Db::Mysql(pool), "mariadb crash, down 8 s").await;
}

/// Stops `server` for many times the retry budget while records flow, then starts it again.
async fn database_down_pauses_stages(server: &impl OutageDatabase, db: Db, scenario: &str) {
    const RECORDS: usize = 300;
    let options = Options {
        database: server.url(),
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
    let outbox = setup.path("outbox");
    wait_until(Duration::from_secs(120), &log, "30 stored records before the outage", || async {
        db.count("SELECT COUNT(*) FROM movies").await >= 30
    })
    .await;

    server.stop();
    // Many times the retry budget (2 attempts, 100 ms backoff).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(setup.log_text("host.log").contains("pausing the stages that use it"), "the database breaker opened");
    server.resume();

    let tally = wait_for_quiet_end(&db, &outbox, expected, Duration::from_secs(300), &log).await;
    tally.print_row(scenario, RECORDS, expected);

    // The mailer counts an email as handled when only marking it sent fails, so an outage
    // sends no copy.
    assert_nothing_lost_or_duplicated(&tally, expected, 0);
    let kinds = db.strings("SELECT DISTINCT failure_kind FROM dead_letters WHERE failure_kind <> 'permanent'").await;
    assert!(kinds.is_empty(), "only records at fault are dead-lettered, none because of the outage: {kinds:?}");
    assert_eq!(tally.notify_dead, 0, "no email dead-lettered because of the outage");
    assert!(setup.log_text("host.log").contains("backend answers again"), "the database breaker closed");
}

/// A SQLite file whose write lock another process takes while the database is "down", so
/// that every write of the host fails with SQLITE_BUSY until the lock is released.
struct SqliteLockHolder {
    dir: tempfile::TempDir,
    holder: std::sync::Mutex<Option<std::process::Child>>,
}

impl SqliteLockHolder {
    fn new() -> SqliteLockHolder {
        SqliteLockHolder { dir: tempfile::tempdir().expect("temp dir"), holder: std::sync::Mutex::new(None) }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("catalogue.db")
    }
}

impl OutageDatabase for SqliteLockHolder {
    fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }

    /// Starts a Python process that takes the write lock, and waits until it holds it.
    fn stop(&self) {
        use std::io::BufRead;
        let script = "import sqlite3, sys, time\n\
                      db = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                      db.execute('BEGIN IMMEDIATE')\n\
                      print('locked', flush=True)\n\
                      time.sleep(3600)\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(self.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start python3 to hold the SQLite write lock");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read from python3");
        assert_eq!(line.trim(), "locked", "python3 did not take the write lock of {}", self.path().display());
        *self.holder.lock().unwrap() = Some(child);
    }

    /// Ends the process, which releases the lock.
    fn resume(&self) {
        if let Some(mut child) = self.holder.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_write_lock_pauses_stages_without_dead_letters() {
    let holder = SqliteLockHolder::new();
    let db = Db::Sqlite(holder.path());
    database_down_pauses_stages(&holder, db, "sqlite write-locked 8 s").await;
    holder.resume();
}

#[tokio::test(flavor = "multi_thread")]
async fn misconfigured_stage_pauses_without_dead_letters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suffix = unique_suffix();
    let topic = format!("fault-misconfigured-{suffix}");
    let port = free_port();
    let yaml = format!(
        r#"
broker:
  url: {broker}
health:
  listen: "127.0.0.1:{port}"
stages:
  - name: broken
    plugin: {hostile}
    inputs: [{topic}]
    subscription: broken
    outputs: {{ default: fault-misconfigured-out-{suffix} }}
    grants: [publish]
    dead_letter: fault-misconfigured-dlq-{suffix}
    retry_topic: fault-misconfigured-retry-{suffix}
    retry: {{ max_attempts: 2, initial_backoff: 100ms, max_backoff: 100ms }}
"#,
        broker = broker_url(),
        hostile = plugin("hostile.wasm").display(),
    );
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(&pipeline, yaml).expect("write pipeline.yaml");
    let pulsar = connect().await;
    let messages: Vec<(String, Vec<(String, String)>)> = (0..3).map(|_| ("misconfigured".to_string(), Vec::new())).collect();
    produce(&pulsar, &topic, &messages).await;

    let log = dir.path().join("host.log");
    let _host = Host::start(&pipeline, &log);
    let report = || -> serde_json::Value {
        let body = http_request(port, "GET", "/health", "").map(|(_, body)| body).unwrap_or_default();
        serde_json::from_str(&body).unwrap_or_default()
    };
    wait_until(Duration::from_secs(60), &log, "GET /health to name the stage's problem", || async {
        matches!(http_request(port, "GET", "/health", ""), Ok((503, _))) && report()["stages"]["broken"]["problem"].is_string()
    })
    .await;
    // Many times the retry budget (2 attempts, 100 ms backoff).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let stage = &report()["stages"]["broken"];
    assert_eq!(stage["problem"], "asked to report a broken config", "{stage}");
    assert_eq!(stage["dead_lettered"], 0, "nothing dead-lettered: {stage}");
    assert_eq!(stage["retried"], 0, "no attempt spent: {stage}");
    assert_eq!(stage["succeeded"], 0, "{stage}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(text.matches("the stage's config is invalid").count(), 1, "the problem is logged once");
    print_fault_row("plugin reports its config invalid", messages.len(), 0, 0, 0, 0, 0);
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
