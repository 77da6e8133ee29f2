//! Guest that returns success for every message without calling any capability. The
//! benchmark runs it to measure what the host itself costs per message: receive, call into
//! the component, ack.

// The generated export shim takes the message as 15 flat core-wasm arguments.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "stage",
    });
}

use bindings::{Failure, Guest, Message};

struct Noop;

impl Guest for Noop {
    fn handle(_message: Message) -> Result<(), Failure> {
        Ok(())
    }
}

bindings::export!(Noop with_types_in bindings);
