//! Validation of a stage's `retry` and `limits` sections.

use std::time::Duration;

use super::errors::ConfigErrors;
use super::model::{
    DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MEMORY, DEFAULT_TIMEOUT, Limits, MAX_MEMORY, MIN_MEMORY, RetryPolicy,
};
use super::tree::{Node, Section, integer};
use super::units::{duration, format_size, size};

/// A value with the path and node it was read from, or `None` for a default.
type Setting<'a, T> = (T, Option<(String, &'a Node)>);

/// Reads `key` with `read`, or returns `default` when the key is absent.
fn setting<'a, T>(
    section: &Section<'a>,
    key: &str,
    default: T,
    read: impl FnOnce(&Node, &str) -> Option<T>,
) -> Option<Setting<'a, T>> {
    match section.get(key) {
        Some((path, node)) => read(node, &path).map(|value| (value, Some((path, node)))),
        None => Some((default, None)),
    }
}

pub(crate) fn retry(node: &Node, path: &str, errors: &mut ConfigErrors) -> Option<RetryPolicy> {
    let section = Section::new(
        node,
        path,
        &["max_attempts", "initial_backoff", "max_backoff"],
        errors,
    )?;

    let max_attempts = setting(
        &section,
        "max_attempts",
        DEFAULT_MAX_ATTEMPTS,
        |node, path| integer(node, path, 1, u32::MAX.into(), errors).map(|n| n as u32),
    );
    let initial = setting(
        &section,
        "initial_backoff",
        DEFAULT_INITIAL_BACKOFF,
        |node, path| positive(duration(node, path, "1s", errors)?, node, path, errors),
    );
    let max = setting(
        &section,
        "max_backoff",
        DEFAULT_MAX_BACKOFF,
        |node, path| duration(node, path, "60s", errors),
    );

    let ((max_attempts, _), (initial, initial_at), (max, max_at)) = (max_attempts?, initial?, max?);
    if max < initial {
        // Point at whichever of the two was written, because a default cannot be the mistake.
        let (path, node) = max_at.or(initial_at).expect("the defaults are ordered");
        errors.push_at(
            &path,
            node.location,
            format!(
                "max_backoff ({}) is less than initial_backoff ({})",
                format_duration(max),
                format_duration(initial)
            ),
            Some("raise `max_backoff` or lower `initial_backoff`".to_owned()),
        );
        return None;
    }

    Some(RetryPolicy {
        max_attempts,
        initial_backoff: initial,
        max_backoff: max,
    })
}

pub(crate) fn limits(node: &Node, path: &str, errors: &mut ConfigErrors) -> Option<Limits> {
    let section = Section::new(
        node,
        path,
        &["timeout", "memory", "max_message_size"],
        errors,
    )?;

    let timeout = setting(&section, "timeout", DEFAULT_TIMEOUT, |node, path| {
        positive(duration(node, path, "5s", errors)?, node, path, errors)
    });
    let memory = setting(&section, "memory", DEFAULT_MEMORY, |node, path| {
        let bytes = size(node, path, "64MiB", errors)?;
        if (MIN_MEMORY..=MAX_MEMORY).contains(&bytes) {
            return Some(bytes);
        }
        errors.push_at(
            path,
            node.location,
            format!("memory of {} is out of range", format_size(bytes)),
            Some(format!(
                "use {} (one WebAssembly page) to {} (the most 32-bit memory can address)",
                format_size(MIN_MEMORY),
                format_size(MAX_MEMORY)
            )),
        );
        None
    });
    let max_message_size = setting(
        &section,
        "max_message_size",
        DEFAULT_MAX_MESSAGE_SIZE,
        |node, path| {
            let bytes = size(node, path, "1MiB", errors)?;
            if bytes > 0 {
                return Some(bytes);
            }
            errors.push_at(
                path,
                node.location,
                "max_message_size is 0",
                Some("use at least 1 byte, for example `1MiB`".into()),
            );
            None
        },
    );

    let ((timeout, _), (memory, memory_at), (max_message_size, size_at)) =
        (timeout?, memory?, max_message_size?);
    if max_message_size >= memory {
        let (path, node) = size_at.or(memory_at).expect("the defaults are ordered");
        errors.push_at(
            &path,
            node.location,
            format!(
                "max_message_size ({}) is not less than memory ({})",
                format_size(max_message_size),
                format_size(memory)
            ),
            Some("the payload is copied into the instance's memory; raise `memory` or lower `max_message_size`".to_owned()),
        );
        return None;
    }

    Some(Limits {
        timeout,
        memory,
        max_message_size,
    })
}

/// Returns the duration if it is above zero, and reports it otherwise.
fn positive(
    value: Duration,
    node: &Node,
    path: &str,
    errors: &mut ConfigErrors,
) -> Option<Duration> {
    if !value.is_zero() {
        return Some(value);
    }
    errors.push_at(
        path,
        node.location,
        "the duration is 0",
        Some("use at least `1ms`".to_owned()),
    );
    None
}

/// Formats a duration in the largest unit that divides it, as the file would write it.
fn format_duration(value: Duration) -> String {
    let millis = value.as_millis();
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if millis >= size && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}
