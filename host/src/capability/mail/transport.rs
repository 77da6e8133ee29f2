//! Mail transports, built from a transport URL.
//!
//! - `file://DIR`: one `.eml` file per email in the folder DIR, which is created when missing.
//!   `file://outbox` is relative to the working folder, `file:///var/outbox` is absolute.
//! - `smtp://[user:password@]host[:port][?tls=starttls|tls|none]`: STARTTLS by default, on
//!   port 587, and the send fails when the server does not offer it. `tls=tls` is TLS from
//!   the first byte (port 465). `tls=none` sends in plain text (port 25), for local test
//!   servers.
//! - `smtps://[user:password@]host[:port]`: TLS from the first byte, port 465 by default.
//!
//! The user name and password are percent-decoded. Credentials are refused without TLS
//! unless the host is a loopback address, because they would cross the network in clear.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use percent_encoding::percent_decode_str;
use url::Url;

use super::CapturedEmail;

/// Time limit for each SMTP command and for connecting. A server that has not responded in
/// this time is treated as unreachable, and the stage retries later.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(super) enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One `.eml` file per email, written under a temporary name and then renamed, so a
    /// crash never leaves half an email in the folder.
    File { folder: PathBuf },
    Capture(Arc<Mutex<Vec<CapturedEmail>>>),
}

/// Builds the transport that `url` names. Creates the folder of a `file://` transport.
pub(super) fn from_url(url: &str) -> anyhow::Result<Transport> {
    let redacted = redact(url);

    // `file://outbox` would parse as a URL with the host `outbox`, so the path is taken as
    // written.
    if let Some(folder) = url.strip_prefix("file://") {
        if folder.is_empty() {
            bail!(
                "invalid mail transport `{redacted}`: expected a folder after file://, as in file://outbox"
            );
        }
        let folder = PathBuf::from(folder);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating the outbox folder `{}` failed", folder.display()))?;
        return Ok(Transport::File { folder });
    }

    let parsed = Url::parse(url).with_context(|| format!("invalid mail transport `{redacted}`"))?;
    smtp(&parsed).with_context(|| format!("invalid mail transport `{redacted}`"))
}

fn smtp(url: &Url) -> anyhow::Result<Transport> {
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        _ => bail!("the host is missing, as in smtp://mail.example.com:587"),
    };
    if !matches!(url.path(), "" | "/") {
        bail!("an SMTP URL has no path");
    }

    let implicit_tls = match url.scheme() {
        "smtp" => false,
        "smtps" => true,
        other => bail!("unsupported scheme `{other}`: expected file://, smtp:// or smtps://"),
    };
    let mut mode = if implicit_tls { "tls" } else { "starttls" };
    for (name, value) in url.query_pairs() {
        if name != "tls" {
            bail!("unknown parameter `{name}`: the only parameter is `tls`");
        }
        mode = match value.as_ref() {
            "starttls" => "starttls",
            "tls" => "tls",
            "none" => "none",
            other => bail!("unknown tls mode `{other}`: expected starttls, tls or none"),
        };
    }
    if implicit_tls && mode != "tls" {
        bail!("smtps:// always uses TLS; use smtp:// with tls=starttls or tls=none");
    }

    let (tls, default_port) = match mode {
        "starttls" => (Tls::Required(TlsParameters::new(host.clone())?), 587),
        "tls" => (Tls::Wrapper(TlsParameters::new(host.clone())?), 465),
        _ => (Tls::None, 25),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(url.port().unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT));

    match (url.username(), url.password()) {
        ("", None) => {}
        (user, Some(password)) if !user.is_empty() => {
            if mode == "none" && !is_loopback(&host) {
                bail!(
                    "credentials would be sent without encryption to `{host}`; use tls=starttls, \
                     tls=tls or smtps://"
                );
            }
            builder = builder.credentials(Credentials::new(decode(user)?, decode(password)?));
        }
        _ => bail!("give both a user name and a password, as in smtp://user:password@host"),
    }
    Ok(Transport::Smtp(builder.build()))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Percent-decodes URL user info. The error never contains the text, which may be a password.
fn decode(text: &str) -> anyhow::Result<String> {
    match percent_decode_str(text).decode_utf8() {
        Ok(decoded) => Ok(decoded.into_owned()),
        Err(_) => bail!("the user name or password is not valid UTF-8 after percent-decoding"),
    }
}

/// Returns `url` with the password replaced by `***`, for messages and logs.
pub(super) fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // `set_password` fails only on URLs that cannot carry credentials, and this one
            // already carries a password.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // An unparsable URL may still hold a password: show only its scheme.
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "…".to_owned(),
        },
    }
}
