//! Per-call limits: the epoch deadline and the memory cap, with their defaults.

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// How often the engine's epoch advances. A running guest notices its deadline within one
/// tick, so this is the resolution of every timeout; 10 ms costs nothing measurable.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Memory an instance may reach before it is replaced after its current call. Instances are
/// reused across messages; one that grew this far is usually holding on to a leak.
pub const RECYCLE_MEMORY_FRACTION: f64 = 0.75;

/// Maximum table elements per instance: far above what a compiled Rust or C guest uses.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Memory limiter for one instance, which also records what happened so a failed call can
/// be reported as a memory limit rather than a plain trap.
pub struct MemoryLimiter {
    max_memory: usize,
    /// Linear memory size of the instance, in bytes.
    pub memory_size: usize,
    /// Set when a growth request was denied because of `max_memory`.
    pub limit_hit: bool,
}

impl MemoryLimiter {
    pub fn new(max_memory: u64) -> Self {
        MemoryLimiter {
            max_memory: usize::try_from(max_memory).unwrap_or(usize::MAX),
            memory_size: 0,
            limit_hit: false,
        }
    }

    /// Whether the instance has grown past the recycle threshold.
    pub fn should_recycle(&self) -> bool {
        self.memory_size as f64 > self.max_memory as f64 * RECYCLE_MEMORY_FRACTION
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory || maximum.is_some_and(|max| desired > max) {
            self.limit_hit = true;
            return Ok(false);
        }
        self.memory_size = desired;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}

/// Number of epoch ticks that covers `timeout`, at least one.
pub fn deadline_ticks(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// Default wall-clock deadline for one call. Stages do a few database statements or send one
/// email per message; 5 s covers a slow SMTP handshake while still catching a stuck guest.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default linear memory cap per instance. A Rust guest handling a JSON record uses a few
/// MiB; 64 MiB leaves room for large records and still fits hundreds of instances in RAM.
pub const DEFAULT_MEMORY: u64 = 64 * 1024 * 1024;

/// Default maximum payload size. Larger messages are dead-lettered without calling the
/// guest. Pulsar's own default maximum message size is 5 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1024 * 1024;
