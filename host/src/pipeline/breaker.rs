//! Circuit breakers for shared capability backends.
//!
//! When a stage fails transiently and its backend does not answer a probe, the breaker opens:
//! the stages that use the backend stop pulling messages, the failed message waits in the
//! host without spending an attempt, and a prober checks the backend with backoff until it
//! answers again. Messages wait in the subscription meanwhile, so an outage does not flood
//! the dead-letter topic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::capability::database::Database;
use crate::capability::mail::Mailer;

/// First wait between probes of a backend that is down.
const PROBE_INITIAL: Duration = Duration::from_millis(500);
/// Longest wait between probes, so recovery is noticed within this time.
const PROBE_MAX: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub enum Backend {
    Database(Database),
    Mail(Mailer),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Database(_) => "database",
            Backend::Mail(_) => "mail",
        }
    }

    async fn answers(&self) -> bool {
        match self {
            Backend::Database(db) => db.ping().await.is_ok(),
            Backend::Mail(mailer) => mailer.test_connection().await,
        }
    }
}

pub struct Breaker {
    backend: Backend,
    open: AtomicBool,
    closed: Notify,
}

impl Breaker {
    pub fn new(backend: Backend) -> Arc<Breaker> {
        Arc::new(Breaker { backend, open: AtomicBool::new(false), closed: Notify::new() })
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Probe the backend after a transient failure. Returns false, and opens the breaker,
    /// when the backend does not answer.
    pub async fn check(self: &Arc<Self>) -> bool {
        if self.is_open() {
            return false;
        }
        if self.backend.answers().await {
            return true;
        }
        if !self.open.swap(true, Ordering::AcqRel) {
            tracing::warn!(backend = self.backend.name(), "backend does not answer; pausing the stages that use it");
            let breaker = self.clone();
            tokio::spawn(async move { breaker.probe_until_closed().await });
        }
        false
    }

    /// Wait until the breaker is closed.
    pub async fn wait_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if !self.is_open() {
                return;
            }
            notified.await;
        }
    }

    async fn probe_until_closed(&self) {
        let mut wait = PROBE_INITIAL;
        loop {
            tokio::time::sleep(wait).await;
            if self.backend.answers().await {
                self.open.store(false, Ordering::Release);
                self.closed.notify_waiters();
                tracing::info!(backend = self.backend.name(), "backend answers again; resuming");
                return;
            }
            wait = (wait * 2).min(PROBE_MAX);
        }
    }
}
