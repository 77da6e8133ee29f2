//! The `publish` interface: messages a stage sends to its declared outputs.
//!
//! Nothing reaches the broker from here. Messages are held in the store until the stage
//! returns; the pipeline publishes them only after success and waits for the broker's
//! receipts before it acknowledges the input.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::bindings::publish::{Error, Host, Outbound};
use crate::capability::{CallLog, CapabilityCall, record};

/// Maximum messages one call of `handle` may publish, so a runaway guest cannot buffer
/// without bound.
pub const MAX_MESSAGES_PER_CALL: usize = 1_000;

/// Maximum total payload bytes one call of `handle` may publish.
pub const MAX_BYTES_PER_CALL: usize = 16 * 1024 * 1024;

/// A message accepted from the guest, resolved to its topic.
#[derive(Debug, Clone)]
pub struct Pending {
    pub output: String,
    pub topic: String,
    pub key: Option<String>,
    pub properties: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

pub struct PublishCtx {
    /// Output name to fully qualified topic, from the stage's `outputs`.
    pub outputs: Arc<BTreeMap<String, String>>,
    pub pending: Vec<Pending>,
    pending_bytes: usize,
    pub calls: Option<CallLog>,
}

impl PublishCtx {
    pub fn new(outputs: Arc<BTreeMap<String, String>>, calls: Option<CallLog>) -> Self {
        PublishCtx { outputs, pending: Vec::new(), pending_bytes: 0, calls }
    }

    /// Take the messages held for the current call and start empty for the next one.
    pub fn take(&mut self) -> Vec<Pending> {
        self.pending_bytes = 0;
        std::mem::take(&mut self.pending)
    }

    fn accept(&mut self, message: &Outbound) -> Result<Pending, Error> {
        let output = message.output.clone().unwrap_or_else(|| "default".to_string());
        let Some(topic) = self.outputs.get(&output) else {
            let declared: Vec<&str> = self.outputs.keys().map(String::as_str).collect();
            return Err(Error::UnknownOutput(format!(
                "output `{output}` is not declared for this stage; declared outputs: [{}]",
                declared.join(", ")
            )));
        };
        if self.pending.len() >= MAX_MESSAGES_PER_CALL {
            return Err(Error::LimitExceeded(format!(
                "a stage may publish at most {MAX_MESSAGES_PER_CALL} messages per input message"
            )));
        }
        if self.pending_bytes + message.payload.len() > MAX_BYTES_PER_CALL {
            return Err(Error::LimitExceeded(format!(
                "a stage may publish at most {MAX_BYTES_PER_CALL} payload bytes per input message"
            )));
        }
        Ok(Pending {
            output,
            topic: topic.clone(),
            key: message.key.clone(),
            properties: message.properties.clone(),
            payload: message.payload.clone(),
        })
    }
}

impl Host for PublishCtx {
    async fn send(&mut self, message: Outbound) -> Result<(), Error> {
        let result = self.accept(&message);

        record(&self.calls, || CapabilityCall::Publish {
            output: message.output.clone().unwrap_or_else(|| "default".to_string()),
            key: message.key.clone(),
            properties: message.properties.clone(),
            payload: String::from_utf8_lossy(&message.payload).into_owned(),
            result: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        });

        let pending = result?;
        self.pending_bytes += pending.payload.len();
        self.pending.push(pending);
        Ok(())
    }
}
