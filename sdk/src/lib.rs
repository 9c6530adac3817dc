//! The Rust SDK for Ebb plugins.
//!
//! A destination implements [`Destination`] and calls
//! [`export_destination!`]; a transform implements [`Transform`] and calls
//! [`export_transform!`]. The SDK speaks the `ebb:plugin` WIT contract for
//! them: it parses the JSON config once per call into the plugin's own
//! `Config` type (a failure becomes an `invalid-config` error naming the
//! key), decodes each event's JSON, and keeps results index-aligned with the
//! batch. Plugins build as `cdylib` crates for `wasm32-wasip2`.
//!
//! `serde_json` is built with `preserve_order` and `arbitrary_precision`, so
//! column order and numbers wider than `f64` pass through a plugin intact.
//!
//! All of that is the `guest` feature, on by default. Without it the crate
//! is only [`spec`], the shape of a destination's self-description, which
//! the host uses natively to read what plugins declare, and
//! [`WIT_VERSION`].

#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod bindings;
#[cfg(feature = "guest")]
mod config;
#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod destination;
#[cfg(feature = "guest")]
mod error;
#[cfg(feature = "guest")]
mod event;
#[cfg(feature = "guest")]
pub mod http;
#[cfg(feature = "guest")]
pub mod log;
pub mod spec;
#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod transform;

#[cfg(feature = "guest")]
pub use destination::{Destination, Outcome};
#[cfg(feature = "guest")]
pub use error::{Error, ErrorKind};
#[cfg(feature = "guest")]
pub use event::{Event, Op, Record};
pub use spec::{Action, Field, FieldType, Spec};
#[cfg(feature = "guest")]
pub use transform::{Item, Transform};

/// The version of the `ebb:plugin` WIT package (`wit/plugin.wit`) this SDK
/// and the host are built against.
pub const WIT_VERSION: &str = "0.1.0";

/// Compiles the README's example as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "guest"))]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    #[test]
    fn wit_version_is_the_packages() {
        let wit = include_str!("../../wit/plugin.wit");
        let declared = wit
            .lines()
            .find_map(|line| line.trim().strip_prefix("package ebb:plugin@"))
            .and_then(|rest| rest.strip_suffix(';'));
        assert_eq!(declared, Some(super::WIT_VERSION));
    }
}
