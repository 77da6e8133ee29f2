//! Validation of the `stages` list: each stage on its own, then the stages against each other.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::errors::{ConfigErrors, Location};
use super::grants::{Backends, check_publish, grants};
use super::limits::{limits, retry};
use super::model::{
    DEFAULT_PARALLELISM, Grant, InitialPosition, Limits, MAX_PARALLELISM, RetryPolicy, StageConfig,
    StageInputs, SubscriptionType,
};
use super::routing::{
    check_dead_letter_loop, check_output_loop, default_topic_prefix, inputs, outputs, subscription_name,
    topic_or_default,
};
use super::tree::{Node, Section, Value, describe, index_path, integer, key_path, string};
use super::validate::absolute;

const STAGE_KEYS: &[&str] = &[
    "name",
    "plugin",
    "inputs",
    "input_pattern",
    "subscription",
    "subscription_type",
    "initial_position",
    "outputs",
    "grants",
    "config",
    "retry",
    "dead_letter",
    "retry_topic",
    "dead_letter_subscription",
    "limits",
    "parallelism",
];

pub(crate) fn stages(
    node: &Node,
    path: &str,
    base_dir: &Path,
    backends: Backends,
    errors: &mut ConfigErrors,
) -> Option<Vec<StageConfig>> {
    let items = match &node.value {
        Value::Seq(items) if !items.is_empty() => items,
        _ => {
            errors.push_at(
                path,
                node.location,
                format!(
                    "expected a list of at least one stage, found {}",
                    node.kind()
                ),
                Some("add `- name: ...` entries with `plugin` and `inputs`".to_owned()),
            );
            return None;
        }
    };

    report_duplicate_names(items, path, errors);

    let mut built = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if let Some(stage) = stage(item, &index_path(path, index), base_dir, backends, errors) {
            built.push((index, item.location, stage));
        }
    }

    report_shared_subscriptions(&built, path, errors);
    report_shared_retry_topics(&built, path, errors);

    (built.len() == items.len()).then(|| built.into_iter().map(|(_, _, stage)| stage).collect())
}

fn stage(
    node: &Node,
    path: &str,
    base_dir: &Path,
    backends: Backends,
    errors: &mut ConfigErrors,
) -> Option<StageConfig> {
    let section = Section::new(node, path, STAGE_KEYS, errors)?;

    let name = section
        .require("name", "name: store-movies", errors)
        .and_then(|(path, node)| stage_name(node, &path, errors));
    let plugin = section
        .require("plugin", "plugin: plugins/db_writer.wasm", errors)
        .and_then(|(path, node)| plugin(node, &path, base_dir, errors));
    let inputs = inputs(&section, errors);

    let subscription = match section.get("subscription") {
        Some((path, node)) => subscription_name(node, &path, errors),
        None => name.clone(),
    };
    let subscription_type = choice(
        section.get("subscription_type"),
        SubscriptionType::NAMES,
        SubscriptionType::parse,
        "subscription type",
        errors,
    );
    let initial_position = choice(
        section.get("initial_position"),
        InitialPosition::NAMES,
        InitialPosition::parse,
        "initial position",
        errors,
    );

    let outputs = match section.get("outputs") {
        Some((path, node)) => outputs(node, &path, errors),
        None => Some(BTreeMap::new()),
    };
    let grants = grants(&section, backends, errors);
    if let (Some(outputs), Some(grants)) = (&outputs, &grants) {
        check_publish(&section, outputs, grants, errors);
    }

    let config = match section.get("config") {
        None => Some(serde_json::Value::Object(Default::default())),
        Some((_, node)) if matches!(node.value, Value::Map(_)) => Some(node.to_json()),
        Some((path, node)) => {
            errors.push_at(
                &path,
                node.location,
                format!("expected a mapping, found {}", node.kind()),
                Some("write the plugin settings as `key: value` lines".to_owned()),
            );
            None
        }
    };

    let retry = match section.get("retry") {
        Some((path, node)) => retry(node, &path, errors),
        None => Some(RetryPolicy::default()),
    };
    let default_prefix = match (&inputs, &subscription) {
        (Some(inputs), Some(subscription)) => default_topic_prefix(inputs, subscription),
        _ => None,
    };
    let dead_letter =
        topic_or_default(&section, "dead_letter", default_prefix.as_deref(), "DLQ", errors);
    let retry_topic =
        topic_or_default(&section, "retry_topic", default_prefix.as_deref(), "RETRY", errors);
    if let (Some(inputs), Some(dead_letter), Some(retry_topic)) =
        (&inputs, &dead_letter, &retry_topic)
    {
        check_dead_letter_loop(inputs, dead_letter, retry_topic, errors);
    }
    let dead_letter_subscription = match section.get("dead_letter_subscription") {
        Some((path, node)) => subscription_name(node, &path, errors).map(Some),
        None => Some(None),
    };
    if let (Some(inputs), Some(outputs), Some(retry_topic)) = (&inputs, &outputs, &retry_topic) {
        check_output_loop(inputs, &retry_topic.topic, outputs, &section, errors);
    }

    let limits = match section.get("limits") {
        Some((path, node)) => limits(node, &path, errors),
        None => Some(Limits::default()),
    };
    let parallelism = match section.get("parallelism") {
        Some((path, node)) => {
            integer(node, &path, 1, MAX_PARALLELISM as i128, errors).map(|n| n as usize)
        }
        None => Some(DEFAULT_PARALLELISM),
    };

    Some(StageConfig {
        name: name?,
        plugin: plugin?,
        inputs: inputs?,
        subscription: subscription?,
        subscription_type: subscription_type?,
        initial_position: initial_position?,
        outputs: outputs?,
        grants: grants?
            .into_iter()
            .map(|entry| entry.grant)
            .chain(Grant::ALWAYS)
            .collect(),
        config: config?,
        retry: retry?,
        dead_letter: dead_letter?.topic,
        retry_topic: retry_topic?.topic,
        dead_letter_subscription: dead_letter_subscription?,
        limits: limits?,
        parallelism: parallelism?,
        plugin_location: section
            .get("plugin")
            .map_or(section.location, |(_, node)| node.location),
        grants_location: section
            .get("grants")
            .map_or(section.location, |(_, node)| node.location),
    })
}

fn stage_name(node: &Node, path: &str, errors: &mut ConfigErrors) -> Option<String> {
    let name = string(node, path, errors)?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        errors.push_at(
            path,
            node.location,
            format!("invalid stage name {}", describe(node)),
            Some("use lowercase letters, digits and `-`, as `store-movies`".to_owned()),
        );
        return None;
    }
    Some(name)
}

fn plugin(node: &Node, path: &str, base_dir: &Path, errors: &mut ConfigErrors) -> Option<PathBuf> {
    let text = string(node, path, errors)?;
    let file = absolute(&base_dir.join(&text));
    if file.is_file() {
        return Some(file);
    }

    let (message, hint) = if file.is_dir() {
        (
            format!("plugin `{}` is a folder", file.display()),
            "point `plugin` at the component's .wasm file".to_owned(),
        )
    } else {
        // Cargo names the artifact after the package with `-` turned into `_`.
        let artifact = file
            .file_name()
            .map_or("plugin.wasm".into(), |name| name.to_string_lossy());
        let package = artifact.trim_end_matches(".wasm").replace('_', "-");
        (
            format!("plugin file `{}` not found", file.display()),
            format!(
                "build it with `cargo build --release --target wasm32-wasip2 -p {package}` (if that is \
                 its package), then point `plugin` at the built {artifact} in \
                 <target folder>/wasm32-wasip2/release (CARGO_TARGET_DIR sets the target folder), \
                 or copy it to the path above"
            ),
        )
    };
    errors.push_at(path, node.location, message, Some(hint));
    None
}

/// Reads one of a fixed set of names, or returns the default when the key is absent.
fn choice<T: Default>(
    entry: Option<(String, &Node)>,
    names: &[&str],
    parse: fn(&str) -> Option<T>,
    value_name: &str,
    errors: &mut ConfigErrors,
) -> Option<T> {
    let Some((path, node)) = entry else {
        return Some(T::default());
    };
    let text = string(node, &path, errors)?;
    let parsed = parse(&text);
    if parsed.is_none() {
        errors.push_at(
            &path,
            node.location,
            format!("unknown {value_name} `{text}`"),
            Some(format!("valid {value_name}s: {}", names.join(", "))),
        );
    }
    parsed
}

fn report_duplicate_names(items: &[Node], path: &str, errors: &mut ConfigErrors) {
    let mut first_index: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        let Value::Map(entries) = &item.value else {
            continue;
        };
        let Some(entry) = entries.iter().find(|entry| entry.key == "name") else {
            continue;
        };
        let Value::String(name) = &entry.value.value else {
            continue;
        };

        if let Some(first) = first_index.get(name) {
            errors.push_at(
                &key_path(&index_path(path, index), "name"),
                entry.value.location,
                format!(
                    "duplicate stage name `{name}`, already used by {}",
                    index_path(path, *first)
                ),
                Some("rename one of the two stages".to_owned()),
            );
        } else {
            first_index.insert(name.clone(), index);
        }
    }
}

/// Reports two stages that consume the same topic through the same subscription, because
/// Pulsar would split its messages between two different components.
/// Reports a stage's retry topic that another stage also reads, as its own retry topic or as
/// an input. Retries carry no stage name that a reader checks, so the other stage's plugin
/// would handle them.
fn report_shared_retry_topics(
    stages: &[(usize, Location, StageConfig)],
    path: &str,
    errors: &mut ConfigErrors,
) {
    for (owner_index, _, owner) in stages {
        for (index, location, stage) in stages {
            if index == owner_index {
                continue;
            }
            let relation = if stage.retry_topic == owner.retry_topic {
                "also its retry topic"
            } else if stage.inputs.contains(&owner.retry_topic) {
                "one of its inputs"
            } else {
                continue;
            };
            // Report a shared retry topic once, at the later stage.
            if stage.retry_topic == owner.retry_topic && index < owner_index {
                continue;
            }
            errors.push_at(
                &index_path(path, *index),
                *location,
                format!(
                    "the retry topic `{}` of {} is {relation}",
                    owner.retry_topic,
                    index_path(path, *owner_index)
                ),
                Some(
                    "each stage needs a retry topic of its own that no other stage reads; change \
                     `retry_topic` or narrow the inputs"
                        .to_owned(),
                ),
            );
        }
    }
}

fn report_shared_subscriptions(
    stages: &[(usize, Location, StageConfig)],
    path: &str,
    errors: &mut ConfigErrors,
) {
    let mut first_index: HashMap<(&str, &str), usize> = HashMap::new();
    for (index, location, stage) in stages {
        let StageInputs::Topics(topics) = &stage.inputs else {
            continue;
        };
        for topic in topics {
            let key = (topic.as_str(), stage.subscription.as_str());
            if let Some(first) = first_index.get(&key) {
                errors.push_at(
                    &key_path(&index_path(path, *index), "subscription"),
                    *location,
                    format!(
                        "subscription `{}` on `{topic}` is already used by {}",
                        stage.subscription,
                        index_path(path, *first)
                    ),
                    Some("Pulsar would split the messages between the two stages; give this stage its own `subscription`".to_owned()),
                );
            } else {
                first_index.insert(key, *index);
            }
        }
    }
}
