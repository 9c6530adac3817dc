//! The sync's chain of transform components. Each event carries the index of
//! the change it came from (its origin), so that after drops and splits the
//! load stage still knows which change an acknowledgement belongs to.
//!
//! What a transform returns is plugin output, held to `[limits]` after each
//! step like the extracted record was before it: a change split into more
//! than `split_events` events, an id over `event_id_bytes` or fields over
//! `record_bytes` of JSON fail that change (a row error naming the
//! transform and the limit), so one plugin cannot blow up the memory of the
//! destination, the state store or an alert.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use tokio_util::task::AbortOnDropHandle;

use crate::event::Event;
use crate::limits::Limits;
use crate::plugin::{self, CallError, Item};

#[derive(Clone)]
pub struct Step {
    pub label: String,
    pub transform: plugin::Transform,
    pub config: Value,
    /// What the step's output is held to.
    pub caps: Caps,
}

/// The limits a transform's output is held to.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub split_events: usize,
    pub event_id_bytes: usize,
    pub record_bytes: usize,
}

impl From<&Limits> for Caps {
    fn from(limits: &Limits) -> Caps {
        Caps {
            split_events: limits.split_events,
            event_id_bytes: limits.event_id_bytes,
            record_bytes: limits.record_bytes,
        }
    }
}

impl Caps {
    /// Why the events a step made of one event break the limits, if they do.
    fn breach(&self, made: &[Event]) -> Option<String> {
        if made.len() > self.split_events {
            return Some(format!(
                "split one event into {} events, over the limit of {}; raise limits.split_events",
                made.len(),
                self.split_events
            ));
        }
        made.iter().find_map(|e| {
            if e.id.len() > self.event_id_bytes {
                return Some(format!(
                    "returned an event id of {} bytes, over the limit of {}; raise limits.event_id_bytes",
                    e.id.len(),
                    self.event_id_bytes
                ));
            }
            let bytes = e.fields.json().len();
            (bytes > self.record_bytes).then(|| {
                format!(
                    "returned fields of {bytes} bytes of JSON, over the limit of {}; raise limits.record_bytes",
                    self.record_bytes
                )
            })
        })
    }
}

/// An event and the index of the change it came from.
pub type Traced = (usize, Event);

/// The result of running the chain over a batch.
pub struct Transformed {
    pub events: Vec<Traced>,
    /// Origins a transform refused, with its message.
    pub failed: Vec<(usize, String)>,
}

/// Runs the chain over `events` in pieces of `piece` events, as many at
/// once as there are cores, each a task of its own (with an instance of
/// each transform apiece), keeping the events in order: a chunk's
/// transforms use every core, not just the run's.
pub async fn run_chain_across_cores(
    steps: &[Step],
    mut events: Vec<Traced>,
    piece: usize,
) -> Result<Transformed, CallError> {
    if steps.is_empty() || events.len() <= piece {
        return run_chain(steps, events).await;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (steps, total): (Arc<[Step]>, usize) = (steps.into(), events.len());
    let mut pieces = Vec::new();
    while !events.is_empty() {
        let rest = events.split_off(piece.min(events.len()));
        pieces.push(std::mem::replace(&mut events, rest));
    }
    let mut done = futures::stream::iter(pieces)
        .map(|piece| {
            let steps = steps.clone();
            AbortOnDropHandle::new(tokio::spawn(async move { run_chain(&steps, piece).await }))
        })
        .buffered(cores);
    let mut all = Transformed {
        events: Vec::with_capacity(total),
        failed: Vec::new(),
    };
    while let Some(joined) = done.next().await {
        // A panic in a piece is the run's, as if it ran here.
        let piece = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        all.events.extend(piece.events);
        all.failed.extend(piece.failed);
    }
    Ok(all)
}

/// Runs each step over the events in turn, in one call a step.
pub async fn run_chain(steps: &[Step], events: Vec<Traced>) -> Result<Transformed, CallError> {
    let mut current = events;
    let mut failed = Vec::new();
    for step in steps {
        if current.is_empty() {
            break;
        }
        let (origins, batch): (Vec<usize>, Vec<Event>) = current.into_iter().unzip();
        let items = step.transform.apply(&step.config, &batch).await?;
        current = Vec::with_capacity(batch.len());
        for (origin, item) in origins.into_iter().zip(items) {
            let made: &[Event] = match &item {
                Item::Keep(e) => std::slice::from_ref(e),
                Item::Drop => &[],
                Item::Split(es) => es,
                Item::Fail(e) => {
                    failed.push((origin, format!("{}: {}", step.label, e.message)));
                    continue;
                }
            };
            if let Some(why) = step.caps.breach(made) {
                failed.push((origin, format!("{}: {why}", step.label)));
                continue;
            }
            match item {
                Item::Keep(e) => current.push((origin, e)),
                Item::Split(es) => current.extend(es.into_iter().map(|e| (origin, e))),
                Item::Drop | Item::Fail(_) => {}
            }
        }
        // A failed origin sends nothing, even what other splits produced.
        let refused: std::collections::HashSet<usize> = failed.iter().map(|(o, _)| *o).collect();
        current.retain(|(o, _)| !refused.contains(o));
    }
    Ok(Transformed {
        events: current,
        failed,
    })
}
