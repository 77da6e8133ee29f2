//! The `mail` capability through the file transport, the capturing mailer, and SMTP to the
//! sink that `scripts/services start` runs (`scripts/smtp-sink.py`).
//!
//! The SMTP tests read MAGNETAR_TEST_SMTP_URL and MAGNETAR_TEST_SMTP_CONTROL (set them with
//! `eval "$(scripts/services env)"`) and fail when those are missing. The sink has one
//! fault mode for all its clients, so the tests here that send through it take
//! [`SINK_LOCK`], set a fault for one transaction only (`times: 1`) and reset it after.

use std::time::{SystemTime, UNIX_EPOCH};

use magnetar::bindings::mail::{Email, Error, Host};
use magnetar::capability::mail::{MailCtx, Mailer};
use magnetar::capability::{CallLog, CapabilityCall};
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

const FROM: &str = "Magnetar Tests <magnetar-tests@example.com>";

/// Serializes the tests of this binary that send through the SMTP sink.
static SINK_LOCK: Mutex<()> = Mutex::const_new(());

fn server_setting(variable: &str) -> String {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{variable} is not set. These tests need the SMTP sink: run `scripts/services start`, \
             then `eval \"$(scripts/services env)\"`, then the tests"
        ),
    }
}

/// Returns the sink's SMTP URL, in plain text because the sink has no TLS.
fn sink_transport() -> String {
    format!("{}?tls=none", server_setting("MAGNETAR_TEST_SMTP_URL"))
}

/// Returns a subject that no other test or run uses, to find the email in the sink.
fn unique_subject(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label} {}-{nanos}", std::process::id())
}

fn email(to: &[&str], subject: &str) -> Email {
    Email {
        to: to.iter().map(|address| address.to_string()).collect(),
        cc: vec![],
        reply_to: None,
        subject: subject.to_owned(),
        text_body: "Heat (1995-12-15) was stored.".to_owned(),
        html_body: None,
        message_id: None,
    }
}

/// Sends one request to the sink's HTTP control server and returns the status and body.
async fn control(method: &str, path: &str, body: Option<Json>) -> (u16, String) {
    let base = url::Url::parse(&server_setting("MAGNETAR_TEST_SMTP_CONTROL")).unwrap();
    let address = format!("{}:{}", base.host_str().unwrap(), base.port().unwrap());
    let body = body.map(|body| body.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );

    let mut stream = TcpStream::connect(&address)
        .await
        .unwrap_or_else(|error| panic!("connecting to {address} failed: {error}"));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();

    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

async fn set_fault(mode: &str, stage: &str, reason: &str) {
    let (status, body) = control(
        "PUT",
        "/mode",
        Some(json!({ "mode": mode, "stage": stage, "reason": reason, "times": 1 })),
    )
    .await;
    assert_eq!(status, 200, "setting the fault mode failed: {body}");
}

async fn reset_fault() {
    let (status, body) = control("PUT", "/mode", Some(json!({ "mode": "accept" }))).await;
    assert_eq!(status, 200, "resetting the fault mode failed: {body}");
}

/// Returns the sink's summary of the email with `subject`, if it arrived.
async fn received(subject: &str) -> Option<Json> {
    let (status, body) = control("GET", "/messages", None).await;
    assert_eq!(status, 200, "listing messages failed: {body}");
    let messages: Vec<Json> = serde_json::from_str(&body).unwrap();
    messages
        .into_iter()
        .find(|message| message["subject"] == subject)
}

fn only_eml(folder: &std::path::Path) -> String {
    let files: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    assert_eq!(files.len(), 1, "files in the outbox: {files:?}");
    std::fs::read_to_string(&files[0]).unwrap()
}

#[tokio::test]
async fn file_transport_writes_one_eml_with_headers() {
    let folder = tempfile::tempdir().unwrap();
    let outbox = folder.path().join("outbox");
    let mailer = Mailer::new(&format!("file://{}", outbox.display()), FROM).unwrap();
    assert!(outbox.is_dir(), "the outbox folder was not created");

    let mut sent = email(&["Ada Lovelace <ada@example.com>"], "Stored: Heat");
    sent.cc = vec!["grace@example.com".to_owned()];
    sent.reply_to = Some("desk@example.com".to_owned());
    sent.html_body = Some("<p>Heat was stored.</p>".to_owned());
    sent.message_id = Some("movie-42@notifications.example.com".to_owned());
    mailer.send(sent).await.unwrap();

    let eml = only_eml(&outbox);
    for header in [
        "From: \"Magnetar Tests\" <magnetar-tests@example.com>",
        "To: \"Ada Lovelace\" <ada@example.com>",
        "Cc: grace@example.com",
        "Reply-To: desk@example.com",
        "Subject: Stored: Heat",
        "Message-ID: <movie-42@notifications.example.com>",
        "Date: ",
        "Content-Type: multipart/alternative",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Type: text/html; charset=utf-8",
    ] {
        assert!(eml.contains(header), "missing `{header}` in:\n{eml}");
    }
    assert!(
        eml.contains("Heat (1995-12-15) was stored."),
        "text body missing:\n{eml}"
    );
    assert!(
        eml.contains("<p>Heat was stored.</p>"),
        "HTML body missing:\n{eml}"
    );
    assert!(mailer.test_connection().await);
}

#[tokio::test]
async fn file_transport_encodes_non_ascii_subject() {
    let folder = tempfile::tempdir().unwrap();
    let mailer = Mailer::new(&format!("file://{}", folder.path().display()), FROM).unwrap();
    mailer
        .send(email(&["ada@example.com"], "Café ✓ stored"))
        .await
        .unwrap();

    let eml = only_eml(folder.path());
    let subject = eml
        .lines()
        .find(|line| line.starts_with("Subject: "))
        .unwrap();
    assert!(
        subject.is_ascii() && subject.contains("=?utf-8?"),
        "{subject}"
    );
    assert!(
        eml.contains("Message-ID: <"),
        "no generated Message-ID:\n{eml}"
    );
}

#[tokio::test]
async fn file_transport_without_folder_is_connection_failure() {
    let folder = tempfile::tempdir().unwrap();
    let outbox = folder.path().join("outbox");
    let mailer = Mailer::new(&format!("file://{}", outbox.display()), FROM).unwrap();
    std::fs::remove_dir(&outbox).unwrap();

    assert!(!mailer.test_connection().await);
    let error = mailer
        .send(email(&["ada@example.com"], "lost"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::ConnectionFailure(message) if message.contains("outbox")),
        "{error:?}"
    );
}

#[tokio::test]
async fn capture_keeps_emails_with_message_ids() {
    let mailer = Mailer::capture();
    let mut first = email(&["ada@example.com"], "first");
    first.message_id = Some("<given@example.com>".to_owned());
    mailer.send(first).await.unwrap();
    mailer
        .clone()
        .send(email(&["grace@example.com"], "second"))
        .await
        .unwrap();

    let captured = mailer.captured();
    assert_eq!(captured.len(), 2);
    assert_eq!(captured[0].message_id, "<given@example.com>");
    assert_eq!(captured[0].email.subject, "first");
    assert!(
        captured[1].message_id.starts_with('<') && captured[1].message_id.contains('@'),
        "{}",
        captured[1].message_id
    );
    assert!(
        captured[1].raw.contains("To: grace@example.com"),
        "{}",
        captured[1].raw
    );
}

#[tokio::test]
async fn invalid_emails_are_invalid() {
    let mailer = Mailer::capture();
    let mut cases = Vec::new();
    cases.push((email(&["not an address"], "x"), "`not an address` in `to`"));
    let mut bad_cc = email(&["ada@example.com"], "x");
    bad_cc.cc = vec!["grace@".to_owned()];
    cases.push((bad_cc, "`grace@` in `cc`"));
    let mut bad_reply_to = email(&["ada@example.com"], "x");
    bad_reply_to.reply_to = Some("desk at example".to_owned());
    cases.push((bad_reply_to, "`desk at example` in `reply-to`"));
    cases.push((email(&[], "x"), "no recipients"));
    cases.push((
        email(&["ada@example.com"], "two\r\nBcc: eve@example.com"),
        "line break",
    ));
    let mut bad_id = email(&["ada@example.com"], "x");
    bad_id.message_id = Some("no at sign".to_owned());
    cases.push((bad_id, "invalid message-id `no at sign`"));

    for (sent, expected) in cases {
        let error = mailer.send(sent).await.unwrap_err();
        assert!(
            matches!(&error, Error::Invalid(message) if message.contains(expected)),
            "expected {expected:?}: {error:?}"
        );
    }
    assert!(mailer.captured().is_empty());
}

#[tokio::test]
async fn transport_url_errors_name_the_problem() {
    let cases = [
        ("smtp://", "host is missing"),
        (
            "smtp://mail.example.com?tls=bogus",
            "unknown tls mode `bogus`",
        ),
        ("smtp://mail.example.com?port=1", "unknown parameter `port`"),
        (
            "smtps://mail.example.com?tls=none",
            "smtps:// always uses TLS",
        ),
        ("ftp://mail.example.com", "unsupported scheme `ftp`"),
        (
            "smtp://user:hunter2@mail.example.com?tls=none",
            "without encryption",
        ),
        (
            "smtp://user@mail.example.com",
            "both a user name and a password",
        ),
        ("file://", "expected a folder"),
    ];
    for (url, expected) in cases {
        let error = Mailer::new(url, FROM).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains(expected), "{url}: {message}");
        assert!(!message.contains("hunter2"), "{url}: {message}");
    }

    let error = Mailer::new("file:///tmp", "not an address").unwrap_err();
    assert!(
        format!("{error:#}").contains("invalid sender address `not an address`"),
        "{error:#}"
    );
}

#[tokio::test]
async fn smtp_delivers_to_the_sink() {
    let _sink = SINK_LOCK.lock().await;
    reset_fault().await;
    let mailer = Mailer::new(&sink_transport(), FROM).unwrap();
    assert!(mailer.test_connection().await);

    let subject = unique_subject("delivered");
    let mut sent = email(&["ada@example.com"], &subject);
    sent.cc = vec!["grace@example.com".to_owned()];
    sent.message_id = Some("delivery-test@example.com".to_owned());
    mailer.send(sent).await.unwrap();

    let summary = received(&subject)
        .await
        .expect("the sink did not receive the email");
    assert_eq!(summary["from"], "magnetar-tests@example.com");
    assert_eq!(
        summary["to"],
        json!(["ada@example.com", "grace@example.com"])
    );
    let (status, eml) = control(
        "GET",
        &format!("/messages/{}", summary["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        eml.contains("Message-ID: <delivery-test@example.com>"),
        "{eml}"
    );
}

#[tokio::test]
async fn smtp_credentials_are_sent_to_loopback_without_tls() {
    let _sink = SINK_LOCK.lock().await;
    reset_fault().await;
    let base = server_setting("MAGNETAR_TEST_SMTP_URL");
    let with_credentials = base.replacen("smtp://", "smtp://tester:s%40cret@", 1) + "?tls=none";
    let mailer = Mailer::new(&with_credentials, FROM).unwrap();
    assert!(
        !mailer.redacted_url().contains("cret"),
        "{}",
        mailer.redacted_url()
    );

    let subject = unique_subject("authenticated");
    mailer
        .send(email(&["ada@example.com"], &subject))
        .await
        .unwrap();
    assert!(
        received(&subject).await.is_some(),
        "the sink did not receive the email"
    );
}

#[tokio::test]
async fn smtp_tempfail_is_transient_rejection() {
    let _sink = SINK_LOCK.lock().await;
    let mailer = Mailer::new(&sink_transport(), FROM).unwrap();
    for stage in ["rcpt", "data"] {
        set_fault("tempfail", stage, "4.2.0 Mailbox busy, try later").await;
        let result = mailer
            .send(email(&["ada@example.com"], &unique_subject("tempfail")))
            .await;
        reset_fault().await;

        let error = result.unwrap_err();
        assert!(
            matches!(&error, Error::TransientRejection(message) if message.contains("451") && message.contains("4.2.0 Mailbox busy, try later")),
            "{stage}: {error:?}"
        );
    }
}

#[tokio::test]
async fn smtp_permfail_is_permanent_rejection() {
    let _sink = SINK_LOCK.lock().await;
    let mailer = Mailer::new(&sink_transport(), FROM).unwrap();
    for stage in ["rcpt", "data"] {
        set_fault("permfail", stage, "5.1.1 No such user here").await;
        let result = mailer
            .send(email(&["nobody@example.com"], &unique_subject("permfail")))
            .await;
        reset_fault().await;

        let error = result.unwrap_err();
        assert!(
            matches!(&error, Error::PermanentRejection(message) if message.contains("550") && message.contains("5.1.1 No such user here")),
            "{stage}: {error:?}"
        );
    }
}

#[tokio::test]
async fn smtp_dropped_connection_is_connection_failure() {
    let _sink = SINK_LOCK.lock().await;
    let mailer = Mailer::new(&sink_transport(), FROM).unwrap();
    set_fault("drop", "rcpt", "dropped by the test").await;
    let result = mailer
        .send(email(&["ada@example.com"], &unique_subject("dropped")))
        .await;
    reset_fault().await;

    let error = result.unwrap_err();
    assert!(matches!(error, Error::ConnectionFailure(_)), "{error:?}");
}

#[tokio::test]
async fn smtp_closed_port_is_connection_failure() {
    let mailer = Mailer::new("smtp://127.0.0.1:1?tls=none", FROM).unwrap();
    assert!(!mailer.test_connection().await);
    let error = mailer
        .send(email(&["ada@example.com"], "unreachable"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ConnectionFailure(_)), "{error:?}");
}

#[tokio::test]
async fn starttls_required_fails_against_plain_server() {
    let _sink = SINK_LOCK.lock().await;
    reset_fault().await;
    // The sink offers no STARTTLS, so the default mode fails instead of sending in plain text.
    let mailer = Mailer::new(&server_setting("MAGNETAR_TEST_SMTP_URL"), FROM).unwrap();
    let subject = unique_subject("starttls");
    let error = mailer
        .send(email(&["ada@example.com"], &subject))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ConnectionFailure(_)), "{error:?}");
    assert!(
        received(&subject).await.is_none(),
        "the email went out without TLS"
    );
}

#[tokio::test]
async fn context_records_sends() {
    let calls = CallLog::default();
    let mut ctx = MailCtx {
        mailer: Mailer::capture(),
        calls: Some(calls.clone()),
    };

    Host::send(&mut ctx, email(&["ada@example.com"], "recorded"))
        .await
        .unwrap();
    Host::send(&mut ctx, email(&["not an address"], "rejected"))
        .await
        .unwrap_err();

    let recorded = calls.take();
    assert_eq!(recorded.len(), 2);
    let CapabilityCall::Mail {
        to,
        subject,
        message_id,
        result,
        ..
    } = &recorded[0]
    else {
        panic!("{recorded:?}")
    };
    assert_eq!(to, &["ada@example.com"]);
    assert_eq!(subject, "recorded");
    assert_eq!(
        message_id.as_deref(),
        Some(ctx.mailer.captured()[0].message_id.as_str())
    );
    assert_eq!(result, &Ok(()));
    let CapabilityCall::Mail { result, .. } = &recorded[1] else {
        panic!("{recorded:?}")
    };
    assert!(
        matches!(result, Err(message) if message.starts_with("invalid: ")),
        "{result:?}"
    );
}
