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
//! Built for anything but `wasm32`, for a plugin's own `cargo test`, the
//! SDK runs in test mode: [`http`] requests are answered by the
//! [`testing::MockHttp`] installed on the thread, [`log`] lines are kept
//! for [`testing::logs`], and [`testing`] calls a plugin through the same
//! glue its component exports use.
//!
//! `serde_json` is built with `preserve_order` and `arbitrary_precision`, so
//! column order and numbers wider than `f64` pass through a plugin intact.
//!
//! All of that is the `guest` feature, on by default. Without it the crate
//! is only [`spec`], the shape of a destination's self-description, which
//! the host uses natively to read what plugins declare, and
//! [`WIT_VERSION`].

#[cfg(feature = "guest")]
pub mod batch;
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
#[cfg(all(feature = "guest", not(target_arch = "wasm32")))]
pub mod testing;
#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod transform;

#[cfg(feature = "guest")]
pub use destination::{Destination, Outcome};
#[cfg(feature = "guest")]
pub use error::{Error, ErrorKind};
#[cfg(feature = "guest")]
pub use event::{Event, Op, RawEvent, Record};
pub use spec::{Action, Field, FieldType, Spec};
#[cfg(feature = "guest")]
pub use transform::{Item, Transform};

/// The version of the `ebb:plugin` WIT package this SDK and the host are
/// built against: the newest frozen folder in this crate,
/// `wit/since_v0.2.0/plugin.wit`.
pub const WIT_VERSION: &str = "0.2.0";

/// Compiles the README's example as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "guest"))]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The package version `plugin.wit` declares.
    fn declared_version(wit: &str) -> Option<&str> {
        wit.lines()
            .find_map(|line| line.trim().strip_prefix("package ebb:plugin@"))
            .and_then(|rest| rest.strip_suffix(';'))
    }

    #[test]
    fn wit_version_is_the_packages() {
        let wit = include_str!("../wit/since_v0.2.0/plugin.wit");
        assert_eq!(declared_version(wit), Some(super::WIT_VERSION));
    }

    /// Each frozen folder declares the version it is named after, and the
    /// SDK builds against the newest.
    #[test]
    fn frozen_wit_folders_are_named_after_their_version() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
        let mut versions = Vec::new();
        for entry in std::fs::read_dir(&root).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let version = name
                .strip_prefix("since_v")
                .unwrap_or_else(|| panic!("{name} in wit/ is not a since_vX.Y.Z folder"));
            let wit = std::fs::read_to_string(entry.path().join("plugin.wit")).unwrap();
            assert_eq!(declared_version(&wit), Some(version), "{name}");
            let parts: Vec<u64> = version.split('.').map(|n| n.parse().unwrap()).collect();
            versions.push((parts, version.to_owned()));
        }
        versions.sort();
        let newest = versions.last().map(|(_, version)| version.as_str());
        assert_eq!(newest, Some(super::WIT_VERSION));
    }
}
