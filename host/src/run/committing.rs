//! A commit under way in a task of its own. Writing to the state store
//! takes about as long as preparing the next chunk, so the run goes on
//! transforming and sending while the store writes. Commits stay one at a
//! time and in order: a commit is made ready (sorted, its events
//! compressed) as soon as it starts, but writes only once the run says it
//! is its turn ([`Committing::go`]), after the one before it finished; the
//! end of the run, whatever ended it, waits for it too. Each is one
//! transaction, so a crash or an interruption (which aborts the task)
//! leaves either all of it or none.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::task::AbortOnDropHandle;

use super::error::{Doing, Result};
use crate::state::{Batch, Commit, CommitColumns, EventLines, RowError, State, StateError};
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
    turn: Option<oneshot::Sender<()>>,
    task: AbortOnDropHandle<(std::result::Result<bool, StateError>, Duration)>,
}

impl Committing {
    /// Makes `written` ready to commit; it is written once [`Self::go`]
    /// says so.
    pub(super) fn start(state: &State, sync: &str, run_id: i64, written: Written) -> Committing {
        let (state, sync) = (state.clone(), sync.to_owned());
        let (turn, its_turn) = oneshot::channel();
        let task = tokio::spawn(async move {
            let t = Instant::now();
            let Written {
                commits,
                errors,
                delivered,
                counts,
            } = written;
            let batch = Batch {
                commits: &commits,
                errors: &errors,
                delivered: &delivered,
                counts: &counts,
            };
            let columns = CommitColumns::of(&sync, run_id, batch);
            let ready = t.elapsed();
            // The run drops its end only when it is giving up, and then
            // aborts this task too.
            let _ = its_turn.await;
            let t = Instant::now();
            let committed = state.commit(&columns).await;
            (committed, ready + t.elapsed())
        });
        Committing {
            run_id,
            turn: Some(turn),
            task: AbortOnDropHandle::new(task),
        }
    }

    /// Lets the commit write: the one before it has finished.
    pub(super) fn go(&mut self) {
        if let Some(turn) = self.turn.take() {
            let _ = turn.send(());
        }
    }

    /// Waits for the commit: whether the run was still running (`false`:
    /// another process closed it as abandoned and nothing was written),
    /// and how long the store took (making it ready included).
    pub(super) async fn finish(mut self) -> Result<(bool, Duration)> {
        const DOING: &str = "cannot commit acknowledged changes to the state store";
        self.go();
        let (committed, took) = self.task.await.doing(DOING)?;
        Ok((committed.doing(DOING)?, took))
    }
}
