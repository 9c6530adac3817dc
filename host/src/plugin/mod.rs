//! Plugins: destination and transform connectors run as WebAssembly
//! components against the WIT package in `wit/`.
//!
//! Plugins are third-party code holding customer data and credentials, so
//! they run sandboxed: each call gets a fresh store with a memory cap and a
//! deadline ([`limits`]), no files, environment or sockets unless granted,
//! and HTTP only to the hosts the operator granted ([`egress`]). A crash or
//! timeout fails that one batch, never the host. To keep that cheap, a
//! component is compiled once ([`cache`]), pre-linked once per process, and
//! instantiated from a pooling allocator per batch ([`engine`]).

pub mod bindings;
pub mod builtin;
pub mod cache;
pub mod convert;
pub mod egress;
pub mod engine;
pub mod error;
pub mod limits;
pub mod spec;
pub mod store;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::event::Event;

pub use engine::{Destination, Engine, EngineOptions, Transform};
pub use error::{CallError, ErrorKind, PluginError, RemoteError};
pub use limits::Limits;
pub use spec::{ActionSpec, FieldSpec, Spec};

/// Which plugin to load, and how to refer to it in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRef {
    /// Names the plugin's use in messages, e.g. "destination `crm`".
    pub label: String,
    pub location: PluginLocation,
    /// Expected sha256 of the component, in hex; loading fails on mismatch.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginLocation {
    /// A first-party plugin embedded in the binary, e.g. "http".
    Builtin(String),
    File(PathBuf),
}

impl fmt::Display for PluginLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginLocation::Builtin(name) => write!(f, "built-in plugin `{name}`"),
            PluginLocation::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What the operator grants a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// `host` (ports 80 and 443) or `host:port`; nothing else is reachable.
    pub allow_hosts: Vec<String>,
    /// A folder the plugin may read and write, seen by the guest as `/out`.
    pub dir: Option<PathBuf>,
    pub http_connect_timeout: Duration,
    pub http_first_byte_timeout: Duration,
    pub http_between_bytes_timeout: Duration,
    pub limits: Limits,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            allow_hosts: Vec::new(),
            dir: None,
            http_connect_timeout: Duration::from_secs(10),
            http_first_byte_timeout: Duration::from_secs(30),
            http_between_bytes_timeout: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }
}

/// A destination's verdict on one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Not delivered this time; retry with backoff.
    Retry(RemoteError),
    /// Refused for good; becomes a row error.
    Reject(RemoteError),
}

/// A transform's verdict on one event of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Keep(Event),
    Drop,
    Split(Vec<Event>),
    Fail(RemoteError),
}
