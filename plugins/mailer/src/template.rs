//! `{{name}}` templates for the subject and bodies of an email.

/// A parsed template: literal text and the placeholders between it.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Placeholder(String),
}

impl Template {
    /// Parses `source`, in which `{{name}}` or `{{ name }}` marks a placeholder.
    ///
    /// There is no escape for a literal `{{`. A `}}` outside a placeholder is literal text.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after_open = &rest[start + 2..];
            let offset = source.len() - rest.len() + start;
            let Some(end) = after_open.find("}}") else {
                return Err(format!("the `{{{{` at byte {offset} has no closing `}}}}`"));
            };

            let name = after_open[..end].trim();
            if name.is_empty() || name.contains("{{") {
                return Err(format!(
                    "the placeholder at byte {offset} has no name; write `{{{{field}}}}`"
                ));
            }
            parts.push(Part::Placeholder(name.to_string()));
            rest = &after_open[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Renders the template, passing each value through `escape`.
    ///
    /// `lookup` returns the value of a placeholder, or `None` when the name is unknown. The
    /// error lists the unknown names, each once.
    pub fn render(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
        escape: impl Fn(&str) -> String,
    ) -> Result<String, Vec<String>> {
        let mut output = String::new();
        let mut unknown: Vec<String> = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => output.push_str(text),
                Part::Placeholder(name) => match lookup(name) {
                    Some(value) => output.push_str(&escape(&value)),
                    None if unknown.contains(name) => {}
                    None => unknown.push(name.clone()),
                },
            }
        }
        if unknown.is_empty() {
            Ok(output)
        } else {
            Err(unknown)
        }
    }
}

/// Escapes a value for HTML text and attribute values.
pub fn escape_html(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Replaces control characters with spaces, so that a value cannot break the subject
/// header into several lines.
pub fn escape_header(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Returns the value unchanged, for the plain text body.
pub fn escape_nothing(value: &str) -> String {
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "title" => Some("Tom & Jerry <3".to_string()),
            "year" => Some("1998".to_string()),
            "director" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn render_fills_placeholders() {
        let template = Template::parse("Stored: {{title}} ({{ year }}){{director}}.").unwrap();

        let text = template.render(lookup, escape_nothing).unwrap();

        assert_eq!(text, "Stored: Tom & Jerry <3 (1998).");
    }

    #[test]
    fn render_escapes_html_values_only() {
        let template = Template::parse("<b>{{title}}</b>").unwrap();

        let html = template.render(lookup, escape_html).unwrap();

        assert_eq!(html, "<b>Tom &amp; Jerry &lt;3</b>");
    }

    #[test]
    fn render_lists_unknown_names_once() {
        let template = Template::parse("{{titel}} {{year}} {{titel}} {{genre}}").unwrap();

        let unknown = template.render(lookup, escape_nothing).unwrap_err();

        assert_eq!(unknown, ["titel", "genre"]);
    }

    #[test]
    fn parse_keeps_text_without_placeholders() {
        let template = Template::parse("no fields }} here").unwrap();

        assert_eq!(
            template.render(lookup, escape_nothing).unwrap(),
            "no fields }} here"
        );
    }

    #[test]
    fn parse_rejects_unclosed_and_empty_placeholders() {
        assert_eq!(
            Template::parse("Stored: {{title").unwrap_err(),
            "the `{{` at byte 8 has no closing `}}`"
        );
        assert_eq!(
            Template::parse("a {{ }} b").unwrap_err(),
            "the placeholder at byte 2 has no name; write `{{field}}`"
        );
        assert!(Template::parse("{{ {{title}}").is_err());
    }

    #[test]
    fn escape_header_removes_line_breaks() {
        assert_eq!(
            escape_header("Title\r\nBcc: someone"),
            "Title  Bcc: someone"
        );
    }
}
