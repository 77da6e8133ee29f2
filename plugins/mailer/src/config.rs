//! The stage's `config` section: recipients and the templates of the email.

use serde::Deserialize;

use crate::template::Template;

/// Validated mailer configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub reply_to: Option<String>,
    pub subject: Template,
    pub text: Template,
    pub html: Option<Template>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    to: Addresses,
    #[serde(default)]
    cc: Option<Addresses>,
    reply_to: Option<String>,
    subject: String,
    text: String,
    html: Option<String>,
}

/// One address or a list, so that `to: films@example.com` works as well as a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    fn into_vec(self) -> Vec<String> {
        match self {
            Addresses::One(address) => vec![address],
            Addresses::Many(addresses) => addresses,
        }
    }
}

impl Config {
    /// Parses the JSON that `config::get-json` returns and checks it as a whole.
    ///
    /// Addresses are only checked for being present: the host's mail transport parses
    /// them, and reports a bad one as an invalid email.
    pub fn parse(json: &str) -> Result<Config, String> {
        let raw: RawConfig = serde_json::from_str(json)
            .map_err(|error| format!("invalid mailer config: {error}"))?;
        let mut problems = Vec::new();

        let to = raw.to.into_vec();
        let cc = raw.cc.map(Addresses::into_vec).unwrap_or_default();
        if to.is_empty() {
            problems.push("to: no recipient is listed".to_string());
        }
        check_addresses("to", &to, &mut problems);
        check_addresses("cc", &cc, &mut problems);
        if raw
            .reply_to
            .as_deref()
            .is_some_and(|address| address.trim().is_empty())
        {
            problems.push("reply_to: the address is empty".to_string());
        }
        if raw.subject.trim().is_empty() {
            problems.push("subject: the template is empty".to_string());
        }

        let subject = parse_template("subject", &raw.subject, &mut problems);
        let text = parse_template("text", &raw.text, &mut problems);
        let html = raw
            .html
            .map(|html| parse_template("html", &html, &mut problems));

        if !problems.is_empty() {
            return Err(format!("invalid mailer config: {}", problems.join("; ")));
        }
        Ok(Config {
            to,
            cc,
            reply_to: raw.reply_to,
            subject: subject.expect("no problems, so the template parsed"),
            text: text.expect("no problems, so the template parsed"),
            html: html.map(|html| html.expect("no problems, so the template parsed")),
        })
    }
}

fn check_addresses(path: &str, addresses: &[String], problems: &mut Vec<String>) {
    for (index, address) in addresses.iter().enumerate() {
        if address.trim().is_empty() {
            problems.push(format!("{path}[{index}]: the address is empty"));
        }
    }
}

fn parse_template(path: &str, source: &str, problems: &mut Vec<String>) -> Option<Template> {
    Template::parse(source)
        .map_err(|error| problems.push(format!("{path}: {error}")))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_full_config() {
        let json = r#"{
            "to": ["films@example.com", "archive@example.com"],
            "cc": ["boss@example.com"],
            "reply_to": "noreply@example.com",
            "subject": "Stored: {{title}}",
            "text": "{{title}} ({{release_date}})",
            "html": "<p>{{title}}</p>"
        }"#;

        let config = Config::parse(json).unwrap();

        assert_eq!(config.to, ["films@example.com", "archive@example.com"]);
        assert_eq!(config.cc, ["boss@example.com"]);
        assert_eq!(config.reply_to.as_deref(), Some("noreply@example.com"));
        assert!(config.html.is_some());
    }

    #[test]
    fn parse_accepts_single_address_and_defaults() {
        let json = r#"{ "to": "films@example.com", "subject": "Stored", "text": "" }"#;

        let config = Config::parse(json).unwrap();

        assert_eq!(config.to, ["films@example.com"]);
        assert!(config.cc.is_empty());
        assert_eq!(config.reply_to, None);
        assert_eq!(config.html, None);
    }

    #[test]
    fn parse_reports_every_problem() {
        let json = r#"{
            "to": [], "cc": ["", "x@example.com"], "reply_to": " ",
            "subject": " ", "text": "{{title", "html": "{{}}"
        }"#;

        let error = Config::parse(json).unwrap_err();

        assert_eq!(
            error,
            "invalid mailer config: to: no recipient is listed; cc[0]: the address is empty; \
             reply_to: the address is empty; subject: the template is empty; text: the `{{` at \
             byte 0 has no closing `}}`; html: the placeholder at byte 0 has no name; write \
             `{{field}}`"
        );
    }

    #[test]
    fn parse_rejects_unknown_keys() {
        let json = r#"{ "to": "a@example.com", "subject": "s", "text": "t", "bcc": [] }"#;

        let error = Config::parse(json).unwrap_err();

        assert!(error.contains("unknown field `bcc`"), "{error}");
    }
}
