//! The commit stage: what the destination acknowledged moves into the
//! snapshot (in the warehouse first, for `diff = "warehouse"`), together
//! with the events delivered (for `ebb replay`) and the row errors, in one
//! transaction of the state store, so a crash loses at most what was in
//! flight. A run another process closed as abandoned commits nothing. The
//! state store writes while the run goes on ([`Committing`]).

use std::time::Instant;

use super::committing::{Committing, Written};
use super::error::{Doing, Result, RunError};
use super::pass::Pass;
use crate::diff::Change;
use crate::limits::cap_error;
use crate::state::{Commit, EventLines, Snapshot, State};

impl Pass<'_> {
    /// Commits these changes, the events delivered with them and the row
    /// errors gathered so far, once the commit before it is done.
    pub(super) async fn commit(
        &mut self,
        state: &State,
        run_id: i64,
        commits: &mut Vec<Commit>,
        delivered: &mut EventLines,
    ) -> Result<()> {
        // The warehouse keeps this sync's snapshot: there first, once the
        // commit before it is done, then the state store only learns that
        // the keys are no longer owed.
        if self.snapshots.is_some() {
            self.committed().await?;
        }
        if let Some(snapshots) = &mut self.snapshots {
            let t = Instant::now();
            snapshots
                .commit(&self.sync.name, commits)
                .await
                .doing(format!(
                    "cannot commit acknowledged changes to {} in the warehouse",
                    snapshots.table()
                ))?;
            for c in commits.iter_mut() {
                let key = match c {
                    Commit::Upsert { key, .. }
                    | Commit::Delete { key, .. }
                    | Commit::Settle { key } => std::mem::take(key),
                };
                *c = Commit::Settle { key };
            }
            self.timed("commit", t);
        }
        let mut errors = std::mem::take(&mut self.errors);
        for error in &mut errors {
            let message = std::mem::take(&mut error.message);
            error.message = cap_error(message, self.error_text_bytes);
        }
        let written = Written {
            commits: std::mem::take(commits),
            errors,
            delivered: std::mem::take(delivered),
            counts: self.counts.clone(),
        };
        // Made ready while the commit before it is written.
        let mut next = Committing::start(state, &self.sync.name, run_id, written);
        self.committed().await?;
        next.go();
        self.committing = Some(next);
        self.progress.set_message(format!(
            "extracted {}, sent {}",
            self.counts.extracted, self.counts.sent
        ));
        Ok(())
    }

    /// Waits for the commit under way, if any.
    pub(super) async fn committed(&mut self) -> Result<()> {
        let Some(committing) = self.committing.take() else {
            return Ok(());
        };
        let run_id = committing.run_id;
        let (committed, took) = committing.finish().await?;
        self.took("commit", took);
        match committed {
            true => Ok(()),
            false => Err(RunError::Stopped(taken_over_message(run_id))),
        }
    }
}

/// Why a run stops when another process closed it as abandoned (its
/// heartbeats were late, e.g. the machine was suspended): going on would
/// overlap the run that took over.
pub(super) fn taken_over_message(run_id: i64) -> String {
    format!(
        "run {run_id} stopped: its heartbeat was late and another process closed it as abandoned; \
         what the destination acknowledged before that is committed, the rest is sent by a later run"
    )
}

/// What the snapshot takes if the operator drops this change's row error.
pub(super) fn snapshot_of(c: &Change) -> Option<Snapshot> {
    c.json.as_ref().map(|json| Snapshot {
        fingerprint: c.fingerprint,
        json: json.clone(),
    })
}

pub(super) fn commit_of(c: &Change) -> Commit {
    match &c.json {
        Some(json) => Commit::Upsert {
            key: c.key.clone(),
            key_hash: c.key_hash,
            fingerprint: c.fingerprint,
            json: json.clone(),
        },
        None => Commit::Delete {
            key: c.key.clone(),
            key_hash: c.key_hash,
        },
    }
}
