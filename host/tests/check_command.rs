//! `magnetar check` on broken pipeline files: every problem is reported with its path,
//! and the exit status is non-zero, without a broker.

mod support;

use std::process::Command;

use support::plugin;

fn check(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_magnetar"))
        .args(["check", path.to_str().unwrap()])
        // No broker on this port: check must not need one.
        .env("RUST_LOG", "off")
        .output()
        .expect("run magnetar check");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn pipeline(stage_extra: &str, plugin_path: &str, grants: &str) -> String {
    format!(
        r#"
broker:
  url: pulsar://127.0.0.1:1
mail:
  transport: file://outbox
  from: "Test <test@example.com>"
stages:
  - name: notify
    plugin: {plugin_path}
    inputs: [stored]
    grants: [{grants}]
{stage_extra}
"#
    )
}

#[test]
fn valid_pipeline_passes() {
    let yaml = pipeline("", plugin("needs_mail.wasm").to_str().unwrap(), "mail");
    let (ok, output) = check(&yaml);
    assert!(ok, "{output}");
    assert!(output.contains("valid"), "{output}");
}

#[test]
fn valid_pipeline_lists_default_topics() {
    let yaml = pipeline("", plugin("needs_mail.wasm").to_str().unwrap(), "mail");
    let (ok, output) = check(&yaml);
    assert!(ok, "{output}");
    assert!(
        output.contains("consumes persistent://public/default/stored as subscription notify (shared)"),
        "{output}"
    );
    assert!(output.contains("retry topic: persistent://public/default/stored-notify-RETRY"), "{output}");
    assert!(output.contains("dead letter topic: persistent://public/default/stored-notify-DLQ"), "{output}");
    assert!(
        output.contains("warning: no stage of this pipeline reads `persistent://public/default/stored-notify-DLQ`"),
        "warns that the dead letters have no reader: {output}"
    );
}

#[test]
fn misspelled_key_names_path() {
    let yaml = pipeline("    subscripton: mailer", plugin("needs_mail.wasm").to_str().unwrap(), "mail");
    let (ok, output) = check(&yaml);
    assert!(!ok);
    assert!(output.contains("stages[0]"), "{output}");
    assert!(output.contains("subscripton"), "{output}");
    assert!(output.contains("subscription"), "suggests the right key: {output}");
}

#[test]
fn missing_plugin_names_path() {
    let yaml = pipeline("", "plugins/does-not-exist.wasm", "mail");
    let (ok, output) = check(&yaml);
    assert!(!ok);
    assert!(output.contains("stages[0].plugin"), "{output}");
    assert!(output.contains("does-not-exist.wasm"), "{output}");
}

#[test]
fn ungranted_import_names_stage_and_fix() {
    let yaml = pipeline("    outputs: { default: out }", plugin("needs_mail.wasm").to_str().unwrap(), "publish");
    let (ok, output) = check(&yaml);
    assert!(!ok);
    assert!(output.contains("stages[0].grants"), "{output}");
    assert!(output.contains("notify"), "names the stage: {output}");
    assert!(output.contains("`mail`"), "names the interface: {output}");
    // The `grants` list is on line 11 of the generated file, after `grants: ` (column 13).
    assert!(output.contains("(line 11, column 13)"), "points at the grants: {output}");
}

#[test]
fn unknown_subscription_type_lists_valid_ones() {
    let yaml = pipeline("    subscription_type: round_robin", plugin("needs_mail.wasm").to_str().unwrap(), "mail");
    let (ok, output) = check(&yaml);
    assert!(!ok);
    assert!(output.contains("stages[0].subscription_type"), "{output}");
    assert!(output.contains("key_shared"), "lists valid types: {output}");
}

#[test]
fn several_problems_reported_together() {
    let yaml = pipeline("    subscription_type: round_robin\n    parallelism: 0", "missing.wasm", "mial");
    let (ok, output) = check(&yaml);
    assert!(!ok);
    for path in ["stages[0].subscription_type", "stages[0].plugin", "stages[0].grants[0]"] {
        assert!(output.contains(path), "reports {path}: {output}");
    }
}

#[test]
fn plugin_that_is_not_wasm_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.wasm");
    std::fs::write(&path, "these are notes, not a plugin\n").unwrap();
    let (ok, output) = check(&pipeline("", path.to_str().unwrap(), "mail"));
    assert!(!ok);
    assert!(output.contains("stages[0].plugin"), "{output}");
    assert!(output.contains("is not a WebAssembly file"), "{output}");
    assert!(output.contains("--target wasm32-wasip2"), "names the fix: {output}");
}

#[test]
fn core_module_plugin_asks_for_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("module.wasm");
    // The smallest valid core module: the magic bytes and version 1, no sections.
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let (ok, output) = check(&pipeline("", path.to_str().unwrap(), "mail"));
    assert!(!ok);
    assert!(output.contains("is a core WebAssembly module, not a component"), "{output}");
    assert!(output.contains("wasm32-wasip2"), "names the fix: {output}");
}
