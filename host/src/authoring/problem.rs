//! Why an `ebb plugin` command could not do its job.

use crate::plugin::{CallError, PluginError};

/// Why an `ebb plugin` command could not do its job; says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Said(String),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("cannot write the report: {0}")]
    Json(#[from] serde_json::Error),
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Problem {
        Problem::Said(message.into())
    }
}
