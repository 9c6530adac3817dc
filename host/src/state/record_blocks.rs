//! Where the snapshot keeps its records: in blocks of up to
//! [`BLOCK`](super::packing::BLOCK) (16) records, compressed together
//! (packing.rs), in tables of their own: `record_blocks` counts each
//! block's records, `record_block_bytes` holds them (apart, so that
//! counting does not rewrite the records' pages). A snapshot row keeps the
//! key, the fingerprint the diff reads and the record's place: its block's
//! id times 16, plus its slot in the block.
//!
//! As a column of the snapshot's rows, every record of a first sync went
//! through the key-ordered B-tree, once into the log and once into the
//! file, and that was most of what the state store spent on it. A block
//! is one row per 16 records and about a third of their size, and a
//! snapshot row without its record is small. Blocks are small so that
//! reading one record (`previous`) unpacks a few kilobytes, not a whole
//! commit's worth.
//!
//! A record replaced or deleted stays in its block until the block goes:
//! each block counts the snapshot rows still pointing into it (`live`,
//! kept by triggers on the snapshot), a commit deletes the blocks it
//! emptied, and moves the live records of blocks less than half live into
//! new blocks ([`tidy`]), so the records take at most about twice their
//! packed room however often they change.

use std::collections::HashMap;

use super::dialect::{Conn, Dialect, Lookup};
use super::packing::{Packed, Unpacker, block_and_slot, pack, place, places};
use super::rows::{SnapshotRows, Upserts, hash_bytes, hash_of, hash_of_bytes};
use crate::event::Fields;

/// Blocks less than half live (`2 * live < size`), as the partial index
/// `record_blocks_sparse` is written: SQLite uses a partial index only for
/// a query naming its condition as it is, and not at all for one that
/// multiplies the column (`live * 2 < size`).
const SPARSE: &str = "live < (size + 1) / 2";

/// Writes `blocks` of `sync`'s records, returning their ids in order.
pub async fn write<D: Dialect>(
    conn: &mut Conn<D>,
    sync: &str,
    blocks: &[Packed],
) -> sqlx::Result<Vec<i64>> {
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<(i64,)> = D::query(D::BLOCK_IDS)
        .bind(blocks.len() as i64)
        .fetch_all(&mut *conn)
        .await?;
    let ids: Vec<i64> = ids.into_iter().map(|(id,)| id).collect();
    D::insert_blocks(conn, sync, &ids, blocks).await?;
    Ok(ids)
}

/// Writes a commit's upserts: their records' blocks, then their snapshot
/// rows pointing into them.
pub async fn upsert<D: Dialect>(
    conn: &mut Conn<D>,
    sync: &str,
    upserts: &Upserts<'_>,
) -> sqlx::Result<()> {
    let ids = write::<D>(conn, sync, &upserts.blocks).await?;
    let rows = SnapshotRows {
        hashes: &upserts.hashes,
        keys: &upserts.keys,
        fingerprints: &upserts.fingerprints,
        places: &places(&ids, &upserts.blocks),
    };
    D::upsert_snapshot(conn, sync, &rows).await
}

/// A snapshot row's key hash, place and the bytes of its record's block,
/// read in one statement: commits write beside the reads (and `tidy` may
/// move a record and delete its old block), so a row and its block are read
/// from one snapshot of the store.
const RECORDS_OF: &str = "SELECT s.key_hash, s.place, b.records FROM snapshot AS s \
     LEFT JOIN record_block_bytes AS b ON b.id = s.place / 16 WHERE s.sync = $1 AND s.key_hash";

/// The records of the snapshot rows of `sync` whose key hash is one of
/// `hashes` (those that exist).
pub async fn records<D: Dialect>(
    conn: &mut Conn<D>,
    sync: &str,
    hashes: &[u128],
) -> sqlx::Result<HashMap<u128, Fields>> {
    let lookup = Lookup {
        select: RECORDS_OF,
        sync,
        hashes,
    };
    let rows: Vec<(Vec<u8>, i64, Option<Vec<u8>>)> = D::by_key_hash(conn, lookup).await?;
    let mut out = HashMap::with_capacity(rows.len());
    let mut unpacker = Unpacker::new();
    // Keys in one block each bring its bytes: it is unpacked once.
    let mut unpacked: HashMap<i64, Vec<(u128, String)>> = HashMap::new();
    for (hash, place, bytes) in rows {
        let key_hash = hash_of(hash);
        let (block, slot) = block_and_slot(place);
        let records = match (unpacked.get(&block), bytes) {
            (Some(records), _) => records,
            (None, Some(bytes)) => {
                let records = unpacker
                    .unpack(&bytes)
                    .map_err(|e| unreadable(sync, block, e))?;
                unpacked.entry(block).or_insert(records)
            }
            (None, None) => return Err(missing(sync, key_hash)),
        };
        let record = match records.get(slot) {
            Some((hash, record)) if *hash == key_hash => record.clone(),
            _ => return Err(missing(sync, key_hash)),
        };
        let fields = Fields::from_json(record).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        out.insert(key_hash, fields);
    }
    Ok(out)
}

/// A snapshot row of `sync` whose record is not where it points.
fn missing(sync: &str, key_hash: u128) -> sqlx::Error {
    sqlx::Error::Decode(
        format!(
            "the state store has lost the record of sync `{sync}`'s snapshot row with key hash \
             {key_hash:032x}; `ebb reset {sync}` delivers every record again"
        )
        .into(),
    )
}

/// A block of `sync`'s records that does not unpack.
fn unreadable(sync: &str, block: i64, error: std::io::Error) -> sqlx::Error {
    sqlx::Error::Decode(
        format!(
            "block {block} of sync `{sync}`'s snapshot records cannot be read ({error}); \
             `ebb reset {sync}` delivers every record again"
        )
        .into(),
    )
}

/// After a commit of `sync` that replaced or deleted `changed` records:
/// deletes the blocks no snapshot row points into any more, and moves the
/// live records of up to `8 + changed / 8` blocks less than half live
/// into new blocks (a block gets there only after `BLOCK / 2` of its
/// records went, so that many keep up with what the commits empty).
pub async fn tidy<D: Dialect>(conn: &mut Conn<D>, sync: &str, changed: usize) -> sqlx::Result<()> {
    drop_empty::<D>(conn, sync).await?;
    let sparse: Vec<(i64, Vec<u8>)> = D::query(&format!(
        "SELECT b.id, r.records FROM record_blocks AS b JOIN record_block_bytes AS r ON r.id = b.id \
         WHERE b.sync = $1 AND {SPARSE} ORDER BY b.id LIMIT $2"
    ))
    .bind(sync)
    .bind((8 + changed / 8) as i64)
    .fetch_all(&mut *conn)
    .await?;
    if sparse.is_empty() {
        return Ok(());
    }
    let mut held = HashMap::new();
    let mut unpacker = Unpacker::new();
    for (id, bytes) in &sparse {
        let records = unpacker
            .unpack(bytes)
            .map_err(|e| unreadable(sync, *id, e))?;
        for (slot, (key_hash, record)) in records.into_iter().enumerate() {
            held.insert(key_hash, (place(*id, slot), record));
        }
    }
    let hashes: Vec<u128> = held.keys().copied().collect();
    let lookup = Lookup {
        select: "SELECT key_hash, key, fingerprint, place FROM snapshot WHERE sync = $1 AND key_hash",
        sync,
        hashes: &hashes,
    };
    let rows: Vec<(Vec<u8>, String, Vec<u8>, i64)> = D::by_key_hash(&mut *conn, lookup).await?;
    let mut live: Vec<Moving> = rows
        .into_iter()
        .filter_map(|(hash, key, fingerprint, at)| {
            // Live: the row still points at this copy of the record.
            let (place, record) = held.remove(&hash_of_bytes(&hash))?;
            (place == at).then_some((hash, key, fingerprint, record))
        })
        .collect();
    live.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    rewrite::<D>(conn, sync, &live).await?;
    // The blocks left behind are empty now.
    drop_empty::<D>(conn, sync).await
}

/// A snapshot row and its record, on their way to a new block: key hash,
/// key, fingerprint, record.
type Moving = (Vec<u8>, String, Vec<u8>, String);

/// Packs `rows`' records into new blocks of `sync`, in the order given, and
/// points their snapshot rows (inserted or updated) at them.
async fn rewrite<D: Dialect>(conn: &mut Conn<D>, sync: &str, rows: &[Moving]) -> sqlx::Result<()> {
    let blocks = pack(rows.iter().map(|r| (hash_of_bytes(&r.0), r.3.as_str())));
    let ids = write::<D>(conn, sync, &blocks).await?;
    let hashes: Vec<Vec<u8>> = rows.iter().map(|r| r.0.clone()).collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let fingerprints: Vec<Vec<u8>> = rows.iter().map(|r| r.2.clone()).collect();
    let rows = SnapshotRows {
        hashes: &hashes,
        keys: &keys,
        fingerprints: &fingerprints,
        places: &places(&ids, &blocks),
    };
    D::upsert_snapshot(conn, sync, &rows).await
}

/// Deletes `sync`'s blocks no snapshot row points into.
async fn drop_empty<D: Dialect>(conn: &mut Conn<D>, sync: &str) -> sqlx::Result<()> {
    let empty = format!("SELECT id FROM record_blocks WHERE sync = $1 AND {SPARSE} AND live <= 0");
    D::query(&format!(
        "DELETE FROM record_block_bytes WHERE id IN ({empty})"
    ))
    .bind(sync)
    .execute(&mut *conn)
    .await?;
    D::query(&format!("DELETE FROM record_blocks WHERE id IN ({empty})"))
        .bind(sync)
        .execute(conn)
        .await
}

/// Deletes all of `sync`'s blocks.
pub async fn drop_all<D: Dialect>(conn: &mut Conn<D>, sync: &str) -> sqlx::Result<()> {
    D::query(
        "DELETE FROM record_block_bytes WHERE id IN (SELECT id FROM record_blocks WHERE sync = $1)",
    )
    .bind(sync)
    .execute(&mut *conn)
    .await?;
    D::query("DELETE FROM record_blocks WHERE sync = $1")
        .bind(sync)
        .execute(conn)
        .await
}

/// Moves the snapshot as it was before records had blocks
/// (`snapshot_with_records`, each row with its record) into the snapshot
/// and its blocks, a sync at a time in key-hash order.
pub async fn move_into_blocks<D: Dialect>(conn: &mut Conn<D>) -> sqlx::Result<()> {
    const PAGE: i64 = 16 * 1024;
    let mut after: (String, Vec<u8>) = Default::default();
    loop {
        let page: Vec<(String, Vec<u8>)> = D::query(
            "SELECT sync, key_hash FROM snapshot_with_records \
             WHERE sync > $1 OR (sync = $1 AND key_hash > $2) \
             ORDER BY sync, key_hash LIMIT $3",
        )
        .bind(&after.0)
        .bind(&after.1)
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = page.last().cloned() else {
            return Ok(());
        };
        for sync in page.chunk_by(|a, b| a.0 == b.0) {
            let (name, first) = &sync[0];
            let end = &sync[sync.len() - 1].1;
            let rows: Vec<Moving> = D::query(
                "SELECT key_hash, key, fingerprint, record FROM snapshot_with_records \
                 WHERE sync = $1 AND key_hash >= $2 AND key_hash <= $3 ORDER BY key_hash",
            )
            .bind(name)
            .bind(first)
            .bind(end)
            .fetch_all(&mut *conn)
            .await?;
            rewrite::<D>(conn, name, &rows).await?;
        }
        after = last;
    }
}

/// One record as a block of its own, with its snapshot row.
pub async fn put_one<D: Dialect>(
    conn: &mut Conn<D>,
    sync: &str,
    key: &str,
    fingerprint: Vec<u8>,
    record: String,
) -> sqlx::Result<()> {
    let hash = hash_bytes(crate::diff::key_hash(key));
    rewrite::<D>(conn, sync, &[(hash, key.to_owned(), fingerprint, record)]).await
}

#[cfg(test)]
mod tests {
    use super::super::packing::BLOCK;
    use super::*;

    /// The migrations and the records' lookup spell the index's condition
    /// and the places' block size as this module does.
    #[test]
    fn the_stores_count_blocks_as_this_module_does() {
        use super::super::dialect::Dialect;
        use super::super::schema::Migration;
        fn record_blocks<D: Dialect>() -> String {
            D::MIGRATIONS
                .iter()
                .find_map(|m| match m {
                    Migration::RecordBlocks { add, then } => Some(format!("{add}{then}")),
                    _ => None,
                })
                .expect("the migration to record blocks")
        }
        assert!(RECORDS_OF.contains(&format!("s.place / {BLOCK} ")));
        for sql in [
            record_blocks::<super::super::sqlite::SqliteFile>(),
            record_blocks::<super::super::postgres::PgSchema>(),
        ] {
            assert!(sql.contains(&format!("WHERE {SPARSE};")), "{sql}");
            let blocks = sql
                .to_lowercase()
                .matches(&format!("old.place / {BLOCK};"))
                .count();
            assert!(
                blocks > 0 && blocks == sql.matches("place / ").count(),
                "{sql}"
            );
        }
    }
}
