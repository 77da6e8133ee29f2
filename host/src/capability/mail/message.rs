//! Building the RFC 5322 message for a guest's email.

use lettre::Message;
use lettre::message::{Mailbox, MultiPart, SinglePart};

use crate::bindings::mail::{Email, Error};

/// Example for the messages about invalid addresses.
const ADDRESS_FORMS: &str = "expected `name@example.com` or `Name <name@example.com>`";

/// Builds the message from `from` to the recipients of `email`: To, Cc, Reply-To, Subject,
/// Date and Message-ID headers, and a text body, or a multipart/alternative body when
/// there is an HTML version.
///
/// Returns the message and its Message-ID, which is the email's own when it has one and
/// generated (`<random@hostname>`) otherwise.
pub(super) fn build(from: &Mailbox, email: &Email) -> Result<(Message, String), Error> {
    let mut builder = Message::builder().from(from.clone()).date_now();

    for address in &email.to {
        builder = builder.to(parse_address(address, "to")?);
    }
    for address in &email.cc {
        builder = builder.cc(parse_address(address, "cc")?);
    }
    if email.to.is_empty() && email.cc.is_empty() {
        return Err(Error::Invalid(
            "the email has no recipients; add an address to `to`".to_owned(),
        ));
    }
    if let Some(address) = &email.reply_to {
        builder = builder.reply_to(parse_address(address, "reply-to")?);
    }

    // A line break would end the header and let the rest pass as another header.
    if email.subject.contains(['\r', '\n']) {
        return Err(Error::Invalid(format!(
            "the subject {:?} contains a line break; a subject is a single line",
            email.subject
        )));
    }
    builder = builder.subject(email.subject.as_str());

    builder = match &email.message_id {
        Some(id) => builder.message_id(Some(normalize_message_id(id)?)),
        None => builder.message_id(None),
    };

    let built = match &email.html_body {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            email.text_body.clone(),
            html.clone(),
        )),
        None => builder.singlepart(SinglePart::plain(email.text_body.clone())),
    };
    let message =
        built.map_err(|error| Error::Invalid(format!("building the email failed: {error}")))?;

    let message_id = message
        .headers()
        .get_raw("Message-ID")
        .unwrap_or_default()
        .to_owned();
    Ok((message, message_id))
}

fn parse_address(address: &str, field: &str) -> Result<Mailbox, Error> {
    address.parse::<Mailbox>().map_err(|error| {
        Error::Invalid(format!(
            "invalid address `{address}` in `{field}`: {error}; {ADDRESS_FORMS}"
        ))
    })
}

/// Checks a Message-ID (`left@right`, with or without angle brackets) and returns it in
/// angle brackets, as the header carries it.
fn normalize_message_id(id: &str) -> Result<String, Error> {
    let bare = id.trim().trim_start_matches('<').trim_end_matches('>');
    let valid = match bare.split_once('@') {
        Some((left, right)) => {
            !left.is_empty()
                && !right.is_empty()
                && bare
                    .bytes()
                    .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b'<' | b'>'))
        }
        None => false,
    };
    if !valid {
        return Err(Error::Invalid(format!(
            "invalid message-id `{id}`: expected `left@right` in printable ASCII without spaces, \
             as in `<movie-42@notifications.example.com>`"
        )));
    }
    Ok(format!("<{bare}>"))
}
