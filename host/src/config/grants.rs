//! Validation of a stage's `grants`, against the backend sections and the stage's outputs.

use std::collections::BTreeMap;

use super::errors::{ConfigErrors, Location};
use super::model::Grant;
use super::tree::{Section, Value, index_path, string};

/// Presence of each backend section in the file, valid or not.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backends {
    pub database: bool,
    pub mail: bool,
}

/// One valid entry of `grants`, with where it was written.
pub(crate) struct GrantEntry {
    pub grant: Grant,
    path: String,
    location: Location,
}

pub(crate) fn grants(
    section: &Section<'_>,
    backends: Backends,
    errors: &mut ConfigErrors,
) -> Option<Vec<GrantEntry>> {
    let Some((path, node)) = section.get("grants") else {
        return Some(Vec::new());
    };
    let Value::Seq(items) = &node.value else {
        errors.push_at(
            &path,
            node.location,
            format!("expected a list of grants, found {}", node.kind()),
            Some("write `grants: [database, publish]`".to_owned()),
        );
        return None;
    };

    let mut entries: Vec<GrantEntry> = Vec::new();
    let mut complete = true;
    for (index, item) in items.iter().enumerate() {
        let path = index_path(&path, index);
        let Some(text) = string(item, &path, errors) else {
            complete = false;
            continue;
        };
        let Some(grant) = Grant::parse(&text) else {
            let valid: Vec<&str> = Grant::ALL
                .iter()
                .map(|grant| grant.interface_name())
                .collect();
            errors.push_at(
                &path,
                item.location,
                format!("unknown grant `{text}`"),
                Some(format!("valid grants: {}", valid.join(", "))),
            );
            complete = false;
            continue;
        };

        // A repeated grant gets one report, not a second one for its missing section.
        if entries.iter().any(|entry| entry.grant == grant) {
            errors.push_at(
                &path,
                item.location,
                format!("grant `{grant}` is listed twice"),
                Some("remove one".into()),
            );
            complete = false;
            continue;
        }

        let missing_section = match grant {
            Grant::Database if !backends.database => Some(
                "add a `database:` section, for example `database: { url: sqlite://magnetar.db }`",
            ),
            Grant::Mail if !backends.mail => Some(
                "add a `mail:` section, for example `mail: { transport: file://outbox, from: \"Magnetar <catalogue@example.com>\" }`",
            ),
            _ => None,
        };
        if let Some(hint) = missing_section {
            errors.push_at(
                &path,
                item.location,
                format!("`{grant}` is granted but the file has no `{grant}` section"),
                Some(hint.to_owned()),
            );
            complete = false;
        }

        entries.push(GrantEntry {
            grant,
            path,
            location: item.location,
        });
    }
    complete.then_some(entries)
}

/// Reports `publish` without outputs, and outputs that nothing can publish to.
pub(crate) fn check_publish(
    section: &Section<'_>,
    outputs: &BTreeMap<String, String>,
    grants: &[GrantEntry],
    errors: &mut ConfigErrors,
) {
    let publish = grants.iter().find(|entry| entry.grant == Grant::Publish);
    match (publish, outputs.is_empty()) {
        (Some(entry), true) => errors.push_at(
            &entry.path,
            entry.location,
            "`publish` is granted but the stage has no outputs",
            Some("add `outputs: { default: <topic> }`, or remove `publish`".to_owned()),
        ),
        (None, false) => {
            let (path, node) = section.get("outputs").expect("outputs are not empty");
            errors.push_at(
                &path,
                node.location,
                "outputs are declared but `publish` is not granted",
                Some("add `publish` to `grants`, or remove `outputs`".to_owned()),
            );
        }
        _ => {}
    }
}
