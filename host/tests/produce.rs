//! Tests of `magnetar produce` against a real Pulsar broker: files are produced with
//! `produce_file` or the built binary, then read back with a consumer.
//!
//! The broker URL comes from `MAGNETAR_TEST_BROKER` (default `pulsar://127.0.0.1:6650`).
//! Start a broker with `scripts/pulsar-standalone start`. A test fails, never skips, when the
//! broker cannot be reached.
//!
//! Every test produces to its own topic, named after the test, the process id and the time.
//! It subscribes before producing, from the earliest message, so it receives every message and
//! the broker does not delete the topic as inactive.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt as _;
use magnetar::produce::{KeySource, ProduceOptions, Report, produce_file};
use pulsar::consumer::InitialPosition;
use pulsar::{ConnectionRetryOptions, Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};

const DEFAULT_BROKER_URL: &str = "pulsar://127.0.0.1:6650";

/// Limit for a whole test, so a lost message or a stuck client fails the test instead of
/// blocking the run.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Limit for connecting to the broker, including the client's own retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Time to wait for the next expected message. A standalone broker delivers within
/// milliseconds, so this only absorbs a slow machine.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a subscription must stay silent before a test concludes that no further message,
/// such as an invalid record that was sent after all, is on its way.
const QUIET_PERIOD: Duration = Duration::from_secs(1);

type TestConsumer = Consumer<Vec<u8>, TokioExecutor>;

/// Payload, key and properties of one received message.
#[derive(Debug, PartialEq, Eq)]
struct Received {
    payload: String,
    key: Option<String>,
    properties: BTreeMap<String, String>,
}

impl Received {
    fn new(payload: &str, key: Option<&str>, properties: &[(&str, &str)]) -> Received {
        Received {
            payload: payload.to_owned(),
            key: key.map(str::to_owned),
            properties: properties
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        }
    }
}

/// Runs a test body with `TEST_TIMEOUT`.
async fn with_timeout(body: impl Future<Output = ()>) {
    if tokio::time::timeout(TEST_TIMEOUT, body).await.is_err() {
        panic!("test timed out after {} s", TEST_TIMEOUT.as_secs());
    }
}

fn broker_url() -> String {
    std::env::var("MAGNETAR_TEST_BROKER").unwrap_or_else(|_| DEFAULT_BROKER_URL.to_owned())
}

/// Connects to the test broker, or fails the test with the command that starts one.
async fn connect() -> Pulsar<TokioExecutor> {
    let url = broker_url();
    let retries = ConnectionRetryOptions {
        max_retries: 2,
        connection_timeout: Duration::from_secs(5),
        ..ConnectionRetryOptions::default()
    };
    let build = Pulsar::builder(url.as_str(), TokioExecutor)
        .with_connection_retry_options(retries)
        .build();
    let hint = "Start the broker with `scripts/pulsar-standalone start`, \
                or set MAGNETAR_TEST_BROKER to the URL of a running broker.";
    match tokio::time::timeout(CONNECT_TIMEOUT, build).await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => {
            panic!("failed to connect to the Pulsar broker at {url}: {error}. {hint}")
        }
        Err(_) => panic!(
            "timed out after {} s connecting to the Pulsar broker at {url}. {hint}",
            CONNECT_TIMEOUT.as_secs()
        ),
    }
}

/// Returns a short topic name that no other test or run uses.
fn unique_topic(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock is after 1970")
        .as_nanos();
    format!("magnetar-produce-{test}-{}-{nanos}", std::process::id())
}

/// Subscribes to the short topic name `topic` in `public/default`, from the earliest message.
async fn subscribe(client: &Pulsar<TokioExecutor>, topic: &str) -> TestConsumer {
    let full_name = format!("persistent://public/default/{topic}");
    client
        .consumer()
        .with_topic(&full_name)
        .with_subscription("produce-test")
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .unwrap_or_else(|error| panic!("failed to subscribe to {full_name}: {error}"))
}

/// Receives exactly `count` messages, acknowledging each, then checks that no other message
/// arrives within `QUIET_PERIOD`.
async fn receive(consumer: &mut TestConsumer, count: usize) -> Vec<Received> {
    let mut received = Vec::with_capacity(count);
    for index in 0..count {
        let message = match tokio::time::timeout(RECEIVE_TIMEOUT, consumer.try_next()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => panic!("the consumer stream ended after {index} of {count} messages"),
            Ok(Err(error)) => panic!(
                "failed to receive message {} of {count}: {error}",
                index + 1
            ),
            Err(_) => panic!(
                "timed out after {} s waiting for message {} of {count}",
                RECEIVE_TIMEOUT.as_secs(),
                index + 1
            ),
        };
        consumer.ack(&message).await.expect("acknowledge a message");

        let metadata = message.metadata();
        received.push(Received {
            payload: String::from_utf8(message.payload.data.clone()).expect("payloads are UTF-8"),
            key: metadata.partition_key.clone(),
            properties: metadata
                .properties
                .iter()
                .map(|property| (property.key.clone(), property.value.clone()))
                .collect(),
        });
    }

    if let Ok(extra) = tokio::time::timeout(QUIET_PERIOD, consumer.try_next()).await {
        let payload = extra
            .ok()
            .flatten()
            .map(|message| String::from_utf8_lossy(&message.payload.data).into_owned());
        panic!("expected {count} messages, then got another one: {payload:?}");
    }
    received
}

fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write the input file");
    path
}

fn options(file: &Path, topic: &str) -> ProduceOptions {
    let mut options = ProduceOptions::new(file, topic);
    options.broker = broker_url();
    options
}

fn invalid_lines(report: &Report) -> Vec<String> {
    report.invalid.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn json_array_arrives_with_keys_and_properties() {
    with_timeout(async {
        let client = connect().await;
        let topic = unique_topic("json-array");
        let mut consumer = subscribe(&client, &topic).await;
        let dir = tempfile::tempdir().unwrap();
        let file = write_file(
            dir.path(),
            "movies.json",
            r#"[
  {"id": 1, "title": "Alien", "rating": 8.5},
  {"title": "No id"},
  {"id": "b-2", "nested": {"z": [1, 2.50]}, "big": 123456789012345678901234},
  {"id": 3, "b": 1, "a": "x , y"}
]
"#,
        );

        let mut options = options(&file, &topic);
        options.key = Some(KeySource::Field("id".to_owned()));
        options.properties = vec![
            ("source".to_owned(), "test".to_owned()),
            ("lang".to_owned(), "en=GB".to_owned()),
        ];
        let report = produce_file(&options).await.expect("produce the file");

        assert_eq!(report.topic, format!("persistent://public/default/{topic}"));
        assert_eq!(report.sent, 3);
        assert_eq!(report.confirmed, 3);
        assert_eq!(
            invalid_lines(&report),
            ["record 2 (line 3): key field `id` is missing"]
        );
        assert!(report.unconfirmed.is_empty(), "{:?}", report.unconfirmed);

        let properties = [("source", "test"), ("lang", "en=GB")];
        let expected = [
            Received::new(
                r#"{"id":1,"title":"Alien","rating":8.5}"#,
                Some("1"),
                &properties,
            ),
            Received::new(
                r#"{"id":"b-2","nested":{"z":[1,2.50]},"big":123456789012345678901234}"#,
                Some("b-2"),
                &properties,
            ),
            Received::new(r#"{"id":3,"b":1,"a":"x , y"}"#, Some("3"), &properties),
        ];
        assert_eq!(receive(&mut consumer, 3).await, expected);
    })
    .await;
}

#[tokio::test]
async fn json_lines_invalid_line_is_reported_not_sent() {
    with_timeout(async {
        let client = connect().await;
        let topic = unique_topic("json-lines");
        let mut consumer = subscribe(&client, &topic).await;
        let dir = tempfile::tempdir().unwrap();
        let truncated = r#"{"Title": "Heat", "Release Date": "#;
        let file = write_file(
            dir.path(),
            "movies.jsonl",
            &format!(
                "{{\"Title\": \"Alien\", \"Release Date\": \"May 25 1979\"}}\n\n{truncated}\n\
                 {{\"Title\": \"Up\", \"Release Date\": \"May 29 2009\"}}\n"
            ),
        );

        let mut options = options(&file, &topic);
        options.key = Some(KeySource::Template(
            "{Title} ({Release Date})".parse().unwrap(),
        ));
        options.batching = false;
        let report = produce_file(&options).await.expect("produce the file");

        assert_eq!(report.sent, 2);
        assert_eq!(report.confirmed, 2);
        assert_eq!(
            invalid_lines(&report),
            [format!(
                "line 3: invalid JSON at column {}: EOF while parsing a value",
                truncated.len()
            )]
        );
        assert!(report.unconfirmed.is_empty(), "{:?}", report.unconfirmed);

        let expected = [
            Received::new(
                r#"{"Title":"Alien","Release Date":"May 25 1979"}"#,
                Some("Alien (May 25 1979)"),
                &[],
            ),
            Received::new(
                r#"{"Title":"Up","Release Date":"May 29 2009"}"#,
                Some("Up (May 29 2009)"),
                &[],
            ),
        ];
        assert_eq!(receive(&mut consumer, 2).await, expected);
    })
    .await;
}

#[tokio::test]
async fn csv_rows_arrive_as_objects_of_strings() {
    with_timeout(async {
        let client = connect().await;
        let topic = unique_topic("csv");
        let mut consumer = subscribe(&client, &topic).await;
        let dir = tempfile::tempdir().unwrap();
        let file = write_file(
            dir.path(),
            "movies.csv",
            "Title,Release Date,Rating\n\
             Alien,May 25 1979,8.5\n\
             \"Heat, the film\",Dec 15 1995,\n\
             Up,May 29 2009,8.3,extra\n\
             Nope,,7\n",
        );

        let mut options = options(&file, &topic);
        options.key = Some(KeySource::Template(
            "{Title} ({Release Date})".parse().unwrap(),
        ));
        options.properties = vec![("source".to_owned(), "csv".to_owned())];
        let report = produce_file(&options).await.expect("produce the file");

        assert_eq!(report.sent, 2);
        assert_eq!(report.confirmed, 2);
        assert_eq!(
            invalid_lines(&report),
            [
                "line 4: the row has 4 fields but the header row has 3",
                "line 5: key field `Release Date` is null"
            ]
        );
        assert!(report.unconfirmed.is_empty(), "{:?}", report.unconfirmed);

        let expected = [
            Received::new(
                r#"{"Title":"Alien","Release Date":"May 25 1979","Rating":"8.5"}"#,
                Some("Alien (May 25 1979)"),
                &[("source", "csv")],
            ),
            Received::new(
                r#"{"Title":"Heat, the film","Release Date":"Dec 15 1995","Rating":null}"#,
                Some("Heat, the film (Dec 15 1995)"),
                &[("source", "csv")],
            ),
        ];
        assert_eq!(receive(&mut consumer, 2).await, expected);
    })
    .await;
}

#[tokio::test]
async fn rate_limit_spaces_messages() {
    with_timeout(async {
        let client = connect().await;
        let topic = unique_topic("rate");
        let mut consumer = subscribe(&client, &topic).await;
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (1..=5).map(|id| format!("{{\"id\": {id}}}\n")).collect();
        let file = write_file(dir.path(), "ids.jsonl", &lines);

        // At 20 messages per second, the fifth message leaves 4 / 20 s = 200 ms after the first.
        let mut options = options(&file, &topic);
        options.rate = 20.0;
        let started = Instant::now();
        let report = produce_file(&options).await.expect("produce the file");
        let elapsed = started.elapsed();

        assert_eq!(report.confirmed, 5);
        assert!(
            elapsed >= Duration::from_millis(200),
            "5 messages at 20 per second took only {elapsed:?}"
        );
        let payloads: Vec<String> = receive(&mut consumer, 5)
            .await
            .into_iter()
            .map(|message| message.payload)
            .collect();
        let expected: Vec<String> = (1..=5).map(|id| format!("{{\"id\":{id}}}")).collect();
        assert_eq!(payloads, expected);
    })
    .await;
}

#[tokio::test]
async fn truncated_json_array_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "broken.json", "[\n  {\"id\": 1},\n  {\"id\": 2");

    let error = produce_file(&options(&file, &unique_topic("truncated")))
        .await
        .expect_err("a truncated array fails the whole file");

    assert_eq!(
        error.to_string(),
        format!(
            "{}: invalid JSON at line 3, column 10: EOF while parsing an object",
            file.display()
        )
    );
}

#[tokio::test]
async fn binary_prints_summary_and_status() {
    with_timeout(async {
        let client = connect().await;
        let topic = unique_topic("binary");
        let mut consumer = subscribe(&client, &topic).await;
        let dir = tempfile::tempdir().unwrap();
        let file = write_file(dir.path(), "ids.jsonl", "{\"id\": 1}\noops\n{\"id\": 2}\n");

        let output = Command::new(env!("CARGO_BIN_EXE_magnetar"))
            .arg("produce")
            .args(["--topic", &topic, "--broker", &broker_url()])
            .args(["--key-field", "id", "--property", "run=binary"])
            .arg(&file)
            .env_remove("PULSAR_TOKEN")
            .output()
            .expect("run magnetar");

        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stdout,
            "sent 2, confirmed 2, invalid 1\nline 2: invalid JSON at column 1: expected value\n",
            "stderr: {stderr}"
        );
        assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");

        let expected = [
            Received::new(r#"{"id":1}"#, Some("1"), &[("run", "binary")]),
            Received::new(r#"{"id":2}"#, Some("2"), &[("run", "binary")]),
        ];
        assert_eq!(receive(&mut consumer, 2).await, expected);
    })
    .await;
}
