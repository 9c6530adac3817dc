//! The deliver stage: the chunk's events go to the destination in batches,
//! several in flight, and each batch is committed as soon as the
//! destination is done with it (with whatever else finished meanwhile)
//! while the others are still under way, so a crash repeats only batches
//! not yet committed. A change is committed once every event made from it
//! (a transform may make several) is acknowledged, and owed if any of them
//! failed.
//!
//! A chunk's batches are sent ([`InFlight`]) before the chunk before it is
//! settled: the destination works on one chunk while the run commits the
//! last one and prepares the next, on other cores.

use std::time::Instant;

use futures::{FutureExt, StreamExt};

use super::commit::{commit_of, snapshot_of};
use super::error::{Result, RunError};
use super::in_flight::{Acks, InFlight};
use super::pass::Pass;
use crate::delivery_id;
use crate::diff::Change;
use crate::event::Event;
use crate::load::Delivered;
use crate::state::{Commit, EventLines, RowError, State};
use crate::transform::Traced;

impl Pass<'_> {
    /// Sends the chunk's events, then settles the chunk sent before it.
    /// `commits` are changes decided without the destination.
    pub(super) async fn deliver(
        &mut self,
        state: &State,
        run_id: i64,
        changes: Vec<Change>,
        events: Vec<Traced>,
        commits: Vec<Commit>,
    ) -> Result<()> {
        self.counts.sent += events.len() as u64;
        let sent = InFlight::send(self.loader, changes, events, commits);
        match self.in_flight.replace(sent) {
            Some(last) => self.settle(state, run_id, last).await,
            None => Ok(()),
        }
    }

    /// Settles the chunk still in flight, if any.
    pub(super) async fn settle_last(&mut self) -> Result<()> {
        match (self.in_flight.take(), self.writer) {
            (Some(last), Some((state, run_id))) => self.settle(state, run_id, last).await,
            _ => Ok(()),
        }
    }

    /// Commits what the destination acknowledged of a chunk as its batches
    /// are answered, and its row errors.
    async fn settle(&mut self, state: &State, run_id: i64, chunk: InFlight) -> Result<()> {
        let InFlight {
            mut acks,
            batch,
            mut commits,
            mut answers,
        } = chunk;
        let t = Instant::now();
        let mut delivered = EventLines::default();
        let mut settled = Ok(());
        while let Some(first) = answers.next().await {
            self.answered(&mut acks, &batch, first, &mut commits, &mut delivered)?;
            // Batches answered meanwhile go in the same commit.
            while let Some(Some(more)) = answers.next().now_or_never() {
                self.answered(&mut acks, &batch, more, &mut commits, &mut delivered)?;
            }
            settled = self
                .commit(state, run_id, &mut commits, &mut delivered)
                .await;
            if settled.is_err() {
                break;
            }
        }
        crate::metrics::delivered(&self.sync.name, &acks.outcomes);
        settled?;
        if let Some(why) = acks.unfixable {
            return Err(RunError::Unfixable(why));
        }
        let answered: u64 = acks.outcomes.values().sum();
        if answered < batch.len() as u64 {
            // Halted: the rest stays uncommitted for the next run.
            return Err(RunError::Stopped(
                "stopped before every change was sent".into(),
            ));
        }
        self.timed("load", t);
        // What was decided without the destination, when nothing was sent.
        if !commits.is_empty() || !self.errors.is_empty() {
            self.commit(state, run_id, &mut commits, &mut EventLines::default())
                .await?;
        }
        Ok(())
    }

    /// Takes in one batch the destination is done with: counts each event's
    /// outcome, and a change whose events are all answered becomes a commit
    /// or a row error.
    fn answered(
        &mut self,
        acks: &mut Acks,
        batch: &[Event],
        done: Delivered,
        commits: &mut Vec<Commit>,
        delivered: &mut EventLines,
    ) -> Result<()> {
        self.counts.retried += done.retried;
        if let Some(why) = done.unfixable {
            // Its rows are owed with what the destination said; the
            // batches that never went out are derived again next run.
            acks.unfixable.get_or_insert(why);
        }
        for (i, delivery) in done.range.zip(done.deliveries) {
            let origin = acks.origins[i];
            let change = &acks.changes[origin];
            *acks
                .outcomes
                .entry((change.op, delivery.outcome()))
                .or_default() += 1;
            let c = &mut self.counts;
            let failure = delivery.tally(&mut c.ok, &mut c.rejected, &mut c.failed);
            if failure.is_none() && self.keep_deliveries {
                delivered.push(&batch[i])?;
            }
            match failure {
                Some(message) => {
                    acks.failures.entry(origin).or_insert((message, i));
                }
                None if delivery_id::is_part(&batch[i].delivery_id) => {
                    acks.taken
                        .entry(origin)
                        .or_default()
                        .push(batch[i].delivery_id.clone());
                }
                None => {}
            }
            let left = &mut acks.unanswered[origin];
            *left = left.saturating_sub(1);
            if *left > 0 {
                continue;
            }
            let taken = acks.taken.remove(&origin).unwrap_or_default();
            match acks.failures.remove(&origin) {
                None => commits.push(commit_of(change)),
                // Errors are keyed by the change's key: a transform may
                // rename ids.
                Some((message, i)) => self.errors.push(RowError {
                    key: change.key.clone(),
                    op: change.op,
                    message,
                    payload: serde_json::to_value(&batch[i])?,
                    if_dropped: snapshot_of(change),
                    delivery_id: Some(self.delivery_id(change)),
                    delivered: [self.delivered_before(change), &taken].concat(),
                }),
            }
        }
        Ok(())
    }
}
