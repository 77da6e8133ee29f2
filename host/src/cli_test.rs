//! `magnetar test`: run a plugin on messages from a file, with real capabilities and no broker.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::capability::CapabilityCall;
use crate::config::Grant;
use crate::harness::Harness;

#[derive(clap::Args)]
pub struct TestArgs {
    /// The plugin component (`.wasm`).
    plugin: PathBuf,
    /// Messages: a JSON array (one message per element), JSON Lines, or any other file as one payload.
    #[arg(long)]
    input: PathBuf,
    /// The stage's `config` section, as YAML or JSON.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Interfaces to grant (database, mail, publish); repeat for several. Default: all three.
    /// log and config are always granted.
    #[arg(long = "grant", value_parser = parse_grant)]
    grants: Vec<String>,
    /// Database URL. Default: a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Migrations folder to apply first.
    #[arg(long, default_value = "migrations")]
    migrations: PathBuf,
    /// Print outcomes and calls as JSON Lines.
    #[arg(long)]
    json: bool,
}

fn parse_grant(name: &str) -> Result<String, String> {
    match Grant::parse(name) {
        Some(grant) => Ok(grant.interface_name().to_owned()),
        None => {
            let known: Vec<&str> = Grant::ALL.iter().map(|grant| grant.interface_name()).collect();
            Err(format!("unknown interface `{name}`; expected one of {}", known.join(", ")))
        }
    }
}

/// Runs every message through the plugin and prints what happened. Exits 1 when any
/// message failed, so scripts and CI can use it as a test.
pub async fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let payloads = read_messages(&args.input)?;
    let mut builder = Harness::builder(&args.plugin);
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).with_context(|| format!("failed to read config {}", path.display()))?;
        let config: serde_json::Value =
            serde_saphyr::from_str(&text).with_context(|| format!("{} is not valid YAML or JSON", path.display()))?;
        builder = builder.config(config);
    }
    if !args.grants.is_empty() {
        builder = builder.grants(args.grants.clone());
    }
    if let Some(url) = &args.database_url {
        builder = builder.database_url(url);
    }
    if args.migrations.is_dir() {
        builder = builder.migrations(&args.migrations);
    } else if args.database_url.is_none() {
        eprintln!(
            "warning: no migrations folder at {}, so the fresh database has no tables; run from the \
             repository root or pass --migrations DIR",
            args.migrations.display()
        );
    }
    let harness = builder.build().await.map_err(|error| {
        if args.grants.is_empty() || !format!("{error:#}").contains("is not granted") {
            return error;
        }
        anyhow::anyhow!("{error:#}\nmagnetar test takes its grants from --grant: pass it once for each interface in that list")
    })?;

    let mut failed = 0usize;
    for (index, payload) in payloads.into_iter().enumerate() {
        let outcome = harness.handle(Harness::message(payload)).await;
        if outcome.result.is_err() {
            failed += 1;
        }
        if args.json {
            let line = serde_json::json!({
                "message": index + 1,
                "outcome": match &outcome.result {
                    Ok(published) => serde_json::json!({ "ok": { "published": published.len() } }),
                    Err(failure) => serde_json::json!({ "failure": { "kind": failure.kind.as_str(), "reason": failure.reason } }),
                },
                "calls": outcome.calls,
            });
            println!("{line}");
            continue;
        }
        match &outcome.result {
            Ok(published) => println!("message {}: ok, {} published", index + 1, published.len()),
            Err(failure) => println!("message {}: {failure}", index + 1),
        }
        for call in &outcome.calls {
            println!("  {}", describe(call));
        }
    }
    eprintln!("{failed} message(s) failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn describe(call: &CapabilityCall) -> String {
    match call {
        CapabilityCall::Database { statement, params, result } => {
            let params = serde_json::to_string(params).unwrap_or_default();
            let result = match result {
                Ok(value) => format!("ok {value}"),
                Err(error) => format!("error {error}"),
            };
            format!("database: {statement} {params} -> {result}")
        }
        CapabilityCall::Mail { to, subject, result, .. } => {
            let result = result.as_ref().map(|()| "sent".to_string()).unwrap_or_else(|error| format!("error {error}"));
            format!("mail: to {} subject {subject:?} -> {result}", to.join(", "))
        }
        CapabilityCall::Publish { output, key, payload, result, .. } => {
            let result = result.as_ref().map(|()| "held".to_string()).unwrap_or_else(|error| format!("error {error}"));
            format!("publish: output {output} key {key:?} payload {payload:?} -> {result}")
        }
        CapabilityCall::Log { level, message, fields } => {
            let fields: Vec<String> = fields.iter().map(|(key, value)| format!("{key}={value:?}")).collect();
            format!("log {level}: {message} {}", fields.join(" "))
        }
    }
}

/// Split the input file into message payloads.
fn read_messages(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("failed to read input {}", path.display()))?;
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(&bytes) {
        return Ok(items.into_iter().map(|item| item.to_string().into_bytes()).collect());
    }
    // A file that opens like a JSON array but does not parse is a mistake, not one payload.
    if bytes.trim_ascii_start().starts_with(b"[") && std::str::from_utf8(&bytes).is_ok_and(|text| !is_json_lines(text)) {
        let error = serde_json::from_slice::<serde_json::Value>(&bytes).err().map(|e| e.to_string()).unwrap_or_default();
        anyhow::bail!("{} starts like a JSON array but is not valid JSON: {error}; fix it, or use JSON Lines", path.display());
    }
    if serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() {
        return Ok(vec![bytes]);
    }
    let text = String::from_utf8_lossy(&bytes);
    if is_json_lines(&text) {
        let lines = text.lines().filter(|line| !line.trim().is_empty());
        return Ok(lines.map(|line| line.as_bytes().to_vec()).collect());
    }
    Ok(vec![bytes])
}

/// Returns whether `text` has at least one non-blank line and each of them is a JSON value.
fn is_json_lines(text: &str) -> bool {
    let mut lines = text.lines().filter(|line| !line.trim().is_empty()).peekable();
    lines.peek().is_some() && lines.all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok())
}
