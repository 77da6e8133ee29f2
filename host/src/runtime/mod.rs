//! The wasm runtime: one engine, compiled components cached on disk, and per-stage instance
//! pools that run one message at a time under a deadline and a memory cap.

pub mod grants;
pub mod limits;
mod output;
pub mod stage;
pub mod state;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

pub use stage::{FailureKind, StageFailure, StageRuntime, StageSpec};

/// The shared wasmtime engine and the thread that advances its epoch.
pub struct Runtime {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Create the engine. Compiled components are cached in `cache_dir` when given.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("failed to create the wasmtime engine")?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("magnetar-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(limits::EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .context("failed to start the epoch thread")?;

        Ok(Runtime { engine, cache_dir, ticker_stop })
    }

    /// Cache folder from `MAGNETAR_CACHE_DIR`, else `$XDG_CACHE_HOME/magnetar` or
    /// `$HOME/.cache/magnetar`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("MAGNETAR_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("magnetar"));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("magnetar"))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Load and compile a component, or reuse the compiled copy from the disk cache.
    pub fn load_component(&self, path: &Path) -> anyhow::Result<Component> {
        let wasm = std::fs::read(path)
            .with_context(|| format!("failed to read plugin {}", path.display()))?;
        let Some(cache_dir) = &self.cache_dir else {
            return self.compile(path, &wasm);
        };

        let cached = cache_dir.join("components").join(format!("{}.cwasm", self.cache_key(&wasm)));
        if cached.exists() {
            // SAFETY: the file was written by `Component::serialize` of an engine with the
            // same compatibility hash (part of the file name), into a folder this host owns.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => return Ok(component),
                Err(error) => tracing::warn!(path = %cached.display(), %error, "ignoring unreadable cached component"),
            }
        }

        let component = self.compile(path, &wasm)?;
        if let Err(error) = write_cache(&cached, &component) {
            tracing::warn!(path = %cached.display(), %error, "failed to cache compiled component");
        }
        Ok(component)
    }

    fn compile(&self, path: &Path, wasm: &[u8]) -> anyhow::Result<Component> {
        check_component_header(path, wasm)?;
        Component::new(&self.engine, wasm).map_err(anyhow::Error::from).with_context(|| {
            format!("{} is not a valid WebAssembly component; build plugins for the wasm32-wasip2 target", path.display())
        })
    }

    fn cache_key(&self, wasm: &[u8]) -> String {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut engine_hash);
        let digest = Sha256::digest(wasm);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{hex}-{:016x}", engine_hash.finish())
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Binary WebAssembly starts with these bytes, then a layer word that tells a core module
/// (version 1) from a component (the component model's layer 1).
const WASM_MAGIC: &[u8] = b"\0asm";
const CORE_MODULE_VERSION: &[u8] = &[0x01, 0x00, 0x00, 0x00];

/// Rejects a file that is no WebAssembly at all, or a core module, with an error that explains
/// how to build a component, before the parser reports a less helpful position. Text that
/// starts like the WebAssembly text format is left to the parser, which accepts it.
fn check_component_header(path: &Path, wasm: &[u8]) -> anyhow::Result<()> {
    if let Some(rest) = wasm.strip_prefix(WASM_MAGIC) {
        if rest.starts_with(CORE_MODULE_VERSION) {
            anyhow::bail!(
                "{} is a core WebAssembly module, not a component; build the plugin for the \
                 wasm32-wasip2 target (wasm32-wasip1 and wasm32-unknown-unknown build core modules), \
                 or wrap a module with `wasm-tools component new`",
                path.display()
            );
        }
        return Ok(());
    }

    let text = String::from_utf8_lossy(&wasm[..wasm.len().min(256)]);
    let start = text.trim_start();
    if !(start.starts_with('(') || start.starts_with(";;")) {
        anyhow::bail!(
            "{} is not a WebAssembly file ({} bytes, without the `\\0asm` header); use the \
             .wasm file that `cargo build --release --target wasm32-wasip2` writes",
            path.display(),
            wasm.len()
        );
    }
    Ok(())
}

fn write_cache(path: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir)?;
    // Write to a temporary name first so a concurrent reader never sees half a file.
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, component.serialize()?)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}
