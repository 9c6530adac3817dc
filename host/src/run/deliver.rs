//! The deliver stage: the chunk's events go to the destination in batches,
//! several in flight, and each batch is committed as soon as the
//! destination is done with it (with whatever else finished meanwhile)
//! while the others are still under way, so a crash repeats only batches
//! not yet committed. A change is committed once every event made from it
//! (a transform may make several) is acknowledged, and owed if any of them
//! failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use super::commit::{commit_of, snapshot_of};
use super::error::{Result, RunError};
use super::pass::Pass;
use crate::delivery_id;
use crate::diff::Change;
use crate::event::{Event, Op};
use crate::load::Delivered;
use crate::state::{Commit, RowError, State};
use crate::transform::Traced;

/// What the destination has answered so far of one chunk's events.
struct Acks<'c> {
    changes: &'c [Change],
    /// The change each event came from.
    origins: Vec<usize>,
    /// Per change, how many of its events are not answered yet.
    unanswered: HashMap<usize, usize>,
    /// Per change, the first failure among its events and that event.
    failures: HashMap<usize, (String, usize)>,
    /// Per change split into several events, the delivery ids of those
    /// acknowledged, kept with its row error if another one failed.
    taken: HashMap<usize, Vec<String>>,
    /// What became of each op's events, for the metrics.
    outcomes: HashMap<(Op, &'static str), u64>,
    /// Why the destination cannot take any batch (see [`Delivered::unfixable`]).
    unfixable: Option<String>,
}

impl Pass<'_> {
    /// Delivers the chunk's events and commits what the destination
    /// acknowledged, with `commits` (changes decided without it).
    pub(super) async fn deliver(
        &mut self,
        state: &State,
        run_id: i64,
        changes: &[Change],
        events: Vec<Traced>,
        mut commits: Vec<Commit>,
    ) -> Result<()> {
        let (origins, batch): (Vec<usize>, Vec<Event>) = events.into_iter().unzip();
        let batch: Arc<[Event]> = batch.into();
        self.counts.sent += batch.len() as u64;
        let mut unanswered: HashMap<usize, usize> = HashMap::new();
        for origin in &origins {
            *unanswered.entry(*origin).or_default() += 1;
        }
        let mut acks = Acks {
            changes,
            origins,
            unanswered,
            failures: HashMap::new(),
            taken: HashMap::new(),
            outcomes: HashMap::new(),
            unfixable: None,
        };
        let mut delivered: Vec<String> = Vec::new();

        let t = Instant::now();
        let (done_tx, mut done_rx) = futures::channel::mpsc::unbounded();
        let (loader, events) = (self.loader, batch.clone());
        let deliver = async move {
            let mut delivered = loader.deliver(events);
            while let Some(batch) = delivered.next().await {
                let _ = done_tx.unbounded_send(batch);
            }
            Ok::<_, RunError>(())
        };
        let commit = async {
            while let Some(first) = done_rx.next().await {
                let mut finished = vec![first];
                while let Ok(more) = done_rx.try_recv() {
                    finished.push(more);
                }
                for done in finished {
                    self.answered(&mut acks, &batch, done, &mut commits, &mut delivered)?;
                }
                self.commit(state, run_id, &mut commits, &mut delivered)
                    .await?;
            }
            Ok::<_, RunError>(())
        };
        let delivering = futures::future::try_join(deliver, commit).await;
        crate::metrics::delivered(&self.sync.name, &acks.outcomes);
        delivering?;
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
            self.commit(state, run_id, &mut commits, &mut Vec::new())
                .await?;
        }
        Ok(())
    }

    /// Takes in one batch the destination is done with: counts each event's
    /// outcome, and a change whose events are all answered becomes a commit
    /// or a row error.
    fn answered(
        &mut self,
        acks: &mut Acks<'_>,
        batch: &[Event],
        done: Delivered,
        commits: &mut Vec<Commit>,
        delivered: &mut Vec<String>,
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
                delivered.push(serde_json::to_string(&batch[i])?);
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
            let left = acks.unanswered.entry(origin).or_default();
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
