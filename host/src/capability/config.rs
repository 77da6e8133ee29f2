//! The `config` interface: a stage's `config` section from pipeline.yaml, read-only.

use std::sync::Arc;

use crate::bindings::config::Host;

pub struct ConfigCtx {
    pub settings: Arc<serde_json::Value>,
}

impl Host for ConfigCtx {
    async fn get_json(&mut self) -> String {
        self.settings.to_string()
    }

    async fn get(&mut self, key: String) -> Option<String> {
        match self.settings.get(&key)? {
            serde_json::Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }
}
