//! Magnetar runs pipelines of sandboxed WebAssembly components over Apache Pulsar.
//!
//! # Layout
//!
//! - [`config`]: `pipeline.yaml`, loaded and validated in full before anything starts.
//! - [`bindings`]: host bindings generated from the WIT package in `wit/`.
//! - [`runtime`]: the wasmtime engine, the component cache, per-stage instance pools and the
//!   limits every call runs under.
//! - [`capability`]: one module per WIT interface (database, mail, publish, log, config).
//! - [`pipeline`]: Pulsar consumers and producers, and the ack, retry and dead-letter path
//!   of each message.
//! - [`harness`]: runs a plugin against real capabilities without a broker, for plugin tests
//!   and `magnetar test`.
//! - [`check`], [`cli_test`], [`produce`]: the `check`, `test` and `produce` commands.

pub mod bindings;
pub mod capability;
pub mod check;
pub mod cli_test;
pub mod config;
pub mod harness;
pub mod pipeline;
pub mod produce;
pub mod runtime;
