//! Resets and replays as entries of a sync's history. Each is claimed as a
//! run is, through the same unique index, so one rule keeps them apart for
//! the CLI and the API alike: none starts while a run, reset or replay of
//! the sync is in progress (a reset during a run would be undone by the
//! run's commits; a replay during one would race it to the destination),
//! and a run triggered meanwhile is skipped. Each is then closed with its
//! outcome, so `ebb history` shows who changed what the sync delivered.

use super::error::{Doing, Result, RunError};
use super::lifecycle::{BEATS_PER_LEASE, beat};
use crate::config::Config;
use crate::state::{Claimed, RunEnd, RunKind, State};
use crate::status::{Counts, Status};

/// A reset or replay recorded as running; [`Operation::end`] closes it.
pub struct Operation {
    state: State,
    sync: String,
    id: i64,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Operation {
    /// Its entry in the sync's history.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Records the reset or replay as running, or refuses it (naming the
    /// entry in progress) if anything of the sync is running.
    pub async fn begin(
        cfg: &Config,
        state: &State,
        sync: &str,
        kind: RunKind,
        detail: Option<&str>,
    ) -> Result<Operation> {
        match state.claim_for(sync, cfg.lease, kind, detail).await? {
            Claimed::Started(id) => Ok(Operation {
                state: state.clone(),
                sync: sync.to_owned(),
                id,
                heartbeat: beat(state, id, cfg.lease / BEATS_PER_LEASE).0,
            }),
            Claimed::Busy(running) => Err(RunError::Busy(format!(
                "run {running} of sync `{sync}` is in progress (see `ebb history {sync}`); \
                 nothing was done: try the {} again once it has ended",
                kind.as_str()
            ))),
        }
    }

    /// Closes the entry with how it went: `counts` for what it sent, the
    /// error if it failed.
    pub async fn end(self, status: Status, counts: &Counts, error: Option<&str>) -> Result<()> {
        self.heartbeat.abort();
        let end = RunEnd {
            status,
            counts,
            timings_ms: &serde_json::Value::Object(Default::default()),
            error,
            cursor: None,
        };
        self.state
            .finish(&self.sync, self.id, &end)
            .await
            .doing("cannot record the end of the entry in the sync's history")
    }
}
