//! A commit under way in a task of its own. Writing to the state store
//! takes about as long as preparing the next chunk, so the run goes on
//! transforming and sending while the store writes. Commits stay one at a
//! time and in order: the next one waits for this one to finish, and so
//! does the end of the run, whatever ended it. Each is one transaction,
//! so a crash or an interruption (which aborts the task) leaves either all
//! of it or none.

use std::time::{Duration, Instant};

use tokio_util::task::AbortOnDropHandle;

use super::error::{Doing, Result};
use crate::state::{Commit, EventLines, RowError, State, StateError};
use crate::status::Counts;

/// What one commit writes.
pub(super) struct Written {
    pub(super) commits: Vec<Commit>,
    pub(super) errors: Vec<RowError>,
    /// The events delivered, for `ebb replay`.
    pub(super) delivered: EventLines,
    /// The run's counts so far.
    pub(super) counts: Counts,
}

pub(super) struct Committing {
    pub(super) run_id: i64,
    task: AbortOnDropHandle<(std::result::Result<bool, StateError>, Duration)>,
}

impl Committing {
    pub(super) fn start(state: &State, sync: &str, run_id: i64, written: Written) -> Committing {
        let (state, sync) = (state.clone(), sync.to_owned());
        let task = tokio::spawn(async move {
            let t = Instant::now();
            let Written {
                commits,
                errors,
                delivered,
                counts,
            } = written;
            let committed = state
                .commit(&sync, run_id, &commits, &errors, &delivered, &counts)
                .await;
            (committed, t.elapsed())
        });
        Committing {
            run_id,
            task: AbortOnDropHandle::new(task),
        }
    }

    /// Waits for the commit: whether the run was still running (`false`:
    /// another process closed it as abandoned and nothing was written),
    /// and how long the store took.
    pub(super) async fn finish(self) -> Result<(bool, Duration)> {
        const DOING: &str = "cannot commit acknowledged changes to the state store";
        let (committed, took) = self.task.await.doing(DOING)?;
        Ok((committed.doing(DOING)?, took))
    }
}
