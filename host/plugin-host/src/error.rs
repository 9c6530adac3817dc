//! What can go wrong with a plugin, split by when it happens.
//!
//! [`StartError`] means the engine itself could not start. [`PluginError`]
//! is a load-time problem (wrong file, wrong hash, wrong world): the
//! operator must act before anything runs. [`CallError`] is a per-call
//! failure: it fails one batch, the host stays healthy, and the pipeline
//! decides whether to retry. [`RemoteError`] is what a plugin itself
//! reports about the remote system, typed so the pipeline can act on it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use ebb_sdk::spec::SpecError;

/// Why the engine could not start: the machine refused its WebAssembly
/// configuration, or its epoch thread.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Wasm(#[from] wasmtime::Error),
    #[error(transparent)]
    Thread(#[from] std::io::Error),
}

/// Why a plugin could not be loaded. Each message names the plugin and says
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{label}: plugin file {} not found; check the path (relative paths are resolved against the config file's folder)", path.display())]
    NotFound { label: String, path: PathBuf },

    #[error("{label}: cannot read plugin file {}: {source}", path.display())]
    Unreadable {
        label: String,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{label}: plugin {location} has sha256 {actual}, but the config pins {expected}; \
         update sha256 in ebb.toml if you trust the new file"
    )]
    HashMismatch {
        label: String,
        location: String,
        expected: String,
        actual: String,
    },

    #[error("{label}: there is no built-in plugin `{name}`; built-in plugins are: {known}")]
    UnknownBuiltin {
        label: String,
        name: String,
        known: String,
    },

    #[error("{label}: {location} is not a WebAssembly component: {msg}")]
    NotAComponent {
        label: String,
        location: String,
        msg: String,
    },

    #[error("{label}: cannot compile {location}: {msg}")]
    Compile {
        label: String,
        location: String,
        msg: String,
    },

    #[error("{label}: {location} is not an Ebb {world} plugin: {msg}")]
    WrongWorld {
        label: String,
        location: String,
        world: &'static str,
        msg: String,
    },

    /// Built against a version of the contract this Ebb does not know:
    /// a newer SDK than this Ebb's, most likely.
    #[error(
        "{label}: {location} was built against ebb:plugin@{built}, and this Ebb accepts ebb:plugin versions {accepted}; rebuild the plugin with an ebb-sdk of one of those versions, or upgrade Ebb"
    )]
    UnknownVersion {
        label: String,
        location: String,
        built: String,
        accepted: String,
    },

    /// What the component exports does not have the types of the contract
    /// version it claims, or it could not start.
    #[error(
        "{label}: {location} cannot be instantiated: {msg}; a component whose types differ from the ebb:plugin version it claims was built from an altered WIT: rebuild it with the ebb-sdk"
    )]
    Exports {
        label: String,
        location: String,
        msg: String,
    },

    /// The grants or limits given to the plugin cannot be applied.
    #[error("{label}: {msg}")]
    Grant { label: String, msg: String },

    /// The destination failed while describing itself.
    #[error("{source} (while instantiating it to read its spec)")]
    Instantiate {
        label: String,
        #[source]
        source: CallError,
    },

    #[error("{label}: the plugin's spec() is not valid: {problem}; this is a bug in the plugin")]
    BadSpec { label: String, problem: SpecError },

    #[error("{label}: {msg}; this is a bug in the plugin")]
    BadSchema { label: String, msg: String },
}

/// Why one plugin call failed. None of these leave the engine unusable.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{label} crashed: {msg}")]
    Trap { label: String, msg: String },

    #[error(
        "{label} did not finish within {after:?}; raise its call timeout or look for a loop in the plugin"
    )]
    Timeout { label: String, after: Duration },

    #[error("{label} ran out of memory (limit {} MiB); raise its memory limit or send smaller batches", limit_bytes >> 20)]
    OutOfMemory { label: String, limit_bytes: usize },

    #[error("{0}")]
    Remote(RemoteError),

    #[error("{label} broke the plugin protocol: {msg}; this is a bug in the plugin")]
    Protocol { label: String, msg: String },
}

/// The kind of a failure a plugin reports; mirrors `error-kind` in the WIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The plugin's config is wrong; the operator must fix it.
    InvalidConfig,
    /// Credentials were refused.
    Auth,
    /// The remote asked to slow down; see `retry_after`.
    RateLimited,
    /// May succeed if retried.
    Transient,
    /// The remote refused the record itself.
    Rejected,
    /// A bug or unexpected state inside the plugin.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidConfig => "invalid config",
            ErrorKind::Auth => "auth",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Transient => "transient",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure reported by the plugin about the remote system or its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.kind, self.message)?;
        if let Some(after) = self.retry_after {
            write!(f, " (retry after {after:?})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RemoteError {}
