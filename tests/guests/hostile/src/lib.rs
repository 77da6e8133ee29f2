//! Test guest for the host's limits and failure handling. The payload text selects the
//! behaviour:
//!
//! - `ok`: succeed
//! - `loop`: spin forever, until the epoch deadline interrupts the call
//! - `alloc`: allocate 1 MiB blocks until the memory limit makes allocation fail, which
//!   aborts the instance with a trap
//! - `panic`: panic, which traps
//! - `transient`: fail with `transient("asked to fail")`
//! - `permanent`: fail with `permanent("asked to fail")`
//! - `misconfigured`: fail with `misconfigured("asked to report a broken config")`
//! - `publish`: publish the payload to the default output, then succeed
//! - `transient-until-N`: fail with `transient` on attempts before N, then succeed
//!
//! Any other payload is a permanent failure that names it.
//!
//! Imports: log, publish.

// The generated export shim takes the message as 15 flat core-wasm arguments.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "stage",
    });
}

use bindings::{Failure, Guest, Message, magnetar};

use magnetar::stage::log::{self, Level};
use magnetar::stage::publish::{self, Outbound};

struct Hostile;

impl Guest for Hostile {
    fn handle(message: Message) -> Result<(), Failure> {
        let behaviour = String::from_utf8_lossy(&message.payload).trim().to_string();
        log::write(
            Level::Debug,
            "hostile guest called",
            &[("behaviour".to_string(), behaviour.clone())],
        );

        match behaviour.as_str() {
            "ok" => Ok(()),
            "loop" => spin_forever(),
            "alloc" => allocate_forever(),
            "panic" => panic!("asked to panic"),
            "transient" => Err(Failure::Transient("asked to fail".to_string())),
            "permanent" => Err(Failure::Permanent("asked to fail".to_string())),
            "misconfigured" => Err(Failure::Misconfigured("asked to report a broken config".to_string())),
            "publish" => {
                let outbound = Outbound {
                    output: None,
                    key: message.key.clone(),
                    properties: Vec::new(),
                    payload: message.payload.clone(),
                };
                publish::send(&outbound)
                    .map_err(|error| Failure::Permanent(format!("publish failed: {error:?}")))
            }
            other if other.starts_with("transient-until-") => {
                let until: u32 = other["transient-until-".len()..]
                    .parse()
                    .unwrap_or(u32::MAX);
                if message.attempt < until {
                    Err(Failure::Transient(format!(
                        "attempt {} of a message that succeeds on attempt {until}",
                        message.attempt
                    )))
                } else {
                    Ok(())
                }
            }
            other => Err(Failure::Permanent(format!(
                "unknown behaviour {other:?}; expected ok, loop, alloc, panic, transient, \
                 permanent, misconfigured, publish or transient-until-N"
            ))),
        }
    }
}

fn spin_forever() -> ! {
    let mut counter: u64 = 0;
    loop {
        // black_box keeps the optimizer from proving the loop has no effect.
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn allocate_forever() -> ! {
    const BLOCK: usize = 1 << 20;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Filling the block commits its pages, so the memory really grows.
        blocks.push(vec![1u8; BLOCK]);
        std::hint::black_box(&blocks);
    }
}

bindings::export!(Hostile with_types_in bindings);
