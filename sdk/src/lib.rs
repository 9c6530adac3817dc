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

#[doc(hidden)]
pub mod bindings;
mod config;
#[doc(hidden)]
pub mod destination;
mod error;
mod event;
pub mod http;
pub mod log;
mod spec;
#[doc(hidden)]
pub mod transform;

pub use destination::{Destination, Outcome};
pub use error::{Error, ErrorKind};
pub use event::{Event, Op, Record};
pub use spec::{Action, Field, FieldType, Spec};
pub use transform::{Item, Transform};

/// Compiles the README's example as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
