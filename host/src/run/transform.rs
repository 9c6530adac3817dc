//! The transform stage: each change the sync sends becomes an event (with
//! the record last delivered for its key), and the sync's chain of
//! transforms keeps, changes, drops, splits or refuses it. A refused change
//! is a row error carrying the event as the chain received it; a dropped
//! one is committed unsent.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::commit::{commit_of, snapshot_of};
use super::error::Result;
use super::pass::Pass;
use crate::delivery_id;
use crate::diff::Change;
use crate::event::{Event, Fields, Op};
use crate::state::{Commit, RowError};
use crate::transform::{self, Traced};

impl Pass<'_> {
    /// The records last delivered for the changes the sync sends: `given`
    /// when the diff read them itself, else looked up in the state store.
    pub(super) async fn previous(
        &self,
        changes: &[Change],
        given: Option<HashMap<u128, Fields>>,
    ) -> Result<HashMap<u128, Fields>> {
        Ok(match (given, self.reader) {
            (Some(previous), _) => previous,
            (None, Some(state)) => {
                let hashes: Vec<u128> = changes
                    .iter()
                    .filter(|c| self.sync.on.contains(&c.op) && c.op != Op::Added)
                    .map(|c| c.key_hash)
                    .collect();
                state.records(&self.sync.name, &hashes).await?
            }
            (None, None) => HashMap::new(),
        })
    }

    /// Counts the changes and turns those the sync sends (its `on` list)
    /// into events; the others are committed unsent.
    pub(super) fn events(
        &mut self,
        changes: &[Change],
        previous: &mut HashMap<u128, Fields>,
    ) -> (Vec<Traced>, Vec<Commit>) {
        let mut commits = Vec::new();
        let mut traced = Vec::new();
        for (origin, c) in changes.iter().enumerate() {
            match c.op {
                Op::Added => self.counts.added += 1,
                Op::Updated => self.counts.updated += 1,
                Op::Deleted => self.counts.deleted += 1,
            }
            if self.sync.on.contains(&c.op) {
                // A refused change's row error shows the event as the chain
                // received it, previous record included; only transforms
                // refuse, so without them the event takes that record.
                let prev = if self.steps.is_empty() {
                    previous.remove(&c.key_hash)
                } else {
                    previous.get(&c.key_hash).cloned()
                };
                traced.push((origin, event_of(c, prev, self.delivery_id(c))));
            } else {
                self.counts.filtered += 1;
                commits.push(commit_of(c));
            }
        }
        (traced, commits)
    }

    /// Runs the chain over the events; what it refused becomes row errors
    /// and what it dropped joins `commits`.
    pub(super) async fn transform(
        &mut self,
        changes: &[Change],
        traced: Vec<Traced>,
        mut previous: HashMap<u128, Fields>,
        commits: &mut Vec<Commit>,
    ) -> Result<Vec<Traced>> {
        let origins: Vec<usize> = traced.iter().map(|(o, _)| *o).collect();
        let t = Instant::now();
        let piece = self.loader.batch_records;
        let mut transformed = transform::run_chain_across_cores(self.steps, traced, piece).await?;
        self.name_deliveries(changes, &mut transformed.events);
        let resumed = self.skip_delivered(changes, &mut transformed.events);
        self.timed("transform", t);
        let refused: HashMap<usize, String> = transformed.failed.into_iter().collect();
        let sending: HashSet<usize> = transformed.events.iter().map(|(o, _)| *o).collect();
        for origin in origins {
            let change = &changes[origin];
            if let Some(message) = refused.get(&origin) {
                // The payload is the event as the chain received it.
                let prev = previous.remove(&change.key_hash);
                let delivery_id = self.delivery_id(change);
                let payload = serde_json::to_value(event_of(change, prev, delivery_id.clone()))?;
                self.row_error(RowError {
                    key: change.key.clone(),
                    op: change.op,
                    message: message.clone(),
                    payload,
                    if_dropped: snapshot_of(change),
                    delivery_id: Some(delivery_id),
                    delivered: self.delivered_before(change).to_vec(),
                });
            } else if !sending.contains(&origin) {
                // Every event left was taken while it was owed: done.
                if !resumed.contains(&origin) {
                    self.counts.dropped += 1;
                }
                commits.push(commit_of(change));
            }
        }
        Ok(transformed.events)
    }

    /// Gives the events the chain made their delivery ids, whatever the
    /// transforms did to them: the change's own, or, for a change split
    /// into several events, the change's with a `-N` suffix in order.
    fn name_deliveries(&self, changes: &[Change], events: &mut [Traced]) {
        // Events know their change by its index in `changes`.
        let mut made = vec![0; changes.len()];
        for (origin, _) in events.iter() {
            made[*origin] += 1;
        }
        let mut seen = vec![0; changes.len()];
        for (origin, event) in events.iter_mut() {
            seen[*origin] += 1;
            let base = self.delivery_id(&changes[*origin]);
            event.delivery_id = delivery_id::made(base, made[*origin], seen[*origin]);
        }
    }
}

impl Pass<'_> {
    /// Leaves out the events of split changes that the destination took
    /// while the change was owed, so only the refused ones go again;
    /// returns the changes that had any left out.
    fn skip_delivered(&self, changes: &[Change], events: &mut Vec<Traced>) -> HashSet<usize> {
        let mut resumed = HashSet::new();
        events.retain(|(origin, event)| {
            let taken = self
                .delivered_before(&changes[*origin])
                .contains(&event.delivery_id);
            if taken {
                resumed.insert(*origin);
            }
            !taken
        });
        resumed
    }
}

/// The event a change becomes before transforms, given the record last
/// delivered for its key: a deletion carries that record as its fields.
fn event_of(c: &Change, prev: Option<Fields>, delivery_id: String) -> Event {
    Event {
        op: c.op,
        id: c.key.clone(),
        fields: c
            .fields()
            .or_else(|| prev.clone())
            .unwrap_or_else(Fields::empty),
        previous: prev,
        delivery_id,
    }
}
