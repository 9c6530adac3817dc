//! Which plugin to load: a file, or a component the embedding binary
//! carries. Names and locations only, so that every other module can say
//! which plugin it is talking about without depending on how it is loaded.

use std::fmt;
use std::path::PathBuf;

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
    /// A [`Builtin`] of the engine's, by name, e.g. "http".
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

/// A component compiled into the embedding binary, so a config can name it
/// without shipping a `.wasm` next to it. The embedder lists them in
/// `EngineOptions::builtins`.
#[derive(Clone, Copy)]
pub struct Builtin {
    /// The name [`PluginLocation::Builtin`] refers to it by.
    pub name: &'static str,
    pub component: &'static [u8],
}

impl fmt::Debug for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builtin")
            .field("name", &self.name)
            .field("component_bytes", &self.component.len())
            .finish()
    }
}
