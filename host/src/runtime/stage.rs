//! One stage's runtime: its linker, pre-instantiated component and pool of reusable instances.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;

use crate::bindings::{self, Stage, StagePre, types::Failure, types::Message};
use crate::capability::{
    CallLog, config::ConfigCtx, database::Database, database::DatabaseCtx, log::LogCtx, mail::MailCtx,
    mail::Mailer, publish::Pending, publish::PublishCtx,
};
use crate::runtime::limits::{MemoryLimiter, deadline_ticks};
use crate::runtime::output::{GuestOutput, RecentLines};
use crate::runtime::state::StageState;
use crate::runtime::{Runtime, grants};

/// What the runtime needs to know about a stage.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub name: String,
    /// Granted interface names, e.g. `database`.
    pub grants: BTreeSet<String>,
    /// The stage's `config` section, handed to the guest as JSON.
    pub config: serde_json::Value,
    /// Output name to fully qualified topic.
    pub outputs: BTreeMap<String, String>,
    /// Wall-clock deadline for one call, host calls included.
    pub timeout: Duration,
    /// Maximum linear memory of one instance, in bytes.
    pub memory: u64,
}

/// Capability backends shared by all stages of a pipeline.
#[derive(Clone, Default)]
pub struct Backends {
    pub database: Option<Database>,
    pub mailer: Option<Mailer>,
}

/// Why a call did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest returned a transient failure: worth retrying.
    Transient,
    /// The guest returned a permanent failure.
    Permanent,
    /// The call ran past its deadline.
    Timeout,
    /// The guest trapped: a panic, an out-of-bounds access, an unreachable.
    Trap,
    /// The guest tried to grow its memory past the stage's limit.
    MemoryLimit,
    /// The guest reported its stage `config` invalid: the stage pauses until restarted.
    Misconfigured,
}

impl FailureKind {
    /// Name used in logs and in dead-letter properties.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
            FailureKind::Timeout => "timeout",
            FailureKind::Trap => "trap",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::Misconfigured => "misconfigured",
        }
    }

    /// Whether another attempt may succeed. Traps and timeouts are retried too: the next
    /// attempt runs on a fresh instance, and a flaky dependency can cause either.
    pub fn is_retryable(self) -> bool {
        !matches!(self, FailureKind::Permanent)
    }
}

#[derive(Debug, Clone)]
pub struct StageFailure {
    pub kind: FailureKind,
    pub reason: String,
}

impl fmt::Display for StageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.reason)
    }
}

struct Instance {
    store: Store<StageState>,
    bindings: Stage,
    /// The guest's last stderr lines, cleared before each call.
    stderr: RecentLines,
}

pub struct StageRuntime {
    spec: StageSpec,
    config: Arc<serde_json::Value>,
    outputs: Arc<BTreeMap<String, String>>,
    pre: StagePre<StageState>,
    engine: wasmtime::Engine,
    backends: Backends,
    calls: Option<CallLog>,
    idle: Mutex<Vec<Instance>>,
}

impl StageRuntime {
    /// Check the component's imports against the grants and prepare it for instantiation.
    /// `calls`, when given, records every capability call (for tests and `magnetar test`).
    pub fn new(
        runtime: &Runtime,
        component: &Component,
        spec: StageSpec,
        backends: Backends,
        calls: Option<CallLog>,
    ) -> anyhow::Result<StageRuntime> {
        let problems = grants::check_imports(runtime.engine(), component, &spec.name, &spec.grants);
        if !problems.is_empty() {
            anyhow::bail!(problems.join("\n"));
        }
        if spec.grants.contains("database") && backends.database.is_none() {
            anyhow::bail!("stage `{}` is granted `database`, but the pipeline has no `database` backend", spec.name);
        }
        if spec.grants.contains("mail") && backends.mailer.is_none() {
            anyhow::bail!("stage `{}` is granted `mail`, but the pipeline has no `mail` backend", spec.name);
        }

        let linker = build_linker(runtime.engine(), &spec.grants)?;
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("stage `{}`: the plugin cannot be linked", spec.name))?;
        let pre = StagePre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("stage `{}`: the plugin does not export the magnetar:stage world", spec.name))?;

        Ok(StageRuntime {
            config: Arc::new(spec.config.clone()),
            outputs: Arc::new(spec.outputs.clone()),
            spec,
            pre,
            engine: runtime.engine().clone(),
            backends,
            calls,
            idle: Mutex::new(Vec::new()),
        })
    }

    pub fn spec(&self) -> &StageSpec {
        &self.spec
    }

    /// Run `handle` for one message. On success, return the messages the guest published.
    pub async fn handle(&self, message: &Message) -> Result<Vec<Pending>, StageFailure> {
        let mut instance = match self.checkout().await {
            Ok(instance) => instance,
            Err(error) => {
                return Err(StageFailure {
                    kind: FailureKind::Trap,
                    reason: format!("failed to instantiate the plugin: {error:#}"),
                });
            }
        };

        instance.store.data_mut().publish.take();
        instance.store.data_mut().limiter.limit_hit = false;
        instance.stderr.lock().expect("guest output lock poisoned").clear();
        instance.store.set_epoch_deadline(deadline_ticks(self.spec.timeout));

        let call = instance.bindings.call_handle(&mut instance.store, message);
        let result = tokio::time::timeout(self.spec.timeout, call).await;

        match result {
            Ok(Ok(Ok(()))) => {
                let published = instance.store.data_mut().publish.take();
                self.checkin(instance);
                Ok(published)
            }
            Ok(Ok(Err(failure))) => {
                self.checkin(instance);
                Err(match failure {
                    Failure::Transient(reason) => StageFailure { kind: FailureKind::Transient, reason },
                    Failure::Permanent(reason) => StageFailure { kind: FailureKind::Permanent, reason },
                    Failure::Misconfigured(reason) => StageFailure { kind: FailureKind::Misconfigured, reason },
                })
            }
            // The instance is dropped in these arms: after a trap or a cancelled call its state
            // cannot be trusted, and the next message gets a fresh one.
            Ok(Err(trap)) => Err(self.classify_trap(&instance, &trap)),
            Err(_elapsed) => Err(StageFailure {
                kind: FailureKind::Timeout,
                reason: format!("the call did not finish within the stage timeout of {:?}", self.spec.timeout),
            }),
        }
    }

    fn classify_trap(&self, instance: &Instance, error: &wasmtime::Error) -> StageFailure {
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return StageFailure {
                kind: FailureKind::Timeout,
                reason: format!("the call ran past the stage timeout of {:?} and was interrupted", self.spec.timeout),
            };
        }
        if instance.store.data().limiter.limit_hit {
            return StageFailure {
                kind: FailureKind::MemoryLimit,
                reason: format!(
                    "the plugin tried to grow its memory past the stage limit of {}; raise `limits.memory` if it needs more",
                    crate::config::units::format_size(self.spec.memory)
                ),
            };
        }
        // The full error contains the wasm backtrace, which helps the plugin's author but is too
        // long for a dead letter's reason, so it goes to the log.
        tracing::debug!(stage = %self.spec.name, error = format!("{error:?}"), "plugin trapped");
        let trap = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => error.root_cause().to_string(),
        };
        let stderr: Vec<String> = instance.stderr.lock().expect("guest output lock poisoned").iter().cloned().collect();
        StageFailure { kind: FailureKind::Trap, reason: trap_reason(&trap, &stderr) }
    }

    /// Drop every idle instance, so the next call instantiates afresh. Benchmarks use this to
    /// measure the cost of a fresh instance per message.
    pub fn discard_idle(&self) {
        self.idle.lock().expect("instance pool lock poisoned").clear();
    }

    async fn checkout(&self) -> anyhow::Result<Instance> {
        let reused = self.idle.lock().expect("instance pool lock poisoned").pop();
        match reused {
            Some(instance) => Ok(instance),
            None => self.instantiate().await,
        }
    }

    fn checkin(&self, instance: Instance) {
        if instance.store.data().limiter.should_recycle() {
            tracing::debug!(stage = %self.spec.name, memory = instance.store.data().limiter.memory_size, "recycling a grown instance");
            return;
        }
        self.idle.lock().expect("instance pool lock poisoned").push(instance);
    }

    async fn instantiate(&self) -> anyhow::Result<Instance> {
        let stage: Arc<str> = Arc::from(self.spec.name.as_str());
        let stderr = RecentLines::default();
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestOutput::new(stage.clone(), "stdout"))
            .stderr(GuestOutput::keeping_recent(stage.clone(), "stderr", stderr.clone()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();

        let state = StageState {
            wasi,
            table: Default::default(),
            limiter: MemoryLimiter::new(self.spec.memory),
            log: LogCtx { stage: self.spec.name.clone(), calls: self.calls.clone() },
            config: ConfigCtx { settings: self.config.clone() },
            publish: PublishCtx::new(self.outputs.clone(), self.calls.clone()),
            database: self
                .backends
                .database
                .clone()
                .filter(|_| self.spec.grants.contains("database"))
                .map(|db| DatabaseCtx { db, calls: self.calls.clone() }),
            mail: self
                .backends
                .mailer
                .clone()
                .filter(|_| self.spec.grants.contains("mail"))
                .map(|mailer| MailCtx { mailer, calls: self.calls.clone() }),
        };

        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks(self.spec.timeout));
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance { store, bindings, stderr })
    }
}

/// Maximum length of a trap reason, in bytes, because a dead letter carries it as a property.
const MAX_TRAP_REASON: usize = 1024;

/// Describes a trap for a failure reason: the panic message and place when the guest printed
/// a Rust panic to stderr (`thread '…' panicked at FILE:LINE:COLUMN:` and the message on
/// the following lines), otherwise the trap and the guest's last stderr line, if any.
fn trap_reason(trap: &str, stderr: &[String]) -> String {
    let panic_start = stderr.iter().rposition(|line| line.contains(" panicked at "));
    let reason = match panic_start {
        Some(start) => {
            let place = stderr[start]
                .split_once(" panicked at ")
                .map(|(_, place)| place.trim_end_matches(':'))
                .unwrap_or_default();
            let message: Vec<&str> = stderr[start + 1..]
                .iter()
                .map(String::as_str)
                .take_while(|line| !line.starts_with("note: "))
                .collect();
            format!("the plugin panicked at {place}: {} ({trap})", message.join(" / "))
        }
        None => match stderr.last() {
            Some(line) => format!("the plugin trapped: {trap}; its last stderr line: {line}"),
            None => format!("the plugin trapped: {trap}"),
        },
    };
    truncate_at_char(reason, MAX_TRAP_REASON)
}

fn truncate_at_char(mut text: String, max: usize) -> String {
    text.truncate(text.floor_char_boundary(max));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_reason_quotes_rust_panic() {
        let stderr = [
            "starting".to_owned(),
            "thread '<unnamed>' panicked at src/lib.rs:48:24:".to_owned(),
            "asked to panic".to_owned(),
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace".to_owned(),
        ];
        assert_eq!(
            trap_reason("wasm `unreachable` instruction executed", &stderr),
            "the plugin panicked at src/lib.rs:48:24: asked to panic (wasm `unreachable` instruction executed)"
        );
    }

    #[test]
    fn trap_reason_without_panic_quotes_last_line() {
        let stderr = ["first".to_owned(), "last words".to_owned()];
        assert_eq!(
            trap_reason("out of bounds memory access", &stderr),
            "the plugin trapped: out of bounds memory access; its last stderr line: last words"
        );
        assert_eq!(trap_reason("out of bounds memory access", &[]), "the plugin trapped: out of bounds memory access");
    }

    #[test]
    fn trap_reason_is_bounded() {
        let stderr = ["thread 'main' panicked at a.rs:1:1:".to_owned(), "é".repeat(2000)];
        let reason = trap_reason("unreachable", &stderr);
        assert!(reason.len() <= MAX_TRAP_REASON, "{} bytes", reason.len());
    }
}

/// Link WASI (with an empty context, see `instantiate`) and the granted capabilities only.
fn build_linker(engine: &wasmtime::Engine, granted: &BTreeSet<String>) -> anyhow::Result<Linker<StageState>> {
    let mut linker: Linker<StageState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;

    // `types` defines no functions, but components still import it by name.
    linker.instance("magnetar:stage/types@0.1.0")?;
    bindings::log::add_to_linker::<_, HasSelf<LogCtx>>(&mut linker, |state| &mut state.log)?;
    bindings::config::add_to_linker::<_, HasSelf<ConfigCtx>>(&mut linker, |state| &mut state.config)?;
    if granted.contains("publish") {
        bindings::publish::add_to_linker::<_, HasSelf<PublishCtx>>(&mut linker, |state| &mut state.publish)?;
    }
    if granted.contains("database") {
        bindings::database::add_to_linker::<_, HasSelf<DatabaseCtx>>(&mut linker, |state| {
            state.database.as_mut().expect("database is linked only when the stage has a backend for it")
        })?;
    }
    if granted.contains("mail") {
        bindings::mail::add_to_linker::<_, HasSelf<MailCtx>>(&mut linker, |state| {
            state.mail.as_mut().expect("mail is linked only when the stage has a backend for it")
        })?;
    }
    Ok(linker)
}
