//! How values are stored and how columns decode, alike in both stores:
//! hashes as big-endian bytes, times as Unix milliseconds, counts, timings
//! and records as JSON text. Everything here is plain Rust, so the
//! statements stay free of it.

use chrono::{TimeZone, Utc};
use serde::Serialize;

use super::packing::{Packed, pack};
use super::types::{Batch, Commit, EventLines, OwedRow, RowError, RunKind, RunRecord};
use crate::diff::Entry;
use crate::status::{Counts, Status};

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// RFC 3339 in UTC with milliseconds, as `history` shows times.
pub fn time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub fn json<T: serde::de::DeserializeOwned>(text: &str) -> sqlx::Result<T> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

pub fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Key hashes and fingerprints are stored big-endian, so the database's
/// byte order is their numeric order and a diff partition is a contiguous
/// range of the snapshot.
pub fn hash_bytes(h: u128) -> Vec<u8> {
    h.to_be_bytes().to_vec()
}

/// The exclusive end of a key-hash range as stored. The last range has no
/// end; 17 bytes of 0xff sort after every 16-byte hash, so one statement
/// with a bound the index can stop on serves all ranges (`$3 IS NULL OR …`
/// would make the database scan to the end of the sync's snapshot).
pub fn range_end(hi: Option<u128>) -> Vec<u8> {
    hi.map(hash_bytes).unwrap_or_else(|| vec![0xff; 17])
}

/// A key's place in natural order ("2" before "10", "a2" before "a10"), as
/// bytes both databases compare as they are, so the owed rows page in that
/// order in SQL. Each run of ASCII digits is written as its count of
/// significant digits (led by how many digits that count has) and then the
/// digits: a shorter number sorts first, numbers of one length by their
/// digits, and every byte written for a number is a digit, so a number
/// still sorts against other characters as a digit does. Keys that differ
/// only in leading zeros tie here; the key itself breaks the tie.
pub fn natural_order(key: &str) -> Vec<u8> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + 4);
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let run = &bytes[start..i];
        let digits = &run[run.iter().take_while(|&&b| b == b'0').count()..];
        let count = digits.len().to_string();
        out.push(b'0' + count.len() as u8);
        out.extend_from_slice(count.as_bytes());
        out.extend_from_slice(digits);
    }
    out
}

pub fn hash_of(bytes: Vec<u8>) -> u128 {
    hash_of_bytes(&bytes)
}

/// A 16-byte hash; bytes of any other length read as 0.
pub fn hash_of_bytes(bytes: &[u8]) -> u128 {
    <[u8; 16]>::try_from(bytes).map_or(0, u128::from_be_bytes)
}

/// The upserts of a chunk of commits, column by column: Postgres binds
/// each column as one array, SQLite zips them into rows of `VALUES`.
#[derive(Default)]
pub struct Upserts<'a> {
    pub hashes: Vec<Vec<u8>>,
    pub keys: Vec<&'a str>,
    pub fingerprints: Vec<Vec<u8>>,
    /// The records, packed in this order ([`super::packing::pack`]).
    pub blocks: Vec<Packed>,
}

/// Snapshot rows to insert or update, column by column.
pub struct SnapshotRows<'a> {
    pub hashes: &'a [Vec<u8>],
    pub keys: &'a [&'a str],
    pub fingerprints: &'a [Vec<u8>],
    pub places: &'a [i64],
}

/// What a commit writes in bulk, column by column, so each store writes a
/// chunk of commits in a few statements rather than one per row. Made
/// ready ([`CommitColumns::of`]: sorted, events compressed) before the
/// store's turn to write it comes, so the commit before it is written
/// meanwhile.
pub struct CommitColumns<'a> {
    pub(super) sync: &'a str,
    pub(super) run_id: i64,
    pub(super) upserts: Upserts<'a>,
    /// Key hashes of deletions.
    pub(super) deletes: Vec<Vec<u8>>,
    /// Every committed key: none of them is owed any more.
    pub(super) keys: Vec<&'a str>,
    /// The events delivered, packed ([`pack_events`]), if any.
    pub(super) delivered: Option<Vec<u8>>,
    pub(super) errors: &'a [RowError],
    /// What the run has counted so far, shown while it runs.
    pub(super) counts: &'a Counts,
}

impl<'a> CommitColumns<'a> {
    /// The columns of what `batch` moves into the store for run `run_id`,
    /// its records packed into blocks.
    pub fn of(sync: &'a str, run_id: i64, batch: Batch<'a>) -> CommitColumns<'a> {
        let mut out = CommitColumns {
            sync,
            run_id,
            upserts: Upserts::default(),
            deletes: Vec::new(),
            keys: Vec::with_capacity(batch.commits.len()),
            delivered: pack_events(batch.delivered),
            errors: batch.errors,
            counts: batch.counts,
        };
        // In the snapshot's order: each statement then writes neighbouring
        // rows, a few pages, rather than rows all over the table.
        let mut commits: Vec<&Commit> = batch.commits.iter().collect();
        commits.sort_unstable_by_key(|c| match c {
            Commit::Upsert { key_hash, .. } | Commit::Delete { key_hash, .. } => *key_hash,
            Commit::Settle { .. } => 0,
        });
        let mut records = Vec::new();
        for c in commits {
            match c {
                Commit::Upsert {
                    key,
                    key_hash,
                    fingerprint,
                    json,
                } => {
                    out.upserts.hashes.push(hash_bytes(*key_hash));
                    out.upserts.keys.push(key);
                    out.upserts.fingerprints.push(hash_bytes(*fingerprint));
                    records.push((*key_hash, json.as_str()));
                    out.keys.push(key);
                }
                Commit::Delete { key, key_hash } => {
                    out.deletes.push(hash_bytes(*key_hash));
                    out.keys.push(key);
                }
                Commit::Settle { key } => out.keys.push(key),
            }
        }
        out.upserts.blocks = pack(records);
        out
    }

    /// How many snapshot rows the commit replaces or deletes at most.
    pub(super) fn changed(&self) -> usize {
        self.upserts.keys.len() + self.deletes.len()
    }

    /// Whether the commit writes nothing.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.errors.is_empty() && self.delivered.is_none()
    }
}

/// Events as one value of `delivered.events`: JSON lines, compressed with
/// zstd. One row per commit rather than per event, and a few times smaller,
/// because keeping every event of a large first sync for `ebb replay`
/// would otherwise write it to the state store twice over. (Rows moved
/// from the table before it hold one event, uncompressed.)
pub fn pack_events(events: &EventLines) -> Option<Vec<u8>> {
    if events.is_empty() {
        return None;
    }
    let lines = events.as_bytes();
    // Compressing into memory fails only for want of memory: the events
    // are then kept as they are.
    Some(zstd::bulk::compress(lines, 1).unwrap_or_else(|_| lines.to_vec()))
}

/// The events of one `delivered.events` value.
pub fn unpack_events(packed: &[u8]) -> std::io::Result<Vec<String>> {
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let lines = if packed.starts_with(&ZSTD_MAGIC) {
        zstd::decode_all(packed)?
    } else {
        packed.to_vec()
    };
    let text = String::from_utf8(lines).map_err(std::io::Error::other)?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// The fingerprint and record columns a row error stores for [`RowError::if_dropped`].
pub fn if_dropped_columns(e: &RowError) -> (Option<Vec<u8>>, Option<String>) {
    match &e.if_dropped {
        Some(s) => (Some(hash_bytes(s.fingerprint)), Some(s.json.clone())),
        None => (None, None),
    }
}

/// The columns of a run as [`run_record`] reads them.
pub const RUN_COLUMNS: &str =
    "sync, id, kind, status, started_at, finished_at, counts, timings, error, detail";

/// `SELECT` [`RUN_COLUMNS`] `FROM runs`
pub type RunColumns = (
    String,
    i64,
    String,
    String,
    i64,
    Option<i64>,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// A run as recorded, with its sync.
pub fn run_record(
    (sync, run_id, kind, status, started, finished, counts, timings, error, detail): RunColumns,
) -> (String, RunRecord) {
    let run = RunRecord {
        run_id,
        kind: RunKind::from(kind.as_str()),
        status: Status::parse(&status),
        started_at: time(started),
        finished_at: finished.map(time),
        counts: serde_json::from_str(&counts).unwrap_or_default(),
        timings_ms: serde_json::from_str(&timings).unwrap_or_default(),
        error,
        detail,
    };
    (sync, run)
}

/// `SELECT sync, due_at, disabled FROM schedules`
pub type ScheduleColumns = (String, Option<i64>, bool);

/// `SELECT key_hash || fingerprint FROM snapshot`: one value a row, not
/// two, because a diff reads a million of them (SQLite gives the bytes as
/// text, which decodes as bytes alike).
pub type EntryColumns = (Vec<u8>,);

/// Snapshot entries from their `key_hash || fingerprint` bytes,
/// concatenated (as [`super::dialect::Dialect::SNAPSHOT_RANGE`] reads
/// them).
pub fn entries_of(bytes: &[u8]) -> Vec<Entry> {
    bytes.chunks(32).map(entry_of).collect()
}

pub fn entry((both,): EntryColumns) -> Entry {
    entry_of(&both)
}

/// One entry of its `key_hash || fingerprint` bytes; a hash of the wrong
/// length reads as 0.
fn entry_of(both: &[u8]) -> Entry {
    let (key_hash, fingerprint) = both.split_at(both.len().min(16));
    Entry {
        key_hash: hash_of_bytes(key_hash),
        fingerprint: hash_of_bytes(fingerprint),
    }
}

/// `SELECT key, op, fingerprint, delivery_id, delivered FROM row_errors`
pub type OwedIdColumns = (String, String, Option<Vec<u8>>, String, Option<String>);

/// `SELECT key, op, run_id, attempts, error, payload FROM row_errors`
pub type OwedColumns = (String, String, i64, i64, String, String);

pub fn owed_row((key, op, run_id, attempts, error, payload): OwedColumns) -> OwedRow {
    OwedRow {
        key,
        op,
        run_id,
        attempts,
        error,
        payload: serde_json::from_str(&payload).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_from_their_bytes_laid_end_to_end() {
        let (a, b) = (0x0123_4567_89ab_cdef_0011_2233_4455_6677_u128, 42_u128);
        let bytes = [a, b, b, a].map(u128::to_be_bytes).concat();
        let entries = entries_of(&bytes);
        assert_eq!(
            entries,
            [
                Entry {
                    key_hash: a,
                    fingerprint: b
                },
                Entry {
                    key_hash: b,
                    fingerprint: a
                }
            ]
        );
        assert!(entries_of(&[]).is_empty());
    }

    #[test]
    fn fingerprints_round_trip_and_bad_bytes_read_as_zero() {
        let fp = 0x0123_4567_89ab_cdef_0011_2233_4455_6677_u128;
        assert_eq!(hash_of(hash_bytes(fp)), fp);
        assert_eq!(hash_of(vec![1, 2, 3]), 0);
    }

    #[test]
    fn natural_order_sorts_numbers_by_value_and_the_rest_as_written() {
        let mut keys = vec![
            "10",
            "a10",
            "1000",
            "b",
            "2",
            "a2",
            "1",
            "100",
            "0",
            "a",
            "a-1",
            "a1b",
            "a1a",
            "x9y10",
            "x9y9",
            "12345678901",
            "é1",
            "-3",
            "007",
        ];
        keys.sort_by_key(|k| (natural_order(k), k.to_string()));
        assert_eq!(
            keys,
            [
                "-3",
                "0",
                "1",
                "2",
                "007",
                "10",
                "100",
                "1000",
                "12345678901",
                "a",
                "a-1",
                "a1a",
                "a1b",
                "a2",
                "a10",
                "b",
                "x9y9",
                "x9y10",
                "é1"
            ]
        );
    }
}
