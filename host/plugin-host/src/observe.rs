//! The hook through which the embedder watches plugin calls, e.g. to count
//! and time them for its metrics. The engine only reports; what is recorded,
//! and where, is the embedder's business, so this crate needs no metrics
//! library and no knowledge of how the numbers are exposed.

use std::time::Duration;

use crate::error::CallError;

/// Told about every call into a plugin once it has returned. Install one in
/// `EngineOptions::observer`.
pub trait CallObserver: Send + Sync {
    /// A call into the plugin labelled `plugin` returned after `took`;
    /// `error` says why it failed (a trap, a timeout or running out of
    /// memory), `None` when the guest returned normally, whatever it
    /// returned.
    fn call_finished(&self, plugin: &str, took: Duration, error: Option<&CallError>);
}
