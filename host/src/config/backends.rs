//! Validation of the capability backends: the `database` and `mail` sections.

use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use percent_encoding::percent_decode_str;
use url::Url;

use super::errors::ConfigErrors;
use super::model::{
    DEFAULT_MAX_CONNECTIONS, DatabaseConfig, DatabaseUrl, MailConfig, MailTransport,
    SmtpCredentials, SmtpSettings, SmtpTls,
};
use super::secret::{Secret, SecretUrl, redact_url_text};
use super::tree::{Node, Section, describe, integer, string};
use super::validate::absolute;

const DATABASE_EXAMPLES: &str = "write `sqlite://magnetar.db`, `mysql://user:password@host:3306/db`, \
                                 `mariadb://…` or `postgres://user:password@host:5432/db`";

const MAIL_EXAMPLES: &str = "write `file://outbox`, `smtp://user:password@host:587` (STARTTLS), \
                             `smtps://user:password@host:465` or `smtp://127.0.0.1:2525?tls=none`";

pub(crate) fn database(
    node: &Node,
    path: &str,
    base_dir: &Path,
    errors: &mut ConfigErrors,
) -> Option<DatabaseConfig> {
    let section = Section::new(
        node,
        path,
        &["url", "migrations", "max_connections"],
        errors,
    )?;

    let url = section
        .require("url", "url: sqlite://magnetar.db", errors)
        .and_then(|(path, node)| {
            let text = string(node, &path, errors)?;
            database_url(&text, base_dir)
                .map_err(|(message, hint)| {
                    errors.push_at(&path, node.location, message, Some(hint))
                })
                .ok()
        });

    let migrations = match section.get("migrations") {
        None => Some(None),
        Some((path, node)) => {
            let folder = string(node, &path, errors).map(|text| absolute(&base_dir.join(text)));
            match (folder, &url) {
                (Some(folder), Some(url)) => {
                    let backend_folder = folder.join(url.backend().name());
                    if backend_folder.is_dir() {
                        Some(Some(backend_folder))
                    } else {
                        errors.push_at(
                            &path,
                            node.location,
                            format!("migrations folder `{}` not found", backend_folder.display()),
                            Some(format!(
                                "create it with the {} migration files, or remove `migrations`",
                                url.backend().name()
                            )),
                        );
                        None
                    }
                }
                // The URL decides the subfolder. An invalid URL is reported already.
                _ => None,
            }
        }
    };

    let max_connections = match section.get("max_connections") {
        None => Some(DEFAULT_MAX_CONNECTIONS),
        Some((path, node)) => integer(node, &path, 1, u32::MAX.into(), errors).map(|n| n as u32),
    };

    Some(DatabaseConfig {
        url: url?,
        migrations: migrations?,
        max_connections: max_connections?,
    })
}

/// Parses a database URL, resolving a relative SQLite path against `base_dir`.
fn database_url(text: &str, base_dir: &Path) -> Result<DatabaseUrl, (String, String)> {
    let redacted = redact_url_text(text);
    let invalid = |reason: &str| {
        (
            format!("invalid database URL `{redacted}`: {reason}"),
            DATABASE_EXAMPLES.to_owned(),
        )
    };

    if let Some(rest) = text
        .strip_prefix("sqlite://")
        .or_else(|| text.strip_prefix("sqlite:"))
    {
        return sqlite_path(rest, base_dir)
            .map(DatabaseUrl::Sqlite)
            .map_err(|(reason, hint)| {
                (format!("invalid database URL `{redacted}`: {reason}"), hint)
            });
    }

    let mut url = Url::parse(text).map_err(|error| invalid(&error.to_string()))?;
    match url.scheme() {
        "mysql" | "mariadb" => {
            if url.path().trim_matches('/').is_empty() {
                return Err(invalid(
                    "the database name is missing, as in mysql://host:3306/magnetar",
                ));
            }
            // Both are non-special schemes, so the url crate allows switching between them.
            let _ = url.set_scheme("mysql");
            Ok(DatabaseUrl::MySql(SecretUrl::new(url)))
        }
        "postgres" | "postgresql" => {
            let _ = url.set_scheme("postgres");
            Ok(DatabaseUrl::Postgres(SecretUrl::new(url)))
        }
        scheme => Err(invalid(&format!("unsupported scheme `{scheme}`"))),
    }
}

/// Returns the absolute path of a SQLite file, or the reason it is invalid and a hint.
fn sqlite_path(rest: &str, base_dir: &Path) -> Result<PathBuf, (String, String)> {
    if rest.contains('?') {
        return Err((
            "query parameters are not supported in SQLite URLs".into(),
            "remove everything from `?` on".into(),
        ));
    }
    if rest.is_empty() || rest == ":memory:" {
        return Err((
            "in-memory databases are not supported, because each pooled connection would see \
             its own empty database"
                .into(),
            "give a file path, as `sqlite://magnetar.db`".into(),
        ));
    }

    let file = absolute(&base_dir.join(rest));
    match file.parent() {
        Some(folder) if !folder.is_dir() => Err((
            format!(
                "folder `{}` for the database file does not exist",
                folder.display()
            ),
            "create the folder or change the path".into(),
        )),
        _ => Ok(file),
    }
}

pub(crate) fn mail(
    node: &Node,
    path: &str,
    base_dir: &Path,
    errors: &mut ConfigErrors,
) -> Option<MailConfig> {
    let section = Section::new(node, path, &["transport", "from"], errors)?;

    let transport = section
        .require("transport", "transport: file://outbox", errors)
        .and_then(|(path, node)| {
            let text = string(node, &path, errors)?;
            mail_transport(&text, base_dir)
                .map_err(|(message, hint)| {
                    errors.push_at(&path, node.location, message, Some(hint))
                })
                .ok()
        });

    let from = section
        .require("from", "from: \"Magnetar <catalogue@example.com>\"", errors)
        .and_then(|(path, node)| {
            let text = string(node, &path, errors)?;
            match text.parse::<Mailbox>() {
                Ok(mailbox) => Some(mailbox),
                Err(error) => {
                    errors.push_at(
                        &path,
                        node.location,
                        format!("invalid sender {}: {}", describe(node), lowercase_first(&error.to_string())),
                        Some("write an address such as `Magnetar <catalogue@example.com>` or `catalogue@example.com`".to_owned()),
                    );
                    None
                }
            }
        });

    Some(MailConfig {
        transport: transport?,
        from: from?,
    })
}

/// Parses a mail transport URL, resolving a relative `file://` folder against `base_dir`.
fn mail_transport(text: &str, base_dir: &Path) -> Result<MailTransport, (String, String)> {
    let redacted = redact_url_text(text);
    let invalid = |reason: &str| {
        (
            format!("invalid mail transport `{redacted}`: {reason}"),
            MAIL_EXAMPLES.to_owned(),
        )
    };

    // `file://outbox` would parse as a URL with host `outbox`, so file paths are split by hand.
    if let Some(folder) = text.strip_prefix("file://") {
        if folder.is_empty() || folder.contains('?') {
            return Err(invalid("expected a folder path after file://"));
        }
        return Ok(MailTransport::File(absolute(&base_dir.join(folder))));
    }

    let url = Url::parse(text).map_err(|error| invalid(&error.to_string()))?;
    let implicit_tls = match url.scheme() {
        "smtp" => false,
        "smtps" => true,
        scheme => return Err(invalid(&format!("unsupported scheme `{scheme}`"))),
    };
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => host.to_owned(),
        _ => return Err(invalid("the host is missing")),
    };
    if !matches!(url.path(), "" | "/") {
        return Err(invalid("an SMTP URL has no path"));
    }

    let mut tls = if implicit_tls {
        SmtpTls::Tls
    } else {
        SmtpTls::StartTls
    };
    for (name, value) in url.query_pairs() {
        if name != "tls" {
            return Err(invalid(&format!(
                "unknown parameter `{name}`; the only parameter is `tls`"
            )));
        }
        tls = match value.as_ref() {
            "starttls" => SmtpTls::StartTls,
            "tls" => SmtpTls::Tls,
            "none" => SmtpTls::Disabled,
            other => {
                let valid = SmtpTls::NAMES.join(", ");
                return Err(invalid(&format!(
                    "unknown tls mode `{other}`; valid modes: {valid}"
                )));
            }
        };
    }
    if implicit_tls && tls != SmtpTls::Tls {
        return Err(invalid(
            "smtps:// always uses TLS; use smtp:// for STARTTLS or no encryption",
        ));
    }

    let default_port = match tls {
        SmtpTls::Tls => 465,
        SmtpTls::StartTls => 587,
        SmtpTls::Disabled => 25,
    };

    let credentials = match (url.username(), url.password()) {
        ("", None) => None,
        (username, Some(password)) if !username.is_empty() => Some(SmtpCredentials {
            username: decode(username).map_err(|reason| invalid(&reason))?,
            password: Secret::new(decode(password).map_err(|reason| invalid(&reason))?),
        }),
        _ => {
            return Err(invalid(
                "give both user name and password, as smtp://user:password@host",
            ));
        }
    };

    Ok(MailTransport::Smtp(SmtpSettings {
        host,
        port: url.port().unwrap_or(default_port),
        tls,
        credentials,
    }))
}

/// Returns `text` with its first letter in lower case, to fit a library's message into ours.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Percent-decodes URL user info. The error never contains the text, which may be a password.
fn decode(text: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| {
            "the user name or password is not valid UTF-8 after percent-decoding".to_owned()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_resolves_sqlite_path_against_base_dir() {
        let base = std::env::temp_dir();
        let DatabaseUrl::Sqlite(path) = database_url("sqlite://magnetar.db", &base).unwrap() else {
            panic!("not sqlite");
        };
        assert_eq!(path, absolute(&base.join("magnetar.db")));
    }

    #[test]
    fn database_url_normalizes_server_schemes() {
        let base = Path::new("/");
        let DatabaseUrl::MySql(url) = database_url("mariadb://u:p@h:3306/db", base).unwrap() else {
            panic!("not mysql");
        };
        assert_eq!(url.expose().as_str(), "mysql://u:p@h:3306/db");
        let DatabaseUrl::Postgres(url) = database_url("postgresql://u@h/db", base).unwrap() else {
            panic!("not postgres");
        };
        assert_eq!(url.expose().scheme(), "postgres");
    }

    #[test]
    fn database_url_error_hides_password() {
        let (message, _) =
            database_url("mysql://app:hunter2@h:99999/db", Path::new("/")).unwrap_err();
        assert!(!message.contains("hunter2"), "{message}");
        let (message, _) = database_url("oracle://app:hunter2@h/db", Path::new("/")).unwrap_err();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("unsupported scheme `oracle`"), "{message}");
    }

    #[test]
    fn mail_transport_reads_smtp_settings() {
        let MailTransport::Smtp(smtp) =
            mail_transport("smtp://me%40x.org:p%3Ass@mail.x.org", Path::new("/")).unwrap()
        else {
            panic!("not smtp");
        };
        assert_eq!(smtp.host, "mail.x.org");
        assert_eq!(smtp.port, 587);
        assert_eq!(smtp.tls, SmtpTls::StartTls);
        let credentials = smtp.credentials.unwrap();
        assert_eq!(credentials.username, "me@x.org");
        assert_eq!(credentials.password.expose(), "p:ss");
    }

    #[test]
    fn mail_transport_picks_port_from_tls_mode() {
        let port = |text| match mail_transport(text, Path::new("/")).unwrap() {
            MailTransport::Smtp(smtp) => (smtp.port, smtp.tls),
            MailTransport::File(_) => panic!("not smtp"),
        };
        assert_eq!(port("smtps://h"), (465, SmtpTls::Tls));
        assert_eq!(port("smtp://h?tls=tls"), (465, SmtpTls::Tls));
        assert_eq!(port("smtp://h?tls=none"), (25, SmtpTls::Disabled));
        assert_eq!(
            port("smtp://127.0.0.1:2525?tls=none"),
            (2525, SmtpTls::Disabled)
        );
    }

    #[test]
    fn mail_transport_rejects_conflicts_and_unknown_parameters() {
        for text in [
            "smtps://h?tls=none",
            "smtp://h?tls=ssl",
            "smtp://h?auth=plain",
            "smtp://user@h",
            "ftp://h",
            "file://",
        ] {
            assert!(
                mail_transport(text, Path::new("/")).is_err(),
                "{text} was accepted"
            );
        }
    }
}
