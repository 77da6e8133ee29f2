//! The "stored" event that db-writer publishes, and the email rendered from it.

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::bindings::magnetar::stage::mail::Email;
use crate::config::Config;
use crate::template::{Template, escape_header, escape_html, escape_nothing};

/// `{"id": ..., "table": ..., "record": {column: value, ...}}`, as db-writer publishes it.
/// Other top-level fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoredEvent {
    pub id: String,
    pub table: String,
    pub record: Map<String, Json>,
}

impl StoredEvent {
    pub fn parse(payload: &[u8]) -> Result<StoredEvent, String> {
        serde_json::from_slice(payload).map_err(|error| {
            format!(
                "the payload is not a stored event ({{\"id\": ..., \"table\": ..., \"record\": \
                 {{...}}}}): {error}"
            )
        })
    }

    /// Returns the text of a placeholder: `id` and `table` are the event's, any other name
    /// is a field of the record. A null field renders as empty text, and an unknown name
    /// returns `None`.
    pub fn lookup(&self, name: &str) -> Option<String> {
        match name {
            "id" => return Some(self.id.clone()),
            "table" => return Some(self.table.clone()),
            _ => {}
        }
        let text = match self.record.get(name)? {
            Json::Null => String::new(),
            Json::String(text) => text.clone(),
            other => other.to_string(),
        };
        Some(text)
    }

    /// Renders the email for this event.
    ///
    /// A placeholder that names no field is an error, because the email would otherwise go
    /// out with a silent gap. It usually means a typo in the template.
    pub fn render_email(&self, config: &Config, message_id: String) -> Result<Email, String> {
        let mut problems = Vec::new();
        let subject = self.render("subject", &config.subject, escape_header, &mut problems);
        let text_body = self.render("text", &config.text, escape_nothing, &mut problems);
        let html_body = config
            .html
            .as_ref()
            .map(|html| self.render("html", html, escape_html, &mut problems));

        if !problems.is_empty() {
            let mut fields = vec!["id".to_string(), "table".to_string()];
            fields.extend(self.record.keys().cloned());
            return Err(format!(
                "{}, so the email for {:?} cannot be rendered (fields: {})",
                problems.join("; "),
                self.id,
                fields.join(", ")
            ));
        }
        Ok(Email {
            to: config.to.clone(),
            cc: config.cc.clone(),
            reply_to: config.reply_to.clone(),
            subject,
            text_body,
            html_body,
            message_id: Some(message_id),
        })
    }

    fn render(
        &self,
        path: &str,
        template: &Template,
        escape: fn(&str) -> String,
        problems: &mut Vec<String>,
    ) -> String {
        template
            .render(|name| self.lookup(name), escape)
            .unwrap_or_else(|unknown| {
                let names: Vec<String> = unknown
                    .iter()
                    .map(|name| format!("{{{{{name}}}}}"))
                    .collect();
                problems.push(format!(
                    "the {path} template uses {}, but the stored event has no such field",
                    names.join(", ")
                ));
                String::new()
            })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> StoredEvent {
        let payload = json!({
            "id": "The Land Girls (1998-06-12)",
            "table": "movies",
            "record": {
                "title": "The Land Girls", "release_date": "1998-06-12",
                "us_gross": 146083, "imdb_rating": 6.1, "director": null
            }
        });
        StoredEvent::parse(payload.to_string().as_bytes()).unwrap()
    }

    fn config(subject: &str, text: &str, html: Option<&str>) -> Config {
        let json =
            json!({ "to": ["films@example.com"], "subject": subject, "text": text, "html": html });
        Config::parse(&json.to_string()).unwrap()
    }

    #[test]
    fn lookup_formats_record_values() {
        let event = event();

        assert_eq!(event.lookup("id").unwrap(), "The Land Girls (1998-06-12)");
        assert_eq!(event.lookup("table").unwrap(), "movies");
        assert_eq!(event.lookup("title").unwrap(), "The Land Girls");
        assert_eq!(event.lookup("us_gross").unwrap(), "146083");
        assert_eq!(event.lookup("imdb_rating").unwrap(), "6.1");
        assert_eq!(event.lookup("director").unwrap(), "");
        assert_eq!(event.lookup("producer"), None);
    }

    #[test]
    fn render_email_fills_every_part() {
        let config = config(
            "Stored: {{title}}",
            "{{title}} was released on {{release_date}}. Director: {{director}}",
            Some("<p>{{title}} &mdash; {{imdb_rating}}</p>"),
        );

        let email = event()
            .render_email(&config, "<id@magnetar>".into())
            .unwrap();

        assert_eq!(email.to, ["films@example.com"]);
        assert_eq!(email.subject, "Stored: The Land Girls");
        assert_eq!(
            email.text_body,
            "The Land Girls was released on 1998-06-12. Director: "
        );
        assert_eq!(
            email.html_body.as_deref(),
            Some("<p>The Land Girls &mdash; 6.1</p>")
        );
        assert_eq!(email.message_id.as_deref(), Some("<id@magnetar>"));
    }

    #[test]
    fn render_email_rejects_unknown_placeholders() {
        let config = config("Stored: {{titel}}", "{{title}} {{genre}}", None);

        let error = event()
            .render_email(&config, "<id@magnetar>".into())
            .unwrap_err();

        assert_eq!(
            error,
            "the subject template uses {{titel}}, but the stored event has no such field; the \
             text template uses {{genre}}, but the stored event has no such field, so the email \
             for \"The Land Girls (1998-06-12)\" cannot be rendered (fields: id, table, director, \
             imdb_rating, release_date, title, us_gross)"
        );
    }

    #[test]
    fn parse_rejects_other_payloads() {
        let error = StoredEvent::parse(b"{\"Title\": \"The Land Girls\"}").unwrap_err();

        assert!(
            error.starts_with("the payload is not a stored event"),
            "{error}"
        );
        assert!(error.contains("missing field `id`"), "{error}");
    }
}
