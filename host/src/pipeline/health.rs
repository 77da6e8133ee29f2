//! Health and metrics: shared counters, and the HTTP endpoint that serves them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;

/// Per-stage message counters.
#[derive(Debug, Default)]
pub struct StageCounters {
    pub received: AtomicU64,
    pub succeeded: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub abandoned: AtomicU64,
}

#[derive(Debug, Serialize)]
struct StageSnapshot {
    received: u64,
    succeeded: u64,
    retried: u64,
    dead_lettered: u64,
    abandoned: u64,
    connected: bool,
}

#[derive(Default)]
pub struct Health {
    stages: Mutex<BTreeMap<String, (Arc<StageCounters>, Arc<AtomicBool>)>>,
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
        let mut healthy = true;
        let mut out = BTreeMap::new();
        for (name, (counters, connected)) in stages.iter() {
            let connected = connected.load(Ordering::Relaxed);
            healthy &= connected;
            out.insert(
                name.clone(),
                StageSnapshot {
                    received: counters.received.load(Ordering::Relaxed),
                    succeeded: counters.succeeded.load(Ordering::Relaxed),
                    retried: counters.retried.load(Ordering::Relaxed),
                    dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
                    abandoned: counters.abandoned.load(Ordering::Relaxed),
                    connected,
                },
            );
        }
        (healthy, out)
    }
}

#[derive(Serialize)]
struct Report {
    status: &'static str,
    stages: BTreeMap<String, StageSnapshot>,
}

async fn health_report(State(health): State<Arc<Health>>) -> (StatusCode, Json<Report>) {
    let (healthy, stages) = health.snapshot();
    let (code, status) =
        if healthy { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "unavailable") };
    (code, Json(Report { status, stages }))
}

/// Serve `GET /health` (503 while any stage's consumers are disconnected from the broker).
pub async fn serve(listen: SocketAddr, health: Arc<Health>, shutdown: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let app = axum::Router::new().route("/health", get(health_report)).with_state(health);
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
