//! The diff stage: the model's rows compared with what Ebb last delivered,
//! either here ([`Spill`] partitions against the state store's snapshot)
//! or in the warehouse (`diff = "warehouse"`, which returns only changed
//! rows). Either way the changes go on a chunk at a time, so memory holds
//! one chunk's events whatever the model's size.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use futures::StreamExt;
use tokio_util::task::AbortOnDropHandle;

use super::error::{Doing, Result, RunError};
use super::pass::{Pass, Reading};
use crate::config;
use crate::diff::warehouse::{self as pushdown, SnapshotError};
use crate::diff::{self, Change, Entry, Spill};
use crate::event::{Fields, Op, Record};
use crate::rows::RowRef;
use crate::source::{BoundQuery, Warehouse};
use crate::state::{State, StateError};

impl Pass<'_> {
    /// Reads every row, parks it in a [`Spill`] and compares it with the
    /// state store's snapshot, partition by partition.
    pub(super) async fn diff_in_engine(
        &mut self,
        warehouse: Warehouse,
        query: BoundQuery,
        model: &config::Model,
        limits: &crate::limits::Limits,
        deletions: bool,
    ) -> Result<()> {
        let ahead = self.read_ahead(deletions);
        let spill = self.spill(warehouse, query, model, limits).await?;
        let early = match ahead {
            Some(task) => task
                .await
                .doing("cannot read the snapshot ahead of the diff")??,
            None => Vec::new(),
        };
        self.compare(spill, early, model, deletions).await
    }

    /// The snapshot's first ranges, read in a task of its own while the
    /// source is read, up to about [`diff::READ_AHEAD`] bytes of entries; a
    /// full model's diff reads them all, and the state store would sit
    /// idle meanwhile.
    fn read_ahead(
        &self,
        deletions: bool,
    ) -> Option<AbortOnDropHandle<std::result::Result<Vec<Vec<Entry>>, StateError>>> {
        let (Some(state), true) = (self.reader, deletions) else {
            return None;
        };
        let (state, sync) = (state.clone(), self.sync.name.clone());
        let task = tokio::spawn(async move {
            let (mut ranges, mut bytes) = (Vec::new(), 0);
            for p in 0..diff::PARTITIONS {
                let range = partition_range(&state, &sync, p).await?;
                bytes += range.len() * size_of::<Entry>();
                ranges.push(range);
                if bytes >= diff::READ_AHEAD {
                    break;
                }
            }
            Ok(ranges)
        });
        Some(AbortOnDropHandle::new(task))
    }

    /// Reads every row of the model into a [`Spill`], keyed.
    async fn spill(
        &mut self,
        warehouse: Warehouse,
        query: BoundQuery,
        model: &config::Model,
        limits: &crate::limits::Limits,
    ) -> Result<Spill> {
        let mut spill = Spill::new(diff::MEMORY_BUDGET);
        let mut rows = warehouse.stream(query);
        while let Some(chunk) = self.next_chunk(&mut rows).await {
            let t = Instant::now();
            let chunk = chunk?;
            for row in chunk.rows() {
                if let Some(key) = self.keyed(model, row, limits)? {
                    spill
                        .push(&key, row.json())
                        .doing("cannot park extracted rows for the diff")?;
                }
            }
            self.timed("diff", t);
            self.progress
                .set_message(format!("extracted {}", self.counts.extracted));
        }
        Ok(spill)
    }

    /// Compares the spilled rows with the snapshot a partition at a time,
    /// handing the changes on a chunk at a time. `early` holds the first
    /// ranges of the snapshot, read ahead.
    async fn compare(
        &mut self,
        mut spill: Spill,
        early: Vec<Vec<Entry>>,
        model: &config::Model,
        deletions: bool,
    ) -> Result<()> {
        // A full model compares every partition with its whole range of
        // the snapshot: past those read ahead, the next range is read while
        // this one is compared.
        let (reader, sync) = (self.reader, self.sync);
        let mut ranges = futures::stream::iter(early.len()..diff::PARTITIONS)
            .map(|p| async move {
                match reader {
                    Some(s) if deletions => partition_range(s, &sync.name, p).await.map(Some),
                    _ => Ok(None),
                }
            })
            .buffered(2);
        let mut early = early.into_iter();
        let mut changes = Vec::new();
        // Key hashes of deletions, whose keys are looked up a few hundred
        // at a time rather than a partition's handful at a time.
        let mut gone = Vec::new();
        // Since when a batch's worth of changes, short of a chunk, waits.
        let mut waiting: Option<Instant> = None;
        for p in 0..diff::PARTITIONS {
            let t = Instant::now();
            let range = match early.next() {
                Some(range) => Some(range),
                None => ranges.next().await.transpose()?.flatten(),
            };
            let partition = spill.take(p).doing("cannot read back extracted rows")?;
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
                    s.snapshot_entries(&sync.name, &hashes).await?
                }
                (None, None) => Vec::new(),
            };
            let classified = diff::classify(&extracted, &snapshot, deletions)
                .doing("cannot read back extracted rows")?;
            // The changes hold copies of what they need: the partition can
            // go before they are delivered.
            drop(extracted);
            drop(partition);
            for d in classified.duplicates {
                self.duplicate(model, d.key, d.rows, d.first);
            }
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

/// The snapshot's entries in partition `p`'s key-hash range.
async fn partition_range(
    state: &State,
    sync: &str,
    p: usize,
) -> std::result::Result<Vec<Entry>, StateError> {
    let (lo, hi) = diff::partition_bounds(p);
    state.snapshot_range(sync, lo, hi).await
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
