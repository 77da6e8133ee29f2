//! Shared helpers for the tests that run `magnetar run` against the real broker.

#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pulsar::producer::Message as OutboundMessage;
use pulsar::{Pulsar, TokioExecutor};

pub fn broker_url() -> String {
    std::env::var("MAGNETAR_TEST_BROKER").unwrap_or_else(|_| "pulsar://127.0.0.1:6650".to_string())
}

pub async fn connect() -> Pulsar<TokioExecutor> {
    let url = broker_url();
    match tokio::time::timeout(Duration::from_secs(20), Pulsar::builder(url.clone(), TokioExecutor).build()).await {
        Ok(Ok(pulsar)) => pulsar,
        Ok(Err(error)) => {
            panic!("cannot connect to the Pulsar broker at {url} ({error}); start it with `scripts/pulsar-standalone start`")
        }
        Err(_) => panic!("timed out connecting to the Pulsar broker at {url}; start it with `scripts/pulsar-standalone start`"),
    }
}

/// Path of a guest component built by `scripts/build-plugins`.
pub fn plugin(file: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("wasm32-wasip2/release").join(file);
    assert!(path.exists(), "{} is missing; build the plugins with `scripts/build-plugins`", path.display());
    path
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// A suffix that keeps topic names of different runs apart.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{}", std::process::id(), nanos % 1_000_000_000)
}

pub async fn produce(pulsar: &Pulsar<TokioExecutor>, topic: &str, payloads: &[(String, Vec<(String, String)>)]) {
    let mut producer = pulsar.producer().with_topic(topic).build().await.expect("create producer");
    for (payload, properties) in payloads {
        let message = OutboundMessage {
            payload: payload.clone().into_bytes(),
            properties: properties.iter().cloned().collect(),
            ..Default::default()
        };
        producer.send_non_blocking(message).await.expect("send").await.expect("broker receipt");
    }
}

/// A `magnetar run` child process that is killed when dropped.
pub struct Host {
    pub child: Child,
}

impl Host {
    pub fn start(pipeline: &Path, log: &Path) -> Host {
        let log_file = std::fs::File::create(log).expect("create host log");
        let child = Command::new(env!("CARGO_BIN_EXE_magnetar"))
            .args(["run", pipeline.to_str().unwrap(), "--grace", "20"])
            .env("RUST_LOG", "info,magnetar=debug")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start magnetar run");
        Host { child }
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("send SIGTERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for host") {
                return status;
            }
            assert!(Instant::now() < deadline, "host did not exit within {within:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` until it returns true or `within` passes; on timeout, panic with the host log.
pub async fn wait_until<F, Fut>(within: Duration, log: &Path, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = log_text.lines().rev().take(40).collect();
    panic!("timed out after {within:?} waiting for {what}; host log tail:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
}

pub async fn count(pool: &sqlx::SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or(-1)
}

/// Message-ID headers of the emails in a file outbox.
pub fn outbox_message_ids(outbox: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(outbox) else { return Vec::new() };
    let mut ids = Vec::new();
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|ext| ext == "eml") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let id = text
                .lines()
                .find(|line| line.to_ascii_lowercase().starts_with("message-id:"))
                .map(|line| line["message-id:".len()..].trim().to_string())
                .unwrap_or_default();
            ids.push(id);
        }
    }
    ids
}

/// The db-writer's `config` section from the project's pipeline.yaml, so tests store movies
/// exactly as the shipped pipeline does.
pub fn db_writer_config_yaml() -> String {
    let text = std::fs::read_to_string(repo_root().join("pipeline.yaml")).expect("read pipeline.yaml");
    let after = text.split("    config:\n").nth(1).expect("db-writer config section");
    let section = after.split("\n  - name:").next().expect("end of section");
    section.to_string()
}
