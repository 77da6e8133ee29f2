//! Hostile guests against the runtime: each failure is contained, reported with its kind,
//! and the next message runs on a healthy instance.

mod support;

use std::time::{Duration, Instant};

use magnetar::harness::{Harness, Outcome};
use magnetar::runtime::FailureKind;
use support::plugin;

async fn hostile(timeout: Duration, memory: u64) -> Harness {
    Harness::builder(plugin("hostile.wasm"))
        .grants(["publish"])
        .timeout(timeout)
        .memory(memory)
        .build()
        .await
        .expect("load the hostile guest")
}

async fn run(harness: &Harness, payload: &str) -> Outcome {
    harness.handle(Harness::message(payload.as_bytes().to_vec())).await
}

fn kind(outcome: &Outcome) -> FailureKind {
    match &outcome.result {
        Ok(_) => panic!("expected a failure, got success"),
        Err(failure) => failure.kind,
    }
}

#[tokio::test]
async fn infinite_loop_ends_at_deadline() {
    let harness = hostile(Duration::from_millis(300), 32 << 20).await;
    let started = Instant::now();
    let outcome = run(&harness, "loop").await;
    assert_eq!(kind(&outcome), FailureKind::Timeout);
    // Generous bound: this checks that the call was interrupted, not how fast.
    assert!(started.elapsed() < Duration::from_secs(10), "the loop was interrupted");
    assert!(run(&harness, "ok").await.result.is_ok(), "the next message succeeds");
}

#[tokio::test]
async fn memory_bomb_hits_limit() {
    let harness = hostile(Duration::from_secs(10), 16 << 20).await;
    let outcome = run(&harness, "alloc").await;
    assert_eq!(kind(&outcome), FailureKind::MemoryLimit);
    let reason = &outcome.result.as_ref().unwrap_err().reason;
    assert!(reason.contains("limits.memory"), "reason names the setting to raise: {reason}");
    assert!(run(&harness, "ok").await.result.is_ok(), "the next message succeeds");
}

#[tokio::test]
async fn panic_replaces_instance() {
    let harness = hostile(Duration::from_secs(5), 32 << 20).await;
    let outcome = run(&harness, "panic").await;
    assert_eq!(kind(&outcome), FailureKind::Trap);
    for _ in 0..3 {
        assert!(run(&harness, "ok").await.result.is_ok(), "messages after the trap succeed");
    }
}

#[tokio::test]
async fn failures_are_values_not_traps() {
    let harness = hostile(Duration::from_secs(5), 32 << 20).await;
    assert_eq!(kind(&run(&harness, "transient").await), FailureKind::Transient);
    assert_eq!(kind(&run(&harness, "permanent").await), FailureKind::Permanent);
}

#[tokio::test]
async fn publish_is_held_until_success() {
    let harness = hostile(Duration::from_secs(5), 32 << 20).await;
    let published = run(&harness, "publish").await.result.expect("publish succeeds");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].payload, b"publish");
    assert_eq!(published[0].topic, magnetar::harness::TEST_OUTPUT_TOPIC);
}

#[tokio::test]
async fn ungranted_import_rejected_at_load() {
    let error = Harness::builder(plugin("needs_mail.wasm"))
        .grants(["publish"])
        .build()
        .await
        .err()
        .expect("a plugin importing mail without the grant must not load");
    let message = format!("{error:#}");
    assert!(message.contains("`mail`"), "names the interface: {message}");
    assert!(message.contains("grants"), "names the fix: {message}");
}
