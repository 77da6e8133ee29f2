//! Host capabilities: one module per WIT interface.
//!
//! Each module has a small context type that implements the generated `Host` trait. A stage's
//! store holds one context per granted interface. When a [`CallLog`] is attached (the plugin
//! test harness and `magnetar test` do this), every call is recorded with its result.

pub mod config;
pub mod database;
pub mod log;
pub mod mail;
pub mod publish;

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One capability call made by a guest, as recorded for tests and `magnetar test`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "capability", rename_all = "kebab-case")]
pub enum CapabilityCall {
    Database {
        statement: String,
        params: Vec<serde_json::Value>,
        result: Result<serde_json::Value, String>,
    },
    Mail {
        to: Vec<String>,
        cc: Vec<String>,
        subject: String,
        message_id: Option<String>,
        result: Result<(), String>,
    },
    Publish {
        output: String,
        key: Option<String>,
        properties: Vec<(String, String)>,
        payload: String,
        result: Result<(), String>,
    },
    Log {
        level: String,
        message: String,
        fields: Vec<(String, String)>,
    },
}

/// Shared record of capability calls. Cloning shares the same record.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<CapabilityCall>>>);

impl CallLog {
    pub fn push(&self, call: CapabilityCall) {
        self.0.lock().expect("call log lock poisoned").push(call);
    }

    /// Remove and return every call recorded so far.
    pub fn take(&self) -> Vec<CapabilityCall> {
        std::mem::take(&mut *self.0.lock().expect("call log lock poisoned"))
    }
}

/// Record `call` when a log is attached; build the call only in that case.
pub(crate) fn record(calls: &Option<CallLog>, call: impl FnOnce() -> CapabilityCall) {
    if let Some(calls) = calls {
        calls.push(call());
    }
}
