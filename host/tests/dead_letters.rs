//! Dead letter topics under `magnetar run`, against the real broker: a stage's
//! `dead_letter_subscription` exists before the first dead letter and retains every one, and
//! a dead letter topic that nothing reads is reported.

mod support;

use std::time::Duration;

use support::*;

/// Returns the backlog of `subscription` on `topic`, or `None` while the subscription does
/// not exist.
fn subscription_backlog(topic: &str, subscription: &str) -> Option<u64> {
    let (status, body) = http_request(admin_port(), "GET", &format!("/admin/v2/persistent/public/default/{topic}/stats"), "")
        .expect("GET topic stats from the broker's admin API");
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "stats of {topic}: {body}");
    let stats: serde_json::Value = serde_json::from_str(&body).expect("topic stats are JSON");
    stats["subscriptions"][subscription]["msgBacklog"].as_u64()
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_subscription_keeps_dead_letters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suffix = unique_suffix();
    let input = format!("dl-in-{suffix}");
    let dead_letters = format!("dl-failed-{suffix}");
    let unread = format!("dl-unread-{suffix}");
    let yaml = format!(
        r#"
broker:
  url: {broker}
health:
  listen: "off"
stages:
  - name: kept
    plugin: {hostile}
    inputs: [{input}]
    grants: [publish]
    outputs: {{ default: dl-out-{suffix} }}
    dead_letter: {dead_letters}
    dead_letter_subscription: review
    retry_topic: dl-retry-{suffix}
  - name: unread
    plugin: {hostile}
    inputs: [dl-other-{suffix}]
    grants: [publish]
    outputs: {{ default: dl-other-out-{suffix} }}
    dead_letter: {unread}
    retry_topic: dl-other-retry-{suffix}
"#,
        broker = broker_url(),
        hostile = plugin("hostile.wasm").display(),
    );
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(&pipeline, yaml).expect("write pipeline.yaml");
    let log = dir.path().join("host.log");
    let host = Host::start(&pipeline, &log);

    wait_until(Duration::from_secs(60), &log, "the dead letter subscription", || async {
        subscription_backlog(&dead_letters, "review").is_some()
    })
    .await;
    assert_eq!(subscription_backlog(&dead_letters, "review"), Some(0), "no dead letters yet");

    let pulsar = connect().await;
    let failing: Vec<(String, Vec<(String, String)>)> =
        ["permanent", "not a known behaviour", "permanent"].iter().map(|payload| (payload.to_string(), Vec::new())).collect();
    produce(&pulsar, &input, &failing).await;
    wait_until(Duration::from_secs(60), &log, "three dead letters held for `review`", || async {
        subscription_backlog(&dead_letters, "review") == Some(3)
    })
    .await;

    let status = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit status: {status}");
    let log_text = std::fs::read_to_string(&log).expect("read host log");
    let warnings: Vec<&str> = log_text.lines().filter(|line| line.contains("no stage of this pipeline reads this dead letter topic")).collect();
    assert_eq!(warnings.len(), 1, "one warning, for stage `unread`: {warnings:?}");
    assert!(warnings[0].contains(&unread), "the warning names the topic: {}", warnings[0]);
    assert_eq!(
        subscription_backlog(&dead_letters, "review"),
        Some(3),
        "the subscription outlives the host and keeps the dead letters"
    );
}
