//! The `log` interface: guest log records go to the host's `tracing` output, tagged with the stage.

use crate::bindings::log::{Host, Level};
use crate::capability::{CallLog, CapabilityCall, record};

pub struct LogCtx {
    pub stage: String,
    pub calls: Option<CallLog>,
}

impl Host for LogCtx {
    async fn write(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        // tracing needs static field names, so guest fields travel as one formatted value.
        let rendered = render_fields(&fields);
        let stage = self.stage.as_str();
        match level {
            Level::Trace => tracing::trace!(stage, fields = %rendered, "{message}"),
            Level::Debug => tracing::debug!(stage, fields = %rendered, "{message}"),
            Level::Info => tracing::info!(stage, fields = %rendered, "{message}"),
            Level::Warn => tracing::warn!(stage, fields = %rendered, "{message}"),
            Level::Error => tracing::error!(stage, fields = %rendered, "{message}"),
        }

        record(&self.calls, || CapabilityCall::Log {
            level: level_name(level).to_string(),
            message,
            fields,
        });
    }
}

fn render_fields(fields: &[(String, String)]) -> String {
    let pairs: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    pairs.join(" ")
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}
