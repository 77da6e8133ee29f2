//! Health and metrics: shared counters, and the HTTP endpoints that serve them
//! (`/health` as JSON, `/metrics` in the Prometheus text format).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hdrhistogram::Histogram;
use pulsar::{Pulsar, TokioExecutor};
use serde::Serialize;
use tokio::sync::watch;

/// Largest latency the histogram tells apart (one hour, in microseconds); longer ones count
/// as this value.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Per-stage message counters.
#[derive(Debug)]
pub struct StageCounters {
    pub received: AtomicU64,
    pub succeeded: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub abandoned: AtomicU64,
    /// Time from broker publish to acknowledgement of each acknowledged message, in
    /// microseconds, to two significant digits.
    latency: Mutex<Histogram<u64>>,
    latency_sum_us: AtomicU64,
    /// Reason the stage cannot work (its plugin reported its config invalid), if any.
    problem: Mutex<Option<String>>,
    /// Whether `problem` is set, read by the consumer loop on every turn without a lock.
    has_problem: AtomicBool,
}

impl Default for StageCounters {
    fn default() -> Self {
        Self {
            received: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            latency: Mutex::new(Histogram::new_with_bounds(1, LATENCY_MAX_US, 2).expect("valid histogram bounds")),
            latency_sum_us: AtomicU64::new(0),
            problem: Mutex::new(None),
            has_problem: AtomicBool::new(false),
        }
    }
}

impl StageCounters {
    /// Records why the stage cannot work. Returns true when this is news, so the caller
    /// logs it once.
    pub fn set_problem(&self, reason: &str) -> bool {
        let mut problem = self.problem.lock().expect("problem lock poisoned");
        let news = problem.as_deref() != Some(reason);
        *problem = Some(reason.to_string());
        self.has_problem.store(true, Ordering::Relaxed);
        news
    }

    pub fn has_problem(&self) -> bool {
        self.has_problem.load(Ordering::Relaxed)
    }

    /// Record `count` acknowledged messages published at `publish_time_ms`. The broker's
    /// publish time has millisecond resolution, so each value may be up to 1 ms too long.
    pub fn record_latency(&self, publish_time_ms: u64, count: usize) {
        if count == 0 || publish_time_ms == 0 {
            return;
        }
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_micros() as u64)
            .unwrap_or(0);
        let latency_us = now_us.saturating_sub(publish_time_ms * 1000).clamp(1, LATENCY_MAX_US);
        let count = count as u64;
        self.latency_sum_us.fetch_add(latency_us * count, Ordering::Relaxed);
        let mut histogram = self.latency.lock().expect("latency lock poisoned");
        histogram.saturating_record_n(latency_us, count);
    }

    fn latency_snapshot(&self) -> LatencySnapshot {
        let histogram = self.latency.lock().expect("latency lock poisoned");
        LatencySnapshot {
            count: histogram.len(),
            sum_us: self.latency_sum_us.load(Ordering::Relaxed),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        }
    }
}

#[derive(Debug, Serialize)]
struct StageSnapshot {
    received: u64,
    succeeded: u64,
    retried: u64,
    dead_lettered: u64,
    abandoned: u64,
    connected: bool,
    /// Reason the stage is paused until the host restarts, such as an invalid `config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    /// End-to-end latency (broker publish to acknowledgement) in microseconds.
    latency_us: LatencySnapshot,
}

#[derive(Debug, Serialize)]
struct LatencySnapshot {
    count: u64,
    #[serde(skip)]
    sum_us: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
}

pub struct Health {
    stages: Mutex<BTreeMap<String, (Arc<StageCounters>, Arc<AtomicBool>)>>,
    /// Whether the last broker probe got an answer.
    broker_reachable: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self { stages: Mutex::default(), broker_reachable: AtomicBool::new(true) }
    }
}

/// How often `probe_broker` asks the broker, and how long it waits for the answer.
const PROBE_INTERVAL: Duration = Duration::from_secs(3);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Ask the broker for the owner of `topic` every few seconds until shutdown, and record
/// whether it answered. Consumers alone cannot tell: while the client reconnects in the
/// background their streams neither end nor fail, they just go quiet.
pub async fn probe_broker(pulsar: Pulsar<TokioExecutor>, topic: String, health: Arc<Health>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let answered = matches!(tokio::time::timeout(PROBE_TIMEOUT, pulsar.lookup_topic(topic.clone())).await, Ok(Ok(_)));
        let was = health.broker_reachable.swap(answered, Ordering::Relaxed);
        if was != answered {
            if answered {
                tracing::info!("broker responds again");
            } else {
                tracing::warn!(timeout = ?PROBE_TIMEOUT, "broker did not respond to a topic lookup; reporting unhealthy");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

impl Health {
    /// Register a stage; returns its counters and its "consumers connected" flag.
    pub fn register(&self, stage: &str) -> (Arc<StageCounters>, Arc<AtomicBool>) {
        let mut stages = self.stages.lock().expect("health lock poisoned");
        stages
            .entry(stage.to_string())
            .or_insert_with(|| (Arc::default(), Arc::new(AtomicBool::new(false))))
            .clone()
    }

    fn snapshot(&self) -> (bool, BTreeMap<String, StageSnapshot>) {
        let stages = self.stages.lock().expect("health lock poisoned");
        let mut healthy = self.broker_reachable.load(Ordering::Relaxed);
        let mut out = BTreeMap::new();
        for (name, (counters, connected)) in stages.iter() {
            let connected = connected.load(Ordering::Relaxed);
            let problem = counters.problem.lock().expect("problem lock poisoned").clone();
            healthy &= connected && problem.is_none();
            out.insert(
                name.clone(),
                StageSnapshot {
                    received: counters.received.load(Ordering::Relaxed),
                    succeeded: counters.succeeded.load(Ordering::Relaxed),
                    retried: counters.retried.load(Ordering::Relaxed),
                    dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
                    abandoned: counters.abandoned.load(Ordering::Relaxed),
                    connected,
                    problem,
                    latency_us: counters.latency_snapshot(),
                },
            );
        }
        (healthy, out)
    }
}

#[derive(Serialize)]
struct Report {
    status: &'static str,
    broker: &'static str,
    stages: BTreeMap<String, StageSnapshot>,
}

async fn health_report(State(health): State<Arc<Health>>) -> (StatusCode, Json<Report>) {
    let (healthy, stages) = health.snapshot();
    let (code, status) =
        if healthy { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "unavailable") };
    let broker = if health.broker_reachable.load(Ordering::Relaxed) { "reachable" } else { "unreachable" };
    (code, Json(Report { status, broker, stages }))
}

async fn metrics_report(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let (_, stages) = health.snapshot();
    let broker_reachable = health.broker_reachable.load(Ordering::Relaxed);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], prometheus_text(broker_reachable, &stages))
}

/// Render the counters in the Prometheus text exposition format.
fn prometheus_text(broker_reachable: bool, stages: &BTreeMap<String, StageSnapshot>) -> String {
    let mut out = String::new();
    out.push_str("# HELP magnetar_broker_reachable 1 while the broker answers the host's periodic topic lookup.\n");
    out.push_str("# TYPE magnetar_broker_reachable gauge\n");
    let _ = writeln!(out, "magnetar_broker_reachable {}", u8::from(broker_reachable));
    out.push_str("# HELP magnetar_messages_total Messages per stage, by what became of them.\n");
    out.push_str("# TYPE magnetar_messages_total counter\n");
    for (name, stage) in stages {
        let stage_label = escape_label(name);
        for (outcome, value) in [
            ("received", stage.received),
            ("succeeded", stage.succeeded),
            ("retried", stage.retried),
            ("dead_lettered", stage.dead_lettered),
            ("abandoned", stage.abandoned),
        ] {
            let _ = writeln!(out, "magnetar_messages_total{{stage=\"{stage_label}\",outcome=\"{outcome}\"}} {value}");
        }
    }
    out.push_str("# HELP magnetar_stage_connected 1 while the stage's consumers are connected to the broker.\n");
    out.push_str("# TYPE magnetar_stage_connected gauge\n");
    for (name, stage) in stages {
        let _ = writeln!(out, "magnetar_stage_connected{{stage=\"{}\"}} {}", escape_label(name), u8::from(stage.connected));
    }
    out.push_str("# HELP magnetar_end_to_end_latency_seconds Time from broker publish to acknowledgement.\n");
    out.push_str("# TYPE magnetar_end_to_end_latency_seconds summary\n");
    for (name, stage) in stages {
        let stage_label = escape_label(name);
        let latency = &stage.latency_us;
        for (quantile, value) in [("0.5", latency.p50), ("0.9", latency.p90), ("0.99", latency.p99)] {
            let _ = writeln!(
                out,
                "magnetar_end_to_end_latency_seconds{{stage=\"{stage_label}\",quantile=\"{quantile}\"}} {}",
                value as f64 / 1e6
            );
        }
        let _ = writeln!(out, "magnetar_end_to_end_latency_seconds_sum{{stage=\"{stage_label}\"}} {}", latency.sum_us as f64 / 1e6);
        let _ = writeln!(out, "magnetar_end_to_end_latency_seconds_count{{stage=\"{stage_label}\"}} {}", latency.count);
    }
    out
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serve `GET /health` (503 while the broker does not answer, any stage's consumers are
/// disconnected from it, or a stage has a problem) and `GET /metrics`.
pub async fn serve(listen: SocketAddr, health: Arc<Health>, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/health", get(health_report))
        .route("/metrics", get(metrics_report))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| anyhow::anyhow!("failed to listen on {listen} for the health endpoint: {error}; change `health.listen` in pipeline.yaml"))?;
    tracing::info!(%listen, "health endpoint listening");
    let mut shutdown = shutdown;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_has_counters_and_latency_per_stage() {
        let health = Health::default();
        let (counters, connected) = health.register("store \"movies\"");
        counters.received.fetch_add(3, Ordering::Relaxed);
        counters.succeeded.fetch_add(2, Ordering::Relaxed);
        connected.store(true, Ordering::Relaxed);
        let published_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            - 20;
        counters.record_latency(published_ms, 2);

        let (_, stages) = health.snapshot();
        let text = prometheus_text(true, &stages);
        let label = r#"stage="store \"movies\"""#;
        assert!(text.contains(&format!("magnetar_messages_total{{{label},outcome=\"received\"}} 3")), "{text}");
        assert!(text.contains(&format!("magnetar_messages_total{{{label},outcome=\"succeeded\"}} 2")), "{text}");
        assert!(text.contains(&format!("magnetar_stage_connected{{{label}}} 1")), "{text}");
        assert!(text.contains(&format!("magnetar_end_to_end_latency_seconds_count{{{label}}} 2")), "{text}");
        let p50 = stages["store \"movies\""].latency_us.p50;
        assert!((20_000..1_000_000).contains(&p50), "20 ms old messages gave p50 {p50} µs");
    }
}
