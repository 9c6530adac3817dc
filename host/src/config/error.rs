//! How the config says what is wrong: every message names the key path and
//! what to do, and [`Config::load`](super::Config::load) puts the file's
//! name in front.

/// A config that cannot be used, with the file it is in.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

/// What is wrong with one setting, before the file is named.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// The setting at `key` (a path such as `sources.wh.url`).
    #[error("{key}: {message}")]
    Setting { key: String, message: String },
    /// Worded whole where it was found: TOML's own errors (which point at
    /// the line) and checks that name their keys themselves.
    #[error("{0}")]
    Worded(String),
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid::Setting {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// `names` quoted for a message ("`a`, `b`"), or "none".
pub fn list_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<_> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
