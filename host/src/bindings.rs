//! Host bindings for the `magnetar:stage` WIT package, generated once for the whole host.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "stage",
    imports: { default: async },
    exports: { default: async },
});

pub use self::magnetar::stage::{config, database, log, mail, publish, types};
