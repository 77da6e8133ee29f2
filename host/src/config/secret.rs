//! Wrappers that keep tokens and passwords out of `Debug` output, logs and error messages.

use std::fmt;

use url::Url;

const REDACTED: &str = "***";

/// Query parameters whose values are hidden when a URL is printed. A name matches when it
/// contains one of these words, ignoring case, as `password`, `sslpassword` or `api_key`.
const SECRET_QUERY_WORDS: &[&str] = &["pass", "pwd", "secret", "token", "key", "auth"];

/// A token or password. `Debug` and `Display` print `***`, and [`Secret::expose`] returns it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret itself, for handing to the broker client or the SMTP transport.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A URL that may carry a password, in its user info or in a query parameter.
/// `Debug` and `Display` print it with those values replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    pub fn new(url: Url) -> Self {
        Self(url)
    }

    /// Returns the complete URL, password included, for connecting.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// Returns the URL with its password and secret query values replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Fails only for URLs that cannot have a password, which then have none to hide.
            let _ = url.set_password(Some(REDACTED));
        }

        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(name, value)| {
                    let value = if is_secret_parameter(&name) {
                        REDACTED.into()
                    } else {
                        value.into_owned()
                    };
                    (name.into_owned(), value)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }

        url.to_string()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_QUERY_WORDS.iter().any(|word| name.contains(word))
}

/// Returns URL text that may not parse with everything between `://` and the last `@`
/// replaced by `***`, and the whole query hidden if it names a secret parameter.
/// Used when an invalid URL is echoed in an error message.
pub(crate) fn redact_url_text(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(index) => (&text[..index + 3], &text[index + 3..]),
        None => ("", text),
    };

    // Where the authority ends is unknown, because a password may contain `/` or `@`. So hide
    // everything up to the last `@`, which hides too much rather than too little.
    let rest = match rest.rfind('@') {
        Some(index) => format!("{REDACTED}{}", &rest[index..]),
        None => rest.to_owned(),
    };

    let rest = match rest.split_once('?') {
        Some((before, query)) if query.split('&').any(is_secret_parameter) => {
            format!("{before}?{REDACTED}")
        }
        _ => rest,
    };

    format!("{scheme}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_and_display_hide_value() {
        let secret = Secret::new("eyJhbGciOi");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.to_string(), "***");
        assert_eq!(secret.expose(), "eyJhbGciOi");
    }

    #[test]
    fn secret_url_hides_password_and_secret_parameters() {
        let url =
            Url::parse("postgres://app:hunter2@db:5432/shop?sslmode=require&password=x2").unwrap();
        let url = SecretUrl::new(url);
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db:5432/shop?sslmode=require&password=***"
        );
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(!format!("{url:?}").contains("x2"));
        assert_eq!(url.expose().password(), Some("hunter2"));
    }

    #[test]
    fn redact_url_text_hides_user_info() {
        assert_eq!(
            redact_url_text("mysql://app:pa/ss@wo@rd@db:99999/x"),
            "mysql://***@db:99999/x"
        );
        assert_eq!(
            redact_url_text("smtp://host:25?token=abc"),
            "smtp://host:25?***"
        );
        assert_eq!(redact_url_text("pulsar://host:x"), "pulsar://host:x");
    }
}
