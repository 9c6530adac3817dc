//! One walk through the pipeline, and what it gathers on the way: counts,
//! stage timings, row errors, the cursor read. With a writer it loads and
//! commits each chunk of changes as it goes; without one (`ebb plan`) it
//! collects the events it would send. Each stage is a file of its own
//! beside this one, adding its step to [`Pass`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::committing::Committing;
use super::error::Result;
use super::in_flight::InFlight;
use super::map;
use crate::config::{self, DiffIn};
use crate::cursor::Cursor;
use crate::delivery_id::{ChangeOf, DeliveryIds};
use crate::diff::{Change, warehouse as pushdown};
use crate::event::{Event, Fields};
use crate::extract;
use crate::load::Loader;
use crate::param::ParamKind;
use crate::source::Warehouse;
use crate::state::{RowError, State};
use crate::status::Counts;
use crate::transform::Step;

/// What a `diff = "warehouse"` pass reads, and how.
#[derive(Clone, Copy)]
pub(super) struct Reading<'a> {
    pub(super) model: &'a config::Model,
    pub(super) source: &'a config::Source,
    pub(super) limits: &'a crate::limits::Limits,
    /// Whether keys the model no longer returns are deletions (full models).
    pub(super) deletions: bool,
    pub(super) row_hash: pushdown::RowHash,
}

/// One walk through the pipeline. With `writer` it loads and commits; without
/// it, it collects the events it would send.
pub(super) struct Pass<'a> {
    pub(super) sync: &'a config::Sync,
    pub(super) loader: &'a Loader,
    pub(super) steps: &'a [Step],
    pub(super) writer: Option<(&'a State, i64)>,
    pub(super) reader: Option<&'a State>,
    pub(super) progress: &'a ProgressBar,
    pub(super) counts: Counts,
    pub(super) timings: Vec<(&'static str, Duration)>,
    pub(super) errors: Vec<RowError>,
    pub(super) planned: Vec<Event>,
    /// The highest cursor value read, for a cursor model.
    pub(super) cursor: Option<Cursor>,
    /// Whether delivered events are kept for `ebb replay`.
    pub(super) keep_deliveries: bool,
    /// The longest row error message kept.
    pub(super) error_text_bytes: usize,
    /// Where a `diff = "warehouse"` run commits its snapshot.
    pub(super) snapshots: Option<pushdown::Snapshots>,
    /// What names each change for the destination.
    pub(super) ids: DeliveryIds,
    /// The chunk sent last, not yet settled.
    pub(super) in_flight: Option<InFlight>,
    /// The last commit, while the state store writes it.
    pub(super) committing: Option<Committing>,
}

impl<'a> Pass<'a> {
    pub(super) fn new(
        sync: &'a config::Sync,
        loader: &'a Loader,
        steps: &'a [Step],
        writer: Option<(&'a State, i64)>,
        progress: &'a ProgressBar,
    ) -> Pass<'a> {
        Pass {
            sync,
            loader,
            steps,
            writer,
            reader: writer.map(|(s, _)| s),
            progress,
            counts: Counts::default(),
            timings: ["extract", "diff", "transform", "load", "commit"]
                .map(|s| (s, Duration::ZERO))
                .to_vec(),
            errors: Vec::new(),
            planned: Vec::new(),
            cursor: None,
            keep_deliveries: false,
            error_text_bytes: crate::limits::Limits::default().error_text_bytes,
            snapshots: None,
            ids: DeliveryIds::default(),
            in_flight: None,
            committing: None,
        }
    }

    pub(super) fn timed(&mut self, stage: &'static str, since: Instant) {
        self.took(stage, since.elapsed());
    }

    pub(super) fn took(&mut self, stage: &'static str, time: Duration) {
        if let Some((_, d)) = self.timings.iter_mut().find(|(s, _)| *s == stage) {
            *d += time;
        }
    }

    pub(super) fn chunk_size(&self) -> usize {
        (self.loader.batch_records * self.loader.max_in_flight).clamp(1000, 10_000)
    }

    pub(super) async fn execute(
        &mut self,
        warehouse: Warehouse,
        model: &config::Model,
        source: &config::Source,
        limits: &crate::limits::Limits,
        cursor_kind: Option<ParamKind>,
        row_hash: pushdown::RowHash,
    ) -> Result<()> {
        if let Some(state) = self.reader {
            self.ids = state.delivery_ids(&self.sync.name).await?;
        }
        let query = self.query(model, source.kind, cursor_kind).await?;
        let deletions = extract::reading(model, source.kind) == extract::Reading::Full;
        match model.diff {
            DiffIn::Engine => {
                self.diff_in_engine(warehouse, query, model, limits, deletions)
                    .await?
            }
            DiffIn::Warehouse => {
                let reading = Reading {
                    model,
                    source,
                    limits,
                    deletions,
                    row_hash,
                };
                self.diff_in_warehouse(warehouse, query, &reading).await?
            }
        }
        self.settle_last().await
    }

    /// Transforms, maps, loads and commits one chunk of changes. `previous`
    /// holds the records last delivered for them when the diff read those
    /// itself; otherwise they are looked up in the state store.
    pub(super) async fn changes(
        &mut self,
        changes: Vec<Change>,
        previous: Option<HashMap<u128, Fields>>,
    ) -> Result<()> {
        let t = Instant::now();
        let mut previous = self.previous(&changes, previous).await?;
        let (traced, mut commits) = self.events(&changes, &mut previous);
        self.timed("diff", t);
        let mut events = self
            .transform(&changes, traced, previous, &mut commits)
            .await?;
        map::apply(self.sync.mapping.as_ref(), &mut events);
        match self.writer {
            Some((state, run_id)) => self.deliver(state, run_id, changes, events, commits).await,
            None => {
                self.planned.extend(events.into_iter().map(|(_, e)| e));
                Ok(())
            }
        }
    }

    pub(super) fn row_error(&mut self, error: RowError) {
        self.counts.failed += 1;
        self.errors.push(error);
    }

    /// The delivery id of a change.
    pub(super) fn delivery_id(&self, c: &Change) -> String {
        self.ids.of(change_of(c))
    }

    /// The events of a split change the destination took while it was
    /// owed (see [`DeliveryIds::delivered`]).
    pub(super) fn delivered_before(&self, c: &Change) -> &[String] {
        self.ids.delivered(change_of(c))
    }
}

fn change_of(c: &Change) -> ChangeOf<'_> {
    ChangeOf {
        key: &c.key,
        op: c.op,
        fingerprint: c.json.is_some().then_some(c.fingerprint),
    }
}
