//! `magnetar test` from the command line: exit status, input parsing and grant names.

mod support;

use std::process::{Command, Output};

use support::plugin;

fn magnetar_test(plugin_file: &str, input: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input");
    std::fs::write(&path, input).unwrap();
    Command::new(env!("CARGO_BIN_EXE_magnetar"))
        .arg("test")
        .arg(plugin(plugin_file))
        .arg("--input")
        .arg(&path)
        .args(extra)
        .current_dir(dir.path())
        .env("RUST_LOG", "off")
        .output()
        .expect("run magnetar test")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn test_command_exits_zero_when_all_succeed() {
    let output = magnetar_test("noop.wasm", "{\"a\": 1}\n{\"a\": 2}\n", &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("message 2: ok"), "{}", text(&output));
    assert!(text(&output).contains("0 message(s) failed"), "{}", text(&output));
}

#[test]
fn test_command_exits_one_on_failure() {
    let output = magnetar_test("hostile.wasm", "permanent", &["--grant", "publish"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("asked to fail"), "{}", text(&output));
    assert!(text(&output).contains("1 message(s) failed"), "{}", text(&output));
}

#[test]
fn test_command_rejects_broken_json_array() {
    let output = magnetar_test("noop.wasm", "[{\"a\": 1},\n{\"a\": ", &[]);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("starts like a JSON array but is not valid JSON"), "{}", text(&output));
}

#[test]
fn test_command_rejects_unknown_grant() {
    let output = magnetar_test("noop.wasm", "{}", &["--grant", "network"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("unknown interface `network`"), "{}", text(&output));
}

#[test]
fn test_command_names_grant_flag_for_missing_grant() {
    let output = magnetar_test("hostile.wasm", "ok", &["--grant", "database"]);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("imports `publish`, but the stage is not granted it"), "{}", text(&output));
    assert!(text(&output).contains("`grants: [database, publish]`"), "keeps the granted ones: {}", text(&output));
    assert!(text(&output).contains("takes its grants from --grant"), "{}", text(&output));
}

#[test]
fn test_command_reports_panic_message() {
    let output = magnetar_test("hostile.wasm", "panic", &["--grant", "publish"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("trap: the plugin panicked at "), "{}", text(&output));
    assert!(text(&output).contains(": asked to panic ("), "quotes the panic message: {}", text(&output));
    assert!(!text(&output).contains("wasm backtrace"), "leaves the backtrace to the log: {}", text(&output));
}
