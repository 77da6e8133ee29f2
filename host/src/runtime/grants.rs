//! Load-time check of a component's imports against its stage's grants.

use std::collections::BTreeSet;

use wasmtime::Engine;
use wasmtime::component::Component;

/// The WIT package that defines the capability interfaces.
const PACKAGE: &str = "magnetar:stage/";

/// Interfaces every stage has without listing them.
pub const ALWAYS_GRANTED: [&str; 3] = ["types", "log", "config"];

/// Every capability interface the host implements.
pub const CAPABILITIES: [&str; 5] = ["database", "mail", "publish", "log", "config"];

/// Return one message per import that `granted` does not allow. WASI imports are always
/// allowed because WASI is linked deny-by-default: no files, sockets or environment.
pub fn check_imports(engine: &Engine, component: &Component, stage: &str, granted: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        if name.starts_with("wasi:") {
            continue;
        }
        let Some(rest) = name.strip_prefix(PACKAGE) else {
            problems.push(format!(
                "stage `{stage}`: the plugin imports `{name}`, which Magnetar does not provide; \
                 plugins may import only the magnetar:stage interfaces ({}) and WASI",
                CAPABILITIES.join(", ")
            ));
            continue;
        };
        let interface = rest.split('@').next().unwrap_or(rest);
        if ALWAYS_GRANTED.contains(&interface) || granted.contains(interface) {
            continue;
        }
        if CAPABILITIES.contains(&interface) {
            let mut needed: Vec<&str> =
                granted.iter().map(String::as_str).filter(|grant| !ALWAYS_GRANTED.contains(grant)).collect();
            needed.push(interface);
            needed.sort_unstable();
            problems.push(format!(
                "stage `{stage}`: the plugin imports `{interface}`, but the stage is not granted it; \
                 add `{interface}` to the stage's `grants`: `grants: [{}]`",
                needed.join(", ")
            ));
        } else {
            problems.push(format!("stage `{stage}`: the plugin imports unknown interface `{name}`"));
        }
    }
    problems
}
