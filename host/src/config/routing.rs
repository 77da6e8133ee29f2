//! Validation of a stage's routing: its inputs, subscription, outputs, dead letter and retry
//! topics.

use std::collections::BTreeMap;

use super::errors::{ConfigErrors, Location};
use super::model::StageInputs;
use super::topic::{compile_pattern, expand_topic};
use super::tree::{Node, Section, Value, describe, index_path, key_path, string};

pub(crate) fn inputs(section: &Section<'_>, errors: &mut ConfigErrors) -> Option<StageInputs> {
    match (section.get("inputs"), section.get("input_pattern")) {
        (Some(_), Some((path, node))) => {
            errors.push_at(
                &path,
                node.location,
                "both `inputs` and `input_pattern` are set",
                Some("keep one of them".to_owned()),
            );
            None
        }
        (None, None) => {
            errors.push_at(
                &section.path,
                section.location,
                "missing `inputs` or `input_pattern`",
                Some("add `inputs: [movies]` or `input_pattern: \"persistent://public/default/movies-.*\"`".to_owned()),
            );
            None
        }
        (Some((path, node)), None) => input_topics(node, &path, errors).map(StageInputs::Topics),
        (None, Some((path, node))) => {
            let text = string(node, &path, errors)?;
            compile_pattern(&text)
                .map(StageInputs::Pattern)
                .map_err(|(message, hint)| {
                    errors.push_at(&path, node.location, message, Some(hint))
                })
                .ok()
        }
    }
}

fn input_topics(node: &Node, path: &str, errors: &mut ConfigErrors) -> Option<Vec<String>> {
    let items = match &node.value {
        Value::Seq(items) if !items.is_empty() => items,
        _ => {
            errors.push_at(
                path,
                node.location,
                format!(
                    "expected a list of at least one topic, found {}",
                    node.kind()
                ),
                Some("write `inputs: [movies]`".to_owned()),
            );
            return None;
        }
    };

    let mut topics = Vec::new();
    let mut complete = true;
    for (index, item) in items.iter().enumerate() {
        let path = index_path(path, index);
        match topic(item, &path, errors) {
            Some(topic) if topics.contains(&topic) => {
                errors.push_at(
                    &path,
                    item.location,
                    format!("topic `{topic}` is listed twice"),
                    Some("remove one".into()),
                );
                complete = false;
            }
            Some(topic) => topics.push(topic),
            None => complete = false,
        }
    }
    complete.then_some(topics)
}

/// Reads a topic name and returns it fully qualified.
fn topic(node: &Node, path: &str, errors: &mut ConfigErrors) -> Option<String> {
    let text = string(node, path, errors)?;
    expand_topic(&text)
        .map_err(|(message, hint)| errors.push_at(path, node.location, message, Some(hint)))
        .ok()
}

pub(crate) fn subscription_name(
    node: &Node,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<String> {
    let name = string(node, path, errors)?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.push_at(
            path,
            node.location,
            format!("invalid subscription name {}", describe(node)),
            Some("use a name without spaces, as `db-writer`".to_owned()),
        );
        return None;
    }
    Some(name)
}

pub(crate) fn outputs(
    node: &Node,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<BTreeMap<String, String>> {
    let Value::Map(entries) = &node.value else {
        errors.push_at(
            path,
            node.location,
            format!(
                "expected a mapping of output names to topics, found {}",
                node.kind()
            ),
            Some("write `outputs: { default: movies-stored }`".to_owned()),
        );
        return None;
    };

    let mut outputs = BTreeMap::new();
    let mut complete = true;
    for entry in entries {
        let path = key_path(path, &entry.key);
        let valid_name = !entry.key.is_empty()
            && entry
                .key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid_name {
            errors.push_at(
                &path,
                entry.key_location,
                format!("invalid output name `{}`", entry.key),
                Some("use lowercase letters, digits, `-` and `_`, as `default`".to_owned()),
            );
            complete = false;
        }
        match topic(&entry.value, &path, errors) {
            Some(topic) => {
                outputs.insert(entry.key.clone(), topic);
            }
            None => complete = false,
        }
    }
    complete.then_some(outputs)
}

/// A dead letter or retry topic, with where it was set or, for a default, the stage's place.
pub(crate) struct TopicSetting {
    pub topic: String,
    path: String,
    location: Location,
}

/// Reads the topic under `key`, or names `<default_prefix>-<suffix>` when it is absent.
/// Returns `None` without a report when there is no prefix, because the inputs or the
/// subscription are invalid and reported already.
pub(crate) fn topic_or_default(
    section: &Section<'_>,
    key: &str,
    default_prefix: Option<&str>,
    suffix: &str,
    errors: &mut ConfigErrors,
) -> Option<TopicSetting> {
    match section.get(key) {
        Some((path, node)) => {
            let topic = topic(node, &path, errors)?;
            Some(TopicSetting {
                topic,
                path,
                location: node.location,
            })
        }
        None => {
            let topic = expand_topic(&format!("{}-{suffix}", default_prefix?)).ok()?;
            Some(TopicSetting {
                topic,
                path: section.path.clone(),
                location: section.location,
            })
        }
    }
}

/// Returns the prefix of the default dead letter and retry topics. Pulsar's clients name
/// them `<topic>-<subscription>-DLQ` and `-RETRY` (Pulsar docs, "Messaging: dead letter
/// topic"), and this follows them: `<first input>-<subscription>` in that input's
/// namespace, or `<subscription>` in the namespace of an input pattern. So two pipelines
/// share these topics only when they share the subscription, which makes them one stage.
/// The prefix is always persistent, so retries and dead letters survive a broker restart.
pub(crate) fn default_topic_prefix(inputs: &StageInputs, subscription: &str) -> Option<String> {
    match inputs {
        StageInputs::Topics(topics) => {
            let first = topics.first()?;
            let (_, path) = first.split_once("://")?;
            Some(format!("persistent://{path}-{subscription}"))
        }
        StageInputs::Pattern(pattern) => {
            Some(format!("persistent://{}/{subscription}", pattern.namespace))
        }
    }
}

/// Reports a dead letter or retry topic that the stage also consumes as an input, and a
/// dead letter topic that is its retry topic.
pub(crate) fn check_dead_letter_loop(
    inputs: &StageInputs,
    dead_letter: &TopicSetting,
    retry: &TopicSetting,
    errors: &mut ConfigErrors,
) {
    if inputs.contains(&dead_letter.topic) {
        errors.push_at(
            &dead_letter.path,
            dead_letter.location,
            format!("dead letter topic `{}` is also an input of this stage", dead_letter.topic),
            Some("a failed message would come back to the stage that failed it; set `dead_letter` to another topic".to_owned()),
        );
    }
    if inputs.contains(&retry.topic) {
        errors.push_at(
            &retry.path,
            retry.location,
            format!("retry topic `{}` is also an input of this stage", retry.topic),
            Some(
                "the stage already reads its retry topic with a consumer of its own, and with an \
                 exclusive subscription the second consumer fails; set `retry_topic` to a topic \
                 outside the inputs, or narrow the inputs"
                    .to_owned(),
            ),
        );
    }
    if dead_letter.topic == retry.topic {
        errors.push_at(
            &retry.path,
            retry.location,
            format!(
                "retry topic `{}` is also the dead letter topic",
                retry.topic
            ),
            Some("give `retry_topic` and `dead_letter` different topics".to_owned()),
        );
    }
}

/// Reports an output topic that the stage also consumes, as an input or as its retry topic,
/// which would feed every message back to the stage forever.
pub(crate) fn check_output_loop(
    inputs: &StageInputs,
    retry_topic: &str,
    outputs: &BTreeMap<String, String>,
    section: &Section<'_>,
    errors: &mut ConfigErrors,
) {
    let Some((path, node)) = section.get("outputs") else {
        return;
    };
    for (name, topic) in outputs {
        if topic == retry_topic {
            errors.push_at(
                &key_path(&path, name),
                node.location,
                format!("output `{name}` publishes to `{topic}`, which is also the retry topic of this stage"),
                Some("each message would come back to this stage without end; publish to another topic".to_owned()),
            );
        } else if inputs.contains(topic) {
            errors.push_at(
                &key_path(&path, name),
                node.location,
                format!("output `{name}` publishes to `{topic}`, which is also an input of this stage"),
                Some("each message would come back to this stage without end; publish to another topic".to_owned()),
            );
        }
    }
}
