//! What keeps a run from starting, or stops it. Errors of the layers below
//! pass through as they are; what the run was doing when one of them
//! failed is said once, in [`RunError::Failed`], and a run's own verdicts
//! (a sync its plugins refuse, a model past its limits, a stop from
//! outside) have their own variants. Messages name the sync, model or
//! config key and say what to do.

use crate::config::ConfigError;
use crate::diff::warehouse::SnapshotError;
use crate::extract::ExtractError;
use crate::plugin::{CallError, PluginError};
use crate::source::SourceError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Snapshots(#[from] SnapshotError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// An event that would not encode as JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The sync cannot run as configured: it is disabled, or its plugins,
    /// model or mapping do not fit together.
    #[error("{0}")]
    Refused(String),
    /// What the command works on is not there: a run of which nothing is
    /// kept.
    #[error("{0}")]
    Missing(String),
    /// Something else of the sync is in progress (a run, reset or
    /// replay), so this may not start.
    #[error("{0}")]
    Busy(String),
    /// The destination cannot take any batch until someone fixes its
    /// credentials, config or grant; the run stopped at the first batch
    /// that showed it.
    #[error("{0}")]
    Unfixable(String),
    /// The model's rows cannot be synced: past a limit, or unreadable.
    #[error("{0}")]
    Rows(String),
    /// A step of the run failed; `doing` says which.
    #[error("{doing}")]
    Failed {
        doing: String,
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Stopped from outside: a signal, or another process took the run
    /// over. What the destination acknowledged before is committed.
    #[error("{0}")]
    Stopped(String),
}

pub type Result<T> = std::result::Result<T, RunError>;

/// Adds what the run was doing to a lower layer's error.
pub(super) trait Doing<T> {
    fn doing(self, doing: impl Into<String>) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Doing<T> for std::result::Result<T, E> {
    fn doing(self, doing: impl Into<String>) -> Result<T> {
        self.map_err(|cause| RunError::Failed {
            doing: doing.into(),
            cause: Box::new(cause),
        })
    }
}

/// The error with its causes, each after a colon, as a run records it.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_reads_as_what_it_did_then_why() {
        let io = std::io::Error::other("disk full");
        let err = Err::<(), _>(io).doing("cannot park extracted rows for the diff");
        let err = err.unwrap_err();
        assert_eq!(err.to_string(), "cannot park extracted rows for the diff");
        assert_eq!(
            chain(&err),
            "cannot park extracted rows for the diff: disk full"
        );
    }
}
