//! A chunk on its way: its batches sent, and what the destination has
//! answered of them so far. The deliver stage sends a chunk and then
//! settles the one before it, so a chunk is in flight while the run
//! commits the last one and prepares the next.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::diff::Change;
use crate::event::{Event, Op};
use crate::load::{Delivered, Loader};
use crate::state::Commit;
use crate::transform::Traced;

/// A chunk whose batches are under way.
pub(super) struct InFlight {
    pub(super) acks: Acks,
    pub(super) batch: Arc<[Event]>,
    /// Changes decided without the destination, committed with the first
    /// batch answered.
    pub(super) commits: Vec<Commit>,
    pub(super) answers: BoxStream<'static, Delivered>,
}

/// What the destination has answered so far of one chunk's events.
pub(super) struct Acks {
    pub(super) changes: Vec<Change>,
    /// The change each event came from.
    pub(super) origins: Vec<usize>,
    /// Per change, how many of its events are not answered yet.
    pub(super) unanswered: Vec<u32>,
    /// Per change, the first failure among its events and that event.
    pub(super) failures: HashMap<usize, (String, usize)>,
    /// Per change split into several events, the delivery ids of those
    /// acknowledged, kept with its row error if another one failed.
    pub(super) taken: HashMap<usize, Vec<String>>,
    /// What became of each op's events, for the metrics.
    pub(super) outcomes: HashMap<(Op, &'static str), u64>,
    /// Why the destination cannot take any batch (see [`Delivered::unfixable`]).
    pub(super) unfixable: Option<String>,
}

impl InFlight {
    /// Sends the chunk's events.
    pub(super) fn send(
        loader: &Loader,
        changes: Vec<Change>,
        events: Vec<Traced>,
        commits: Vec<Commit>,
    ) -> InFlight {
        let (origins, batch): (Vec<usize>, Vec<Event>) = events.into_iter().unzip();
        let batch: Arc<[Event]> = batch.into();
        let mut unanswered = vec![0; changes.len()];
        for origin in &origins {
            unanswered[*origin] += 1;
        }
        InFlight {
            acks: Acks {
                changes,
                origins,
                unanswered,
                failures: HashMap::new(),
                taken: HashMap::new(),
                outcomes: HashMap::new(),
                unfixable: None,
            },
            answers: loader.deliver(batch.clone()).boxed(),
            batch,
            commits,
        }
    }
}
