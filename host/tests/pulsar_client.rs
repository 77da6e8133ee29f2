//! Checks what the `pulsar` crate (6.9.1) does against a real broker: producer
//! batching, a Shared subscription with two consumers, acknowledgements and
//! negative acknowledgements.
//!
//! The broker URL comes from `MAGNETAR_TEST_BROKER` (default
//! `pulsar://127.0.0.1:6650`). `scripts/test` starts a broker before it runs
//! these tests. To run them alone, start one with
//! `scripts/pulsar-standalone start`. A test fails, never skips, when the
//! broker cannot be reached.
//!
//! Every test creates its own topics, named after the test, the process id and
//! the time, so runs against a long-lived broker never see each other's
//! messages.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use pulsar::consumer::{InitialPosition, Message};
use pulsar::proto::MessageIdData;
use pulsar::{
    ConnectionRetryOptions, Consumer, ConsumerOptions, Producer, ProducerOptions, Pulsar, SubType,
    TokioExecutor,
};

const DEFAULT_BROKER_URL: &str = "pulsar://127.0.0.1:6650";

/// Limit for a whole test, so a lost message or a stuck client fails the test
/// instead of blocking the run.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Limit for connecting to the broker, including the client's own retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Time to wait for the next expected message. A standalone broker delivers
/// within milliseconds, so this only absorbs a slow machine.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a subscription must stay silent before a test concludes that no
/// further message (such as a duplicate) is on its way.
const QUIET_PERIOD: Duration = Duration::from_secs(2);

/// Flow permits of each consumer (`with_batch_size` in the crate). The broker's
/// Shared dispatcher (PersistentDispatcherMultipleConsumers) sends a consumer at
/// most its available permits before it turns to the next consumer, so small
/// permits spread the messages over both consumers.
const CONSUMER_PERMITS: u32 = 4;

type TestConsumer = Consumer<Vec<u8>, TokioExecutor>;

/// Content of one produced message, which the consumer side must see unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    payload: String,
    key: Option<String>,
    properties: BTreeMap<String, String>,
}

impl Record {
    fn new(producer: &str, index: usize) -> Record {
        let properties = BTreeMap::from([
            ("producer".to_owned(), producer.to_owned()),
            ("index".to_owned(), index.to_string()),
        ]);
        Record {
            payload: format!("{producer}-payload-{index}"),
            key: Some(format!("{producer}-key-{index}")),
            properties,
        }
    }

    fn of_message(message: &Message<Vec<u8>>) -> Record {
        let metadata = message.metadata();
        Record {
            payload: String::from_utf8(message.payload.data.clone())
                .expect("test payloads are UTF-8"),
            key: metadata.partition_key.clone(),
            properties: metadata
                .properties
                .iter()
                .map(|property| (property.key.clone(), property.value.clone()))
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
    // The default policy retries 12 times with a backoff that grows to 30 s,
    // which hides a broker that is not running for minutes.
    let retries = ConnectionRetryOptions {
        max_retries: 2,
        connection_timeout: Duration::from_secs(5),
        ..ConnectionRetryOptions::default()
    };
    let build = Pulsar::builder(url.as_str(), TokioExecutor)
        .with_connection_retry_options(retries)
        .build();
    let hint = "start the broker with scripts/pulsar-standalone start, \
                or set MAGNETAR_TEST_BROKER to the URL of a running broker";
    match tokio::time::timeout(CONNECT_TIMEOUT, build).await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => {
            panic!("failed to connect to the Pulsar broker at {url}: {error}; {hint}")
        }
        Err(_) => panic!(
            "timed out after {} s connecting to the Pulsar broker at {url}; {hint}",
            CONNECT_TIMEOUT.as_secs()
        ),
    }
}

/// Returns a topic name that no other test or run uses.
fn unique_topic(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock is after 1970")
        .as_nanos();
    format!(
        "persistent://public/default/magnetar-{test}-{}-{nanos}",
        std::process::id()
    )
}

async fn shared_consumer(
    client: &Pulsar<TokioExecutor>,
    topic: &str,
    subscription: &str,
    name: &str,
) -> TestConsumer {
    client
        .consumer()
        .with_topic(topic)
        .with_subscription(subscription)
        .with_subscription_type(SubType::Shared)
        .with_consumer_name(name)
        .with_batch_size(CONSUMER_PERMITS)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .unwrap_or_else(|error| panic!("failed to subscribe {name} to {topic}: {error}"))
}

/// Creates a producer. `batch_size` `Some(n)` with n > 1 turns batching on, and
/// `None` leaves it off.
async fn producer(
    client: &Pulsar<TokioExecutor>,
    topic: &str,
    name: &str,
    batch_size: Option<u32>,
) -> Producer<TokioExecutor> {
    let options = ProducerOptions {
        batch_size,
        ..ProducerOptions::default()
    };
    client
        .producer()
        .with_topic(topic)
        .with_name(format!("{name}-{}", std::process::id()))
        .with_options(options)
        .build()
        .await
        .unwrap_or_else(|error| panic!("failed to create producer {name} on {topic}: {error}"))
}

/// Sends all records and waits for every receipt. Without a `batch_timeout`, a
/// batching producer sends a partial batch only on `send_batch`, so this
/// function flushes the remainder explicitly.
async fn send_all(producer: &mut Producer<TokioExecutor>, records: &[Record]) {
    let mut receipts = Vec::with_capacity(records.len());
    for record in records {
        let mut message = producer
            .create_message()
            .with_content(record.payload.clone().into_bytes());
        if let Some(key) = &record.key {
            message = message.with_key(key.clone());
        }
        for (name, value) in &record.properties {
            message = message.with_property(name.clone(), value.clone());
        }
        let receipt = message
            .send_non_blocking()
            .await
            .unwrap_or_else(|error| panic!("failed to queue {}: {error}", record.payload));
        receipts.push(receipt);
    }
    if producer.options().batch_size.is_some_and(|size| size > 1) {
        producer
            .send_batch()
            .await
            .expect("failed to flush the last batch");
    }
    for (record, receipt) in records.iter().zip(receipts) {
        receipt
            .await
            .unwrap_or_else(|error| panic!("broker did not confirm {}: {error}", record.payload));
    }
}

/// Waits for the next message on either consumer and returns the index of the
/// consumer that received it. Returns `None` when nothing arrives within `wait`.
async fn receive_from_either(
    consumers: &mut [TestConsumer; 2],
    wait: Duration,
) -> Option<(usize, Message<Vec<u8>>)> {
    let [first, second] = consumers;
    let next = async {
        tokio::select! {
            message = first.try_next() => (0, message),
            message = second.try_next() => (1, message),
        }
    };
    let (index, message) = tokio::time::timeout(wait, next).await.ok()?;
    match message {
        Ok(Some(message)) => Some((index, message)),
        Ok(None) => panic!("consumer {index} stream ended"),
        Err(error) => panic!("consumer {index} failed to receive: {error}"),
    }
}

/// Waits for the next message on `consumer`. Returns `None` when nothing
/// arrives within `wait`.
async fn receive_within(consumer: &mut TestConsumer, wait: Duration) -> Option<Message<Vec<u8>>> {
    match tokio::time::timeout(wait, consumer.try_next()).await.ok()? {
        Ok(Some(message)) => Some(message),
        Ok(None) => panic!("consumer stream ended"),
        Err(error) => panic!("consumer failed to receive: {error}"),
    }
}

async fn receive_one(consumer: &mut TestConsumer) -> Message<Vec<u8>> {
    receive_within(consumer, RECEIVE_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no message arrived within {} s", RECEIVE_TIMEOUT.as_secs()))
}

/// Position of the broker entry, which is the whole batch for a batched message.
fn entry_of(id: &MessageIdData) -> (u64, u64) {
    (id.ledger_id, id.entry_id)
}

/// Polls the broker's statistics of the consumer until its count of
/// unacknowledged messages drops below `before`, and returns the new count.
/// The count drops once the broker has processed an acknowledgement, whatever
/// the acknowledgement covered.
async fn wait_for_unacked_below(consumer: &mut TestConsumer, before: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + RECEIVE_TIMEOUT;
    loop {
        let stats = consumer
            .get_stats()
            .await
            .expect("failed to read consumer statistics");
        let unacked = stats[0]
            .unacked_messages
            .expect("broker reports unacked_messages");
        if unacked < before {
            return unacked;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker still counts {unacked} unacknowledged messages {} s after the ack",
            RECEIVE_TIMEOUT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_delivers_each_message_once() {
    with_timeout(async {
        let client = connect().await;
        let topic = unique_topic("shared-once");
        // Consumers subscribe before anything is produced, so Earliest and
        // Latest would both see every message. Earliest makes that explicit.
        let mut consumers = [
            shared_consumer(&client, &topic, "shared", "consumer-0").await,
            shared_consumer(&client, &topic, "shared", "consumer-1").await,
        ];

        // 25 messages in batches of up to 10: two full batches and a partial one.
        let batched: Vec<Record> = (0..25).map(|index| Record::new("batched", index)).collect();
        let single: Vec<Record> = (0..10).map(|index| Record::new("single", index)).collect();
        let mut batching_producer = producer(&client, &topic, "batched", Some(10)).await;
        let mut single_producer = producer(&client, &topic, "single", None).await;
        send_all(&mut batching_producer, &batched).await;
        send_all(&mut single_producer, &single).await;

        let expected: HashMap<String, Record> = batched
            .iter()
            .chain(&single)
            .map(|record| (record.payload.clone(), record.clone()))
            .collect();
        let mut received: HashMap<String, Vec<MessageIdData>> = HashMap::new();
        let mut per_consumer = [0usize; 2];
        for count in 0..expected.len() {
            let (index, message) = receive_from_either(&mut consumers, RECEIVE_TIMEOUT)
                .await
                .unwrap_or_else(|| {
                    panic!(
                        "received {count} of {} messages, then nothing for {} s",
                        expected.len(),
                        RECEIVE_TIMEOUT.as_secs()
                    )
                });
            consumers[index].ack(&message).await.expect("failed to ack");
            per_consumer[index] += 1;

            let record = Record::of_message(&message);
            let sent = expected
                .get(&record.payload)
                .unwrap_or_else(|| panic!("received a message that no producer sent: {record:?}"));
            assert_eq!(
                &record, sent,
                "message content, key or properties changed in transit"
            );
            received
                .entry(record.payload)
                .or_default()
                .push(message.message_id().clone());
        }

        let duplicates: Vec<_> = received.iter().filter(|(_, ids)| ids.len() > 1).collect();
        assert!(
            duplicates.is_empty(),
            "messages delivered more than once: {duplicates:?}"
        );
        assert_eq!(received.len(), expected.len(), "distinct messages received");
        if let Some((index, late)) = receive_from_either(&mut consumers, QUIET_PERIOD).await {
            panic!(
                "consumer {index} received an extra message after all were acked: {:?}",
                Record::of_message(&late)
            );
        }

        // The batching producer really batched: its messages carry a batch
        // index, and the 25 messages share three broker entries.
        for record in &batched {
            let id = &received[&record.payload][0];
            assert!(
                id.batch_index.is_some(),
                "{} has no batch index: {id:?}",
                record.payload
            );
        }
        let batch_entries: std::collections::BTreeSet<_> = batched
            .iter()
            .map(|record| entry_of(&received[&record.payload][0]))
            .collect();
        assert_eq!(
            batch_entries.len(),
            3,
            "entries holding the 25 batched messages"
        );
        for record in &single {
            let id = &received[&record.payload][0];
            assert_eq!(
                id.batch_index, None,
                "{} from the non-batching producer has a batch index",
                record.payload
            );
        }

        assert!(
            per_consumer[0] > 0,
            "consumer-0 received nothing, so the subscription was not shared: {per_consumer:?}"
        );
        assert!(
            per_consumer[1] > 0,
            "consumer-1 received nothing, so the subscription was not shared: {per_consumer:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_redelivers_same_message() {
    with_timeout(async {
        let client = connect().await;
        let topic = unique_topic("nack");
        let mut consumers = [
            shared_consumer(&client, &topic, "shared", "consumer-0").await,
            shared_consumer(&client, &topic, "shared", "consumer-1").await,
        ];
        let sent = Record::new("single", 0);
        send_all(
            &mut producer(&client, &topic, "single", None).await,
            std::slice::from_ref(&sent),
        )
        .await;

        let (first_index, first) = receive_from_either(&mut consumers, RECEIVE_TIMEOUT)
            .await
            .expect("the produced message did not arrive");
        assert_eq!(Record::of_message(&first), sent, "first delivery");
        consumers[first_index]
            .nack(&first)
            .await
            .expect("failed to nack");

        // In a Shared subscription the broker may hand the redelivery to
        // either consumer.
        let (again_index, again) = receive_from_either(&mut consumers, RECEIVE_TIMEOUT)
            .await
            .expect("the nacked message was not redelivered");
        assert_eq!(
            Record::of_message(&again),
            sent,
            "redelivered content, key or properties"
        );
        assert_eq!(
            again.message_id(),
            first.message_id(),
            "redelivered message id"
        );
        consumers[again_index]
            .ack(&again)
            .await
            .expect("failed to ack");

        if let Some((index, late)) = receive_from_either(&mut consumers, QUIET_PERIOD).await {
            panic!(
                "consumer {index} received a message after the redelivery was acked: {:?}",
                Record::of_message(&late)
            );
        }
    })
    .await;
}

/// Produces one batch of five messages followed by one unbatched marker
/// message, and receives all six on a fresh Shared subscription.
async fn batch_then_marker(
    client: &Pulsar<TokioExecutor>,
    test: &str,
) -> (TestConsumer, Vec<Message<Vec<u8>>>, Message<Vec<u8>>) {
    let topic = unique_topic(test);
    let mut consumer = shared_consumer(client, &topic, "shared", "consumer-0").await;
    let batch: Vec<Record> = (0..5).map(|index| Record::new("batched", index)).collect();
    send_all(
        &mut producer(client, &topic, "batched", Some(10)).await,
        &batch,
    )
    .await;
    let marker = Record::new("marker", 0);
    send_all(
        &mut producer(client, &topic, "marker", None).await,
        std::slice::from_ref(&marker),
    )
    .await;

    let mut members = Vec::new();
    for record in &batch {
        let message = receive_one(&mut consumer).await;
        assert_eq!(
            &Record::of_message(&message),
            record,
            "batch member in production order"
        );
        members.push(message);
    }
    let first_entry = entry_of(members[0].message_id());
    for (index, member) in members.iter().enumerate() {
        assert_eq!(
            entry_of(member.message_id()),
            first_entry,
            "batch member {index} is in the batch's entry"
        );
        assert_eq!(
            member.message_id().batch_index,
            Some(index as i32),
            "batch index of member {index}"
        );
    }
    let marker_message = receive_one(&mut consumer).await;
    assert_eq!(
        Record::of_message(&marker_message),
        marker,
        "marker after the batch"
    );
    (consumer, members, marker_message)
}

/// Receives on `consumer` until the marker message arrives, and returns the
/// payloads that came before it.
async fn payloads_before_marker(consumer: &mut TestConsumer) -> Vec<String> {
    let mut payloads = Vec::new();
    loop {
        let record = Record::of_message(&receive_one(consumer).await);
        if record.payload.starts_with("marker-") {
            return payloads;
        }
        payloads.push(record.payload);
    }
}

// Finding, with pulsar 6.9.1 and a Pulsar 4.0.8 standalone broker: acking one
// message of a batch acknowledges the whole batch on the broker. The crate
// sends the id with a batch index but without an ack set, so the broker
// acknowledges the entry, and the other four messages never come back although
// they were not acked. The result is the same whether the broker's
// acknowledgmentAtBatchIndexLevelEnabled is false (the default, used by
// scripts/pulsar-standalone) or true, because the broker tracks single batch
// indexes only from the ack sets that a client sends. So a consumer that acks
// each message after success would lose the failed members of a batch in which
// another member succeeded, unless producers disable batching or the consumer
// acks a batch only after all its members succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_of_one_batch_member_acks_whole_batch() {
    with_timeout(async {
        let client = connect().await;
        let (mut consumer, members, _marker) = batch_then_marker(&client, "batch-ack").await;

        consumer.ack(&members[0]).await.expect("failed to ack");
        // The broker counted five batch members and the marker as unacked.
        let unacked = wait_for_unacked_below(&mut consumer, 6).await;
        assert_eq!(
            unacked, 1,
            "unacked messages after acking batch member 0 (only the marker remains)"
        );

        consumer
            .close()
            .await
            .expect("failed to close the consumer");
        drop(consumer);
        let topic = members[0].topic.clone();
        let mut again = shared_consumer(&client, &topic, "shared", "consumer-again").await;

        // Unacked messages come back in position order, so every batch member
        // that the broker still counts as unacked arrives before the marker.
        let redelivered = payloads_before_marker(&mut again).await;
        assert_eq!(
            redelivered,
            Vec::<String>::new(),
            "batch members redelivered after acking member 0 only"
        );
    })
    .await;
}

// Finding, with the same crate and broker, and again with either value of
// acknowledgmentAtBatchIndexLevelEnabled: a nack of one batch member makes the
// broker redeliver the whole entry, so all five members arrive again,
// including the four that were neither acked nor nacked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_of_one_batch_member_redelivers_whole_batch() {
    with_timeout(async {
        let client = connect().await;
        let (mut consumer, members, marker) = batch_then_marker(&client, "batch-nack").await;
        consumer
            .ack(&marker)
            .await
            .expect("failed to ack the marker");

        consumer.nack(&members[1]).await.expect("failed to nack");
        let mut redelivered = Vec::new();
        while let Some(message) = receive_within(&mut consumer, QUIET_PERIOD).await {
            redelivered.push(Record::of_message(&message).payload);
        }
        let batch: Vec<String> = members
            .iter()
            .map(|member| Record::of_message(member).payload)
            .collect();
        assert_eq!(
            redelivered, batch,
            "messages redelivered after nacking batch member 1"
        );
    })
    .await;
}
