//! Bindings generated from `wit/since_v0.2.0/` (the newest frozen version
//! of the contract, inside this crate) for both plugin worlds.
//!
//! Each world lives in its own module. The transform world reuses the
//! destination world's `types` and `host` bindings, so an event or an error
//! is one Rust type whichever world a plugin exports, and the SDK converts it
//! in one place. The destination world maps `wasi:http` and `wasi:io` onto the
//! `wasip2` crate so that `wstd`'s HTTP client and these bindings share types.
//!
//! The transform world's `with:` keys spell out the package version, as
//! wit-bindgen matches keys exactly and takes only string literals; it also
//! refuses a key that matches nothing, so a new `wit/since_v…/` folder that
//! misses them (or [`crate::WIT_VERSION`], which a test ties to the folder)
//! fails the build rather than drifting.
//!
//! The export macros are public so that a plugin crate exports its world
//! through [`crate::export_destination!`] and [`crate::export_transform!`].

pub mod destination {
    wit_bindgen::generate!({
        path: "wit/since_v0.2.0",
        world: "ebb:plugin/destination-plugin",
        pub_export_macro: true,
        export_macro_name: "export_destination_world",
        with: {
            "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        },
        generate_all,
    });
}

pub mod transform {
    wit_bindgen::generate!({
        path: "wit/since_v0.2.0",
        world: "ebb:plugin/transform-plugin",
        pub_export_macro: true,
        export_macro_name: "export_transform_world",
        with: {
            "ebb:plugin/types@0.2.0": crate::bindings::destination::ebb::plugin::types,
            "ebb:plugin/host@0.2.0": crate::bindings::destination::ebb::plugin::host,
        },
    });
}
