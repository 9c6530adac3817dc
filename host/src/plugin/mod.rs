//! Plugins as `ebb` runs them: the WebAssembly host of
//! [`ebb_plugin_host`], with the first-party plugins compiled into the
//! binary ([`builtin`]) and each call counted in `/metrics`
//! ([`crate::metrics::PluginCalls`]), both handed to the engine where the
//! CLI builds it.

pub mod builtin;
pub mod js;
mod mask;

pub use mask::Masker;

pub use ebb_plugin_host::*;
