//! Rust bindings generated from the contract the SDK carries,
//! `sdk/wit/since_v0.1.0/plugin.wit`, one module per world.
//!
//! Exports are async so a plugin call runs on a fiber and can wait on
//! `wasi:http` without blocking a runtime thread. `wasi:*` types come from
//! `wasmtime-wasi`/`wasmtime-wasi-http` (`with:`), so a request resource the
//! guest creates is the same Rust type the egress filter inspects, and the
//! transform world reuses the destination world's `types` and `host` bindings
//! so both worlds share one `Event` type and one log implementation.

pub mod destination {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit/since_v0.1.0",
        world: "ebb:plugin/destination-plugin",
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

pub mod transform {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit/since_v0.1.0",
        world: "ebb:plugin/transform-plugin",
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "ebb:plugin/types": crate::bindings::destination::ebb::plugin::types,
            "ebb:plugin/host": crate::bindings::destination::ebb::plugin::host,
        },
    });
}

pub use destination::ebb::plugin::host::Level;
pub use destination::ebb::plugin::types::{
    Error as WitError, ErrorKind as WitErrorKind, Event as WitEvent, Op as WitOp,
    Outcome as WitOutcome,
};
pub use destination::{DestinationPlugin, DestinationPluginPre};
pub use transform::exports::ebb::plugin::transform::Item as WitItem;
pub use transform::{TransformPlugin, TransformPluginPre};
