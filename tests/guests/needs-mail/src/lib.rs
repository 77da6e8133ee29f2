//! Test guest that imports only the mail capability, besides the WASI interfaces that
//! Rust's standard library needs. The host must reject it at load time for a stage without
//! the mail grant. When a test does grant mail, each message sends one fixed email to
//! `test@example.com`.

// The generated export shim takes the message as 15 flat core-wasm arguments.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "stage",
    });
}

use bindings::{Failure, Guest, Message, magnetar};

use magnetar::stage::mail::{self, Email};

struct NeedsMail;

impl Guest for NeedsMail {
    fn handle(message: Message) -> Result<(), Failure> {
        let email = Email {
            to: vec!["test@example.com".to_string()],
            cc: Vec::new(),
            reply_to: None,
            subject: "needs-mail test guest".to_string(),
            text_body: String::from_utf8_lossy(&message.payload).into_owned(),
            html_body: None,
            message_id: None,
        };
        mail::send(&email).map_err(|error| Failure::Permanent(format!("mail failed: {error:?}")))
    }
}

bindings::export!(NeedsMail with_types_in bindings);
