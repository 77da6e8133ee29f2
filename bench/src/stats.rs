//! End-to-end latency and message count of one run, written to a JSON stats file.
//!
//! The file reads `{"processed": N, "latency_us": {"p50": .., "p99": .., "max": ..}}`. The
//! latency of a message is the time from its publish time to its acknowledgement, in
//! microseconds. Pulsar stores the publish time in whole milliseconds, so each latency is
//! up to 1 ms too high, and the producer's clock must be this machine's.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use hdrhistogram::Histogram;

/// How often a running benchmark rewrites its stats file.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// Highest latency the histogram records, in microseconds: one hour. Longer latencies are
/// recorded as one hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Significant decimal digits of each recorded value: 3 keeps the error under 0.1 %.
const SIGNIFICANT_DIGITS: u8 = 3;

pub struct Stats {
    processed: u64,
    latency_us: Histogram<u64>,
    path: PathBuf,
}

impl Stats {
    /// Creates empty stats that [`Stats::write`] saves to `path`.
    pub fn new(path: PathBuf) -> Stats {
        let latency_us = Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
            .expect("the latency bounds are valid histogram bounds");
        Stats {
            processed: 0,
            latency_us,
            path,
        }
    }

    /// Counts one finished message that was published at `publish_time_ms`, in milliseconds
    /// since the Unix epoch.
    pub fn record(&mut self, publish_time_ms: u64) {
        let published_us = publish_time_ms.saturating_mul(1000);
        let latency = now_micros().saturating_sub(published_us);
        self.latency_us.saturating_record(latency);
        self.processed += 1;
    }

    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Writes the stats file through a temporary file and a rename, so that a reader never
    /// sees a partly written file.
    pub fn write(&self) -> anyhow::Result<()> {
        let json = serde_json::json!({
            "processed": self.processed,
            "latency_us": {
                "p50": self.latency_us.value_at_quantile(0.5),
                "p99": self.latency_us.value_at_quantile(0.99),
                "max": self.latency_us.max(),
            },
        });

        let mut temporary = OsString::from(self.path.as_os_str());
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, format!("{json}\n"))
            .with_context(|| format!("failed to write {}", temporary.display()))?;
        std::fs::rename(&temporary, &self.path).with_context(|| {
            format!(
                "failed to rename {} to {}",
                temporary.display(),
                self.path.display()
            )
        })
    }

    /// Writes the stats file, and logs a failure instead of returning it, for the periodic
    /// writes of a running benchmark.
    pub fn write_or_log(&self) {
        if let Err(error) = self.write() {
            tracing::error!(
                error = format!("{error:#}"),
                "failed to write the stats file"
            );
        }
    }
}

fn now_micros() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}
