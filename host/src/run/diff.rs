//! The diff stage: the model's rows compared with what Ebb last delivered,
//! either here ([`Spill`] partitions against the state store's snapshot)
//! or in the warehouse (`diff = "warehouse"`, which returns only changed
//! rows). Either way the changes go on a chunk at a time, so memory holds
//! one chunk's events whatever the model's size.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::error::{Doing, Result, RunError};
use super::pass::{Pass, Reading};
use crate::config;
use crate::diff::warehouse::{self as pushdown, SnapshotError};
use crate::diff::{self, Change, Entry, Range, Spill};
use crate::event::{Fields, Op, Record};
use crate::rows::RowRef;
use crate::source::{BoundQuery, Warehouse};
use crate::state::{State, StateError};

impl Pass<'_> {
    /// Reads every row, parks it in a [`Spill`] (which settles the rows
    /// matching the snapshot's ranges read ahead) and compares the rest
    /// with the state store's snapshot, partition by partition.
    pub(super) async fn diff_in_engine(
        &mut self,
        warehouse: Warehouse,
        query: BoundQuery,
        model: &config::Model,
        limits: &crate::limits::Limits,
        deletions: bool,
    ) -> Result<()> {
        let mut ahead = self.read_ahead(deletions);
        let mut spill = Spill::new(diff::MEMORY_BUDGET);
        self.spill(warehouse, query, model, limits, &mut spill, &mut ahead)
            .await?;
        if let Some(ahead) = ahead {
            ahead.finish(&mut spill).await?;
        }
        self.compare(spill, model, deletions).await
    }

    /// The snapshot's first ranges, read in a task of its own while the
    /// source is read, up to about [`diff::READ_AHEAD`] bytes of entries; a
    /// full model's diff reads them all, and the state store would sit
    /// idle meanwhile.
    fn read_ahead(&self, deletions: bool) -> Option<ReadingAhead> {
        let (Some(state), true) = (self.reader, deletions) else {
            return None;
        };
        let (state, sync) = (state.clone(), self.sync.name.clone());
        let (send, ranges) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut bytes = 0;
            for p in 0..diff::PARTITIONS {
                let range = partition_range(&state, &sync, p).await?;
                bytes += range.entries.len() * size_of::<Entry>();
                if send.send((p, range)).is_err() || bytes >= diff::READ_AHEAD {
                    break;
                }
            }
            Ok(())
        });
        let task = AbortOnDropHandle::new(task);
        Some(ReadingAhead { task, ranges })
    }

    /// Reads every row of the model into `spill`, keyed, handing it the
    /// snapshot's ranges as they are read ahead.
    async fn spill(
        &mut self,
        warehouse: Warehouse,
        query: BoundQuery,
        model: &config::Model,
        limits: &crate::limits::Limits,
        spill: &mut Spill,
        ahead: &mut Option<ReadingAhead>,
    ) -> Result<()> {
        let mut rows = warehouse.stream(query);
        while let Some(chunk) = self.next_chunk(&mut rows).await {
            let t = Instant::now();
            let chunk = chunk?;
            if let Some(ahead) = ahead {
                ahead.arrived(spill);
            }
            for row in chunk.rows() {
                if let Some(key) = self.keyed(model, row, limits)? {
                    spill
                        .push(&diff::Row::new(&key, row.json()))
                        .doing("cannot park extracted rows for the diff")?;
                }
            }
            self.timed("diff", t);
            self.progress
                .set_message(format!("extracted {}", self.counts.extracted));
        }
        Ok(())
    }

    /// Compares the parked rows with the snapshot a partition at a time,
    /// handing the changes on a chunk at a time.
    async fn compare(
        &mut self,
        mut spill: Spill,
        model: &config::Model,
        deletions: bool,
    ) -> Result<()> {
        // A full model compares every partition with its whole range of
        // the snapshot: past those read ahead, the next range is read while
        // this one is compared.
        let (reader, sync) = (self.reader, self.sync);
        let early = spill.ranges_ahead();
        let mut ranges = futures::stream::iter(early..diff::PARTITIONS)
            .map(|p| async move {
                match reader {
                    Some(s) if deletions => partition_range(s, &sync.name, p).await.map(Some),
                    _ => Ok(None),
                }
            })
            .buffered(2);
        let mut changes = Vec::new();
        // Key hashes of deletions, whose keys are looked up a few hundred
        // at a time rather than a partition's handful at a time.
        let mut gone = Vec::new();
        // Since when a batch's worth of changes, short of a chunk, waits.
        let mut waiting: Option<Instant> = None;
        for p in 0..diff::PARTITIONS {
            let t = Instant::now();
            let (partition, ahead) = spill.take(p).doing("cannot read back extracted rows")?;
            let range = match p < early {
                true => ahead,
                false => ranges.next().await.transpose()?.flatten(),
            };
            let extracted = partition.rows().doing("cannot read back extracted rows")?;
            if extracted.is_empty() && !deletions {
                continue;
            }
            let snapshot = match (range, reader) {
                (Some(range), _) => range,
                // An incremental model returns few rows of a large
                // snapshot: look those up rather than read the range.
                (None, Some(s)) => {
                    let hashes: Vec<u128> = extracted.iter().map(|r| r.key_hash).collect();
                    Range::new(s.snapshot_entries(&sync.name, &hashes).await?)
                }
                (None, None) => Range::default(),
            };
            let classified = diff::classify(&extracted, &snapshot, deletions)
                .doing("cannot read back extracted rows")?;
            // The changes hold copies of what they need: the partition can
            // go before they are delivered.
            drop(extracted);
            drop(partition);
            self.duplicates(model, classified.duplicates).await?;
            changes.extend(classified.changes);
            gone.extend(classified.gone);
            if gone.len() >= DELETIONS_LOOKED_UP {
                deleted(reader, &sync.name, std::mem::take(&mut gone), &mut changes).await?;
            }
            self.timed("diff", t);
            // A partition of a large model can hold several chunks of
            // changes (every row of it, on a first run): they are handled a
            // chunk at a time too, so memory holds the copies, events and
            // commits of one chunk, whatever the model's size.
            let chunk = self.chunk_size();
            while changes.len() >= chunk {
                self.changes(changes.drain(..chunk).collect(), None).await?;
                waiting = None;
            }
            // Sparse changes (an incremental run's) would otherwise wait
            // for most of the diff to fill a chunk, and the last of them be
            // sent only after it: a batch's worth goes once it has waited
            // a while for more.
            if changes.len() >= self.loader.batch_records {
                let since = *waiting.get_or_insert_with(Instant::now);
                if since.elapsed() >= diff::CHUNK_WAIT {
                    self.changes(std::mem::take(&mut changes), None).await?;
                    waiting = None;
                }
            }
        }
        deleted(reader, &sync.name, gone, &mut changes).await?;
        self.changes(changes, None).await
    }

    /// The row errors of keys extracted more than once. A key whose first
    /// row was settled shows the record the snapshot keeps for it, which
    /// that row matched.
    async fn duplicates(
        &mut self,
        model: &config::Model,
        duplicates: Vec<diff::Duplicate>,
    ) -> Result<()> {
        let settled: Vec<u128> = (duplicates.iter())
            .filter(|d| d.first.is_none())
            .map(|d| d.key_hash)
            .collect();
        let mut delivered = match (self.reader, settled.is_empty()) {
            (Some(state), false) => state.records(&self.sync.name, &settled).await?,
            _ => HashMap::new(),
        };
        for d in duplicates {
            let first = d.first.or_else(|| {
                let record = delivered.remove(&d.key_hash);
                record.map(|fields| fields.record())
            });
            self.duplicate(model, d.key, d.rows, first.unwrap_or_default());
        }
        Ok(())
    }

    /// Has the warehouse compare the model with the snapshot it keeps in
    /// `_ebb` and reads only what changed (see [`diff::warehouse`]).
    pub(super) async fn diff_in_warehouse(
        &mut self,
        mut warehouse: Warehouse,
        query: BoundQuery,
        reading: &Reading<'_>,
    ) -> Result<()> {
        let Reading {
            model,
            source,
            deletions,
            row_hash,
            ..
        } = *reading;
        let table = pushdown::table(source);
        if self.writer.is_some() {
            self.snapshots = Some(pushdown::Snapshots::open(source).await?);
        }
        let conn = warehouse.postgres().ok_or(SnapshotError::NotPostgres)?;
        let exists = self.snapshots.is_some()
            || pushdown::exists(conn, &table)
                .await
                .map_err(SnapshotError::from)?;
        let row_hash = pushdown::ready(conn, row_hash)
            .await
            .map_err(SnapshotError::from)?;
        let table = exists.then_some(table.as_str());
        let query = pushdown::diff_query(model, query, &self.sync.name, deletions, table, row_hash);
        let mut rows = warehouse.stream(query);
        let mut found = Pushed::default();
        let bad = |e: String| RunError::Rows(format!("model `{}`: {e}", model.name));
        while let Some(chunk) = self.next_chunk(&mut rows).await {
            let t = Instant::now();
            let (meta, chunk) = pushdown::split(&chunk?).map_err(bad)?;
            for (meta, row) in meta.into_iter().zip(chunk.rows()) {
                self.pushed_down(reading, meta, row, &mut found)?;
            }
            self.timed("diff", t);
            self.progress
                .set_message(format!("changed {}", found.changes.len()));
            if found.changes.len() >= self.chunk_size() {
                let previous = std::mem::take(&mut found.previous);
                self.changes(std::mem::take(&mut found.changes), Some(previous))
                    .await?;
            }
        }
        drop(rows);
        for (key, (rows, first)) in found.duplicates {
            self.duplicate(model, key, rows, first);
        }
        self.changes(found.changes, Some(found.previous)).await?;
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.analyze_if_grown().await;
        }
        Ok(())
    }

    /// Takes in one row of the warehouse's diff: a change (with the record
    /// last delivered for its key, if any) or a repeat of a duplicate key.
    fn pushed_down(
        &mut self,
        reading: &Reading<'_>,
        meta: pushdown::Found,
        row: RowRef<'_>,
        found: &mut Pushed,
    ) -> Result<()> {
        let model = reading.model;
        let bad = |e: String| RunError::Rows(format!("model `{}`: {e}", model.name));
        let change = match (meta.fingerprint, meta.key, meta.previous) {
            // A key of the snapshot that the model no longer returns.
            (None, Some(key), Some(record)) => {
                let key_hash = diff::key_hash(&key);
                found
                    .previous
                    .insert(key_hash, pushdown::parse_record(record).map_err(bad)?);
                Change {
                    key,
                    key_hash,
                    op: Op::Deleted,
                    json: None,
                    fingerprint: 0,
                }
            }
            (None, ..) => return Ok(()),
            (Some(_), Some(key), _) if meta.copies > 1 => {
                found
                    .duplicates
                    .entry(key)
                    .or_insert_with(|| (0, row.record()))
                    .0 += 1;
                return Ok(());
            }
            (Some(fingerprint), _, last) => {
                let Some(key) = self.keyed(model, row, reading.limits)? else {
                    return Ok(());
                };
                let key_hash = diff::key_hash(&key);
                let op = match last {
                    Some(record) => {
                        found
                            .previous
                            .insert(key_hash, pushdown::parse_record(record).map_err(bad)?);
                        Op::Updated
                    }
                    None => Op::Added,
                };
                Change {
                    key: key.into_owned(),
                    key_hash,
                    op,
                    json: Some(String::from_utf8_lossy(row.json()).into_owned()),
                    fingerprint: pushdown::fingerprint(fingerprint),
                }
            }
        };
        found.changes.push(change);
        Ok(())
    }
}

/// How many deletions' keys are looked up together.
const DELETIONS_LOOKED_UP: usize = 500;

/// Adds a deletion to `changes` for each of `gone`, the key hashes of
/// snapshot entries no longer extracted, with the key the snapshot keeps
/// (a deletion needs it, and the diff reads only hashes).
async fn deleted(
    reader: Option<&State>,
    sync: &str,
    gone: Vec<u128>,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let (Some(state), false) = (reader, gone.is_empty()) else {
        return Ok(());
    };
    let mut keys = state.snapshot_keys(sync, &gone).await?;
    for key_hash in gone {
        if let Some(key) = keys.remove(&key_hash) {
            changes.push(Change {
                key,
                key_hash,
                op: Op::Deleted,
                json: None,
                fingerprint: 0,
            });
        }
    }
    Ok(())
}

/// The snapshot's entries in partition `p`'s key-hash range, sorted and
/// indexed.
async fn partition_range(
    state: &State,
    sync: &str,
    p: usize,
) -> std::result::Result<Range, StateError> {
    let (lo, hi) = diff::partition_bounds(p);
    Ok(Range::new(state.snapshot_range(sync, lo, hi).await?))
}

/// The snapshot's first ranges, as a task reads them while the source is
/// read.
struct ReadingAhead {
    task: AbortOnDropHandle<std::result::Result<(), StateError>>,
    ranges: mpsc::UnboundedReceiver<(usize, Range)>,
}

impl ReadingAhead {
    /// Hands `spill` the ranges read so far.
    fn arrived(&mut self, spill: &mut Spill) {
        while let Ok((p, range)) = self.ranges.try_recv() {
            spill.read_ahead(p, range);
        }
    }

    /// Hands `spill` every range the task reads, once it has.
    async fn finish(mut self, spill: &mut Spill) -> Result<()> {
        (&mut self.task)
            .await
            .doing("cannot read the snapshot ahead of the diff")??;
        self.arrived(spill);
        Ok(())
    }
}

/// What a `diff = "warehouse"` pass has found and not yet handed on.
#[derive(Default)]
struct Pushed {
    changes: Vec<Change>,
    /// The records last delivered for the changes' keys.
    previous: HashMap<u128, Fields>,
    /// Each key returned by several rows: how many, and the first.
    duplicates: BTreeMap<String, (usize, Record)>,
}
