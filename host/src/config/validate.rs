//! Validation of the top level of `pipeline.yaml`, the broker and the health endpoint.
//!
//! Every check reports into one [`ConfigErrors`] and carries on, so that a file with several
//! mistakes shows them all at once. A check returns `None` when it reported a problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use url::Url;

use super::backends::{database, mail};
use super::errors::ConfigErrors;
use super::grants::Backends;
use super::model::{Broker, DEFAULT_HEALTH_LISTEN, Health, Pipeline};
use super::secret::{Secret, SecretUrl, redact_url_text};
use super::stage::stages;
use super::tree::{Node, Section, Value, describe, string};

const ROOT_KEYS: &[&str] = &["broker", "health", "database", "mail", "stages"];

/// Builds the pipeline from the expanded tree, or reports every problem found.
pub(crate) fn build_pipeline(
    root: &Node,
    file: &Path,
    errors: &mut ConfigErrors,
) -> Option<Pipeline> {
    let base_dir = file.parent().unwrap_or(Path::new("."));

    if root.is_null() {
        errors.push_at(
            "",
            root.location,
            "the file is empty",
            Some("add a `broker:` section and a `stages:` list".to_owned()),
        );
        return None;
    }
    let section = Section::new(root, "", ROOT_KEYS, errors)?;

    let broker = section
        .require("broker", "broker: { url: pulsar://127.0.0.1:6650 }", errors)
        .and_then(|(path, node)| broker(node, &path, errors));

    let health = match section.get("health") {
        Some((path, node)) => health(node, &path, errors),
        None => Some(Some(Health {
            listen: DEFAULT_HEALTH_LISTEN,
        })),
    };

    let database_node = section.get("database");
    let database = match &database_node {
        Some((path, node)) => database(node, path, base_dir, errors).map(Some),
        None => Some(None),
    };

    let mail_node = section.get("mail");
    let mail = match &mail_node {
        Some((path, node)) => mail(node, path, base_dir, errors).map(Some),
        None => Some(None),
    };

    // A section that is present but invalid still counts as present, so a stage that grants
    // it gets no hint to add a section that is already there.
    let backends = Backends {
        database: database_node.is_some(),
        mail: mail_node.is_some(),
    };
    let stages = section
        .require("stages", "stages: [ ... ]", errors)
        .and_then(|(path, node)| stages(node, &path, base_dir, backends, errors));

    Some(Pipeline {
        path: absolute(file),
        broker: broker?,
        health: health?,
        database: database?,
        mail: mail?,
        stages: stages?,
    })
}

/// Returns `path` made absolute against the current folder, or unchanged if that fails.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn broker(node: &Node, path: &str, errors: &mut ConfigErrors) -> Option<Broker> {
    let section = Section::new(node, path, &["url", "token"], errors)?;

    let url = section
        .require("url", "url: pulsar://127.0.0.1:6650", errors)
        .and_then(|(path, node)| broker_url(node, &path, errors));

    let token = match section.get("token") {
        Some((path, node)) => token(node, &path, errors).map(Some),
        None => Some(None),
    };

    Some(Broker {
        url: url?,
        token: token?,
    })
}

fn broker_url(node: &Node, path: &str, errors: &mut ConfigErrors) -> Option<SecretUrl> {
    let text = string(node, path, errors)?;
    let hint = Some("write `pulsar://host:6650`, or `pulsar+ssl://host:6651` for TLS".to_owned());

    let url = match Url::parse(&text) {
        Ok(url) => url,
        Err(error) => {
            let message = format!("invalid broker URL `{}`: {error}", redact_url_text(&text));
            errors.push_at(path, node.location, message, hint);
            return None;
        }
    };
    let url = SecretUrl::new(url);

    let problem = match url.expose() {
        url if !matches!(url.scheme(), "pulsar" | "pulsar+ssl") => Some(format!(
            "unsupported scheme `{}` in broker URL",
            url.scheme()
        )),
        url if url.host_str().is_none_or(str::is_empty) => {
            Some("the broker URL has no host".to_owned())
        }
        url if !matches!(url.path(), "" | "/") || url.query().is_some() => {
            Some("the broker URL must not have a path or query".to_owned())
        }
        _ => None,
    };
    match problem {
        Some(problem) => {
            errors.push_at(path, node.location, format!("{problem}: `{url}`"), hint);
            None
        }
        None => Some(url),
    }
}

/// Reads the broker token without ever echoing its value.
fn token(node: &Node, path: &str, errors: &mut ConfigErrors) -> Option<Secret> {
    let text = match &node.value {
        Value::String(text) => text,
        Value::Unresolved => return None,
        _ => {
            errors.push_at(
                path,
                node.location,
                format!("expected a string, found {}", node.kind()),
                None,
            );
            return None;
        }
    };

    let problem = if text.is_empty() {
        Some("the token is empty")
    } else if text.chars().any(char::is_whitespace) {
        Some("the token contains whitespace or a line break")
    } else {
        None
    };
    match problem {
        Some(problem) => {
            let hint = "set the variable it comes from to the token alone, without spaces or a \
                        trailing line break, or remove `token`";
            errors.push_at(path, node.location, problem, Some(hint.to_owned()));
            None
        }
        None => Some(Secret::new(text.clone())),
    }
}

/// Returns the health endpoint, `None` inside when it is switched off.
fn health(node: &Node, path: &str, errors: &mut ConfigErrors) -> Option<Option<Health>> {
    let section = Section::new(node, path, &["listen"], errors)?;
    let Some((path, node)) = section.get("listen") else {
        return Some(Some(Health {
            listen: DEFAULT_HEALTH_LISTEN,
        }));
    };

    let text = string(node, &path, errors)?;
    if text == "off" {
        return Some(None);
    }
    match text.parse::<SocketAddr>() {
        Ok(listen) => Some(Some(Health { listen })),
        Err(_) => {
            errors.push_at(
                &path,
                node.location,
                format!("invalid listen address {}", describe(node)),
                Some("write an IP address and port such as `127.0.0.1:9464`, or `off` to disable the endpoint".to_owned()),
            );
            None
        }
    }
}
