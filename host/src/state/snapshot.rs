//! What each sync delivered: the snapshot of every acknowledged record,
//! which the next run diffs against, and the events runs delivered, kept
//! for `ebb replay`. A commit moves a chunk of acknowledged changes in, in
//! one transaction and a few statements, and only while its run is still
//! running: a run closed as abandoned writes nothing more.

use std::collections::HashMap;

use super::dialect::{Conn, Dialect, Lookup};
use super::error::Result;
use super::record_blocks;
use super::rows::if_dropped_columns;
use super::rows::{CommitColumns, EntryColumns, entries_of, entry, hash_bytes, hash_of};
use super::rows::{natural_order, range_end, to_json, unpack_events};
use super::runs::beat;
use super::sql::Columns;
use super::store::{Fut, Store, boxed};
use super::types::RowError;
use crate::diff::Entry;
use crate::event::Fields;

pub trait Snapshots {
    fn snapshot_range<'a>(&'a self, sync: &'a str, lo: u128, hi: Option<u128>) -> Fut<'a, Entries>;
    fn snapshot_entries<'a>(&'a self, sync: &'a str, hashes: &'a [u128]) -> Fut<'a, Entries>;
    fn records<'a>(&'a self, sync: &'a str, hashes: &'a [u128]) -> Fut<'a, Records>;
    fn snapshot_keys<'a>(&'a self, sync: &'a str, hashes: &'a [u128]) -> Fut<'a, Keys>;
    fn commit<'a>(&'a self, commit: &'a CommitColumns<'a>) -> Fut<'a, bool>;
    fn deliveries<'a>(&'a self, sync: &'a str, run_id: i64) -> Fut<'a, Vec<String>>;
    fn prune_deliveries<'a>(&'a self, sync: &'a str, keep_runs: u32) -> Fut<'a, ()>;
    fn reset<'a>(&'a self, sync: &'a str) -> Fut<'a, ()>;
}

type Entries = Vec<Entry>;
type Records = HashMap<u128, Fields>;
type Keys = HashMap<u128, String>;

impl<D: Dialect> Snapshots for Store<D> {
    fn snapshot_range<'a>(&'a self, sync: &'a str, lo: u128, hi: Option<u128>) -> Fut<'a, Entries> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let entries: Option<Vec<u8>> = D::query(D::SNAPSHOT_RANGE)
                .bind(sync)
                .bind(hash_bytes(lo))
                .bind(range_end(hi))
                .scalar(&mut conn)
                .await?;
            Ok(entries_of(entries.as_deref().unwrap_or_default()))
        })
    }

    fn snapshot_entries<'a>(&'a self, sync: &'a str, hashes: &'a [u128]) -> Fut<'a, Entries> {
        boxed(async move {
            let select =
                "SELECT key_hash || fingerprint FROM snapshot WHERE sync = $1 AND key_hash";
            let rows: Vec<EntryColumns> = self.look_up(select, sync, hashes).await?;
            Ok(rows.into_iter().map(entry).collect())
        })
    }

    fn records<'a>(&'a self, sync: &'a str, hashes: &'a [u128]) -> Fut<'a, Records> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            Ok(record_blocks::records::<D>(&mut conn, sync, hashes).await?)
        })
    }

    fn snapshot_keys<'a>(&'a self, sync: &'a str, hashes: &'a [u128]) -> Fut<'a, Keys> {
        boxed(async move {
            let select = "SELECT key_hash, key FROM snapshot WHERE sync = $1 AND key_hash";
            let rows: Vec<(Vec<u8>, String)> = self.look_up(select, sync, hashes).await?;
            Ok(rows
                .into_iter()
                .map(|(hash, key)| (hash_of(hash), key))
                .collect())
        })
    }

    fn commit<'a>(&'a self, commit: &'a CommitColumns<'a>) -> Fut<'a, bool> {
        boxed(async move {
            if commit.is_empty() {
                return Ok(true);
            }
            let (sync, run_id) = (commit.sync, commit.run_id);
            let mut tx = self.pool.begin().await?;
            if !beat::<D>(&mut tx, run_id).await? {
                return Ok(false);
            }
            D::query("UPDATE runs SET counts = $1 WHERE id = $2")
                .bind(to_json(commit.counts))
                .bind(run_id)
                .execute(&mut tx)
                .await?;
            D::write_commit(&mut tx, commit).await?;
            for e in commit.errors {
                record_error::<D>(&mut tx, sync, run_id, e).await?;
            }
            tx.commit().await?;
            self.dialect.committed();
            Ok(true)
        })
    }

    fn deliveries<'a>(&'a self, sync: &'a str, run_id: i64) -> Fut<'a, Vec<String>> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let packed: Vec<(Vec<u8>,)> = D::query(
                "SELECT events FROM delivered WHERE sync = $1 AND run_id = $2 ORDER BY id",
            )
            .bind(sync)
            .bind(run_id)
            .fetch_all(&mut conn)
            .await?;
            let mut events = Vec::new();
            for (packed,) in packed {
                let unpacked = unpack_events(&packed).map_err(|e| sqlx::Error::Decode(e.into()))?;
                events.extend(unpacked);
            }
            Ok(events)
        })
    }

    fn prune_deliveries<'a>(&'a self, sync: &'a str, keep_runs: u32) -> Fut<'a, ()> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            D::query(
                // A range below the oldest run kept (all of them when none is).
                "DELETE FROM delivered WHERE sync = $1 AND run_id < COALESCE( \
                 (SELECT min(id) FROM (SELECT id FROM runs WHERE sync = $1 AND kind = 'run' \
                 ORDER BY id DESC LIMIT $2) AS kept), \
                 9223372036854775807)",
            )
            .bind(sync)
            .bind(i64::from(keep_runs))
            .execute(&mut conn)
            .await?;
            Ok(())
        })
    }

    fn reset<'a>(&'a self, sync: &'a str) -> Fut<'a, ()> {
        boxed(async move {
            let mut tx = self.pool.begin().await?;
            // The blocks first: the snapshot's triggers then count nothing.
            record_blocks::drop_all::<D>(&mut tx, sync).await?;
            for table in ["snapshot", "row_errors", "sync_state"] {
                D::query(&format!("DELETE FROM {table} WHERE sync = $1"))
                    .bind(sync)
                    .execute(&mut tx)
                    .await?;
            }
            Ok(tx.commit().await?)
        })
    }
}

impl<D: Dialect> Store<D> {
    /// The sync's rows of `select` whose key hash is one of `hashes`.
    async fn look_up<O: Columns>(
        &self,
        select: &'static str,
        sync: &str,
        hashes: &[u128],
    ) -> Result<Vec<O>> {
        let mut conn = self.pool.acquire().await?;
        let lookup = Lookup {
            select,
            sync,
            hashes,
        };
        Ok(D::by_key_hash(&mut conn, lookup).await?)
    }
}

/// Owes row `e`: once more if it was owed before this run.
async fn record_error<D: Dialect>(
    conn: &mut Conn<D>,
    sync: &str,
    run_id: i64,
    e: &RowError,
) -> sqlx::Result<()> {
    let (fingerprint, record) = if_dropped_columns(e);
    D::query(
        "INSERT INTO row_errors (sync, key, op, run_id, attempts, error, payload, fingerprint, record, delivery_id, delivered, key_order) \
         VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (sync, key) DO UPDATE SET op = excluded.op, run_id = excluded.run_id, \
         attempts = CASE WHEN row_errors.run_id = excluded.run_id THEN row_errors.attempts ELSE row_errors.attempts + 1 END, \
         error = excluded.error, payload = excluded.payload, \
         fingerprint = excluded.fingerprint, record = excluded.record, delivery_id = excluded.delivery_id, \
         delivered = excluded.delivered",
    )
    .bind(sync)
    .bind(&e.key)
    .bind(e.op.as_str())
    .bind(run_id)
    .bind(&e.message)
    .bind(e.payload.to_string())
    .bind(fingerprint)
    .bind(record)
    .bind(e.delivery_id.as_deref())
    .bind((!e.delivered.is_empty()).then(|| to_json(&e.delivered)))
    .bind(natural_order(&e.key))
    .execute(conn)
    .await
}
