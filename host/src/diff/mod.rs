//! Diff: finds what changed in a model since the sync's committed snapshot,
//! in memory that does not grow with the model.
//!
//! Each extracted row is reduced to its key's hash, its fingerprint
//! (xxh3-128 of the record's JSON, columns in query order) and its JSON,
//! and parked in a [`Spill`] partitioned by key hash, where rows matching
//! the snapshot's entries read ahead are settled (see [`ahead`]). Once
//! extraction ends,
//! partitions are classified one at a time against the snapshot entries of
//! the same key-hash range: `added` (key not in the snapshot), `updated`
//! (fingerprint differs), `deleted` (snapshot key not extracted; full
//! models only). A key extracted more than once is a row error for every
//! row carrying it: which of them is "the" row cannot be known, so none is
//! synced and the snapshot keeps what was last delivered.

mod ahead;
mod hash;
mod spill;
pub mod warehouse;

use crate::event::{Fields, Op, Record};
pub use ahead::{Entry, Range};
pub use hash::{ByKeyHash, fingerprint_of, key_hash};
pub use spill::{PARTITIONS, Partition, Row, Spill, partition_of};

/// How much extracted data stays in memory before the diff spills to disk.
/// With [`READ_AHEAD`], what a diff holds whatever the model's size.
pub const MEMORY_BUDGET: usize = 48 << 20;

/// How much of the snapshot's entries a full model's diff reads while the
/// source is still being read (a million entries): the state store has
/// nothing else to do meanwhile, and every range read then is one the
/// compare does not wait for. Parking 16 MiB more rows on disk instead
/// costs far less than that wait.
pub const READ_AHEAD: usize = 32 << 20;

/// How long changes short of a chunk wait for more before they are sent,
/// once they make a batch: long enough that a dense diff (a first sync's)
/// fills whole chunks, short enough that an incremental run's few changes
/// go out while the diff goes on rather than after it.
pub const CHUNK_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// The first key hash of partition `p` and the first of the next one
/// (`None` past the last), as the snapshot's range bounds.
pub fn partition_bounds(p: usize) -> (u128, Option<u128>) {
    let lo = (p as u128) << 120;
    let hi = (p + 1 < PARTITIONS).then(|| ((p + 1) as u128) << 120);
    (lo, hi)
}

/// A change found by the diff.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: String,
    pub key_hash: u128,
    pub op: Op,
    /// The record's JSON as extracted; `None` for deletions.
    pub json: Option<String>,
    pub fingerprint: u128,
}

impl Change {
    /// The record's fields, for the change's event.
    pub fn fields(&self) -> Option<Fields> {
        self.json
            .as_ref()
            .map(|j| Fields::from_json(j.clone()).unwrap_or_else(|_| Fields::empty()))
    }
}

/// A key the extraction returned more than once.
#[derive(Debug, Clone)]
pub struct Duplicate {
    pub key: String,
    pub key_hash: u128,
    pub rows: usize,
    /// The first of its rows, for the row error's payload; `None` when
    /// that row was settled ahead (see [`ahead`]): it is then the record
    /// the snapshot keeps for the key.
    pub first: Option<Record>,
}

#[derive(Debug, Default)]
pub struct Classified {
    /// What was added or updated.
    pub changes: Vec<Change>,
    pub duplicates: Vec<Duplicate>,
    /// Key hashes of snapshot entries the model no longer returns: deleted,
    /// once their keys are read.
    pub gone: Vec<u128>,
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

fn parse(json: &[u8]) -> std::io::Result<Record> {
    serde_json::from_slice(json).map_err(invalid)
}

/// Compares one partition's parked rows (in extraction order) with the
/// snapshot entries of the same range, counting the rows settled ahead of
/// it. With `deletions` false (incremental models), snapshot keys that were
/// not extracted are left alone. Only the changes and duplicates take
/// copies of their rows.
pub fn classify(
    rows: &[Row<'_>],
    snapshot: &Range,
    deletions: bool,
) -> std::io::Result<Classified> {
    // Each parked key's rows; 0 once a duplicate is reported.
    let mut count: ByKeyHash<usize> =
        ByKeyHash::with_capacity_and_hasher(rows.len(), Default::default());
    for r in rows {
        *count.entry(r.key_hash).or_default() += 1;
    }
    let mut out = Classified::default();
    for r in rows {
        let parked = count[&r.key_hash];
        if parked == 0 {
            continue;
        }
        let at = snapshot.find(r.key_hash);
        let rows = parked + usize::from(at.is_some_and(|i| snapshot.settled[i]));
        let known = at.map(|i| snapshot.entries[i].fingerprint);
        if rows > 1 {
            count.insert(r.key_hash, 0);
            // The first parked row of the key: after a settled one, which
            // had the snapshot's record (as this row has, if it matches).
            let first = match r.after_settled && known != Some(r.fingerprint) {
                true => None,
                false => Some(parse(r.json)?),
            };
            out.duplicates.push(Duplicate {
                key: r.key.to_string(),
                key_hash: r.key_hash,
                rows,
                first,
            });
            continue;
        }
        let op = match known {
            None => Op::Added,
            Some(fp) if fp != r.fingerprint => Op::Updated,
            Some(_) => continue,
        };
        out.changes.push(Change {
            json: Some(std::str::from_utf8(r.json).map_err(invalid)?.to_string()),
            key: r.key.to_string(),
            key_hash: r.key_hash,
            op,
            fingerprint: r.fingerprint,
        });
    }
    if deletions {
        out.gone = snapshot
            .entries
            .iter()
            .zip(&snapshot.settled)
            .filter(|(e, settled)| !**settled && !count.contains_key(&e.key_hash))
            .map(|(e, _)| e.key_hash)
            .collect();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: serde_json::Value) -> Record {
        v.as_object().unwrap().clone()
    }

    /// A key and its record's JSON, as extracted.
    fn row(key: &str, record: &Record) -> (String, Vec<u8>) {
        (key.into(), serde_json::to_vec(record).unwrap())
    }

    /// What the spill gives back for a row.
    fn parked((key, json): &(String, Vec<u8>)) -> Row<'_> {
        Row::new(key, json)
    }

    fn entry(key: &str, record: serde_json::Value) -> Entry {
        let (key, json) = row(key, &rec(record));
        Entry {
            key_hash: key_hash(&key),
            fingerprint: fingerprint_of(&json),
        }
    }

    #[test]
    fn classifies_changes_and_refuses_every_row_of_a_duplicated_key() {
        let snapshot = [
            entry("1", json!({"id": 1, "a": "x"})),
            entry("2", json!({"id": 2, "a": "y"})),
            entry("3", json!({"id": 3})),
            entry("5", json!({"id": 5})),
        ];
        let rows = [
            row("1", &rec(json!({"id": 1, "a": "x"}))),
            row("2", &rec(json!({"id": 2, "a": "z"}))),
            row("4", &rec(json!({"id": 4}))),
            row("5", &rec(json!({"id": 5, "n": 1}))),
            row("5", &rec(json!({"id": 5, "n": 2}))),
        ];
        let rows: Vec<Row> = rows.iter().map(parked).collect();
        let snapshot = Range::new(snapshot.to_vec());
        let got = classify(&rows, &snapshot, true).unwrap();
        let ops: Vec<_> = got.changes.iter().map(|c| (c.key.as_str(), c.op)).collect();
        assert_eq!(ops, [("2", Op::Updated), ("4", Op::Added)]);
        assert_eq!(got.gone, [key_hash("3")]);
        assert_eq!(got.duplicates.len(), 1);
        assert_eq!(
            (got.duplicates[0].key.as_str(), got.duplicates[0].rows),
            ("5", 2)
        );
        assert_eq!(got.duplicates[0].first, Some(rec(json!({"id": 5, "n": 1}))));

        let incremental = classify(&rows, &snapshot, false).unwrap();
        assert!(incremental.gone.is_empty());
    }

    #[test]
    fn rows_settled_ahead_count_for_duplicates_and_deletions() {
        // Keys of one partition, so that one range holds them all.
        let keys: Vec<String> = (0..5000)
            .map(|i| i.to_string())
            .filter(|k| partition_of(key_hash(k)) == 7)
            .take(6)
            .collect();
        let r = |i: usize, n: i64| row(&keys[i], &rec(json!({"id": i, "n": n})));
        let e = |i: usize, n: i64| entry(&keys[i], json!({"id": i, "n": n}));
        let mut spill = Spill::new(MEMORY_BUDGET);
        // Keys 0–4 were delivered with n = 0; key 5 is new.
        spill.read_ahead(7, Range::new((0..5).map(|i| e(i, 0)).collect()));
        let rows = [
            r(0, 0), // unchanged: settled
            r(1, 0), // settled, then again with a change: a duplicate whose
            r(1, 1), // first row is the snapshot's record
            r(2, 1), // a change, then the delivered record (settled): a
            r(2, 0), // duplicate whose first row is parked
            r(3, 0), // settled twice: a duplicate whose second row stands
            r(3, 0), // for the first
            r(5, 0), // added
        ];
        for (key, json) in &rows {
            spill.push(&Row::new(key, json)).unwrap();
        }
        let (partition, range) = spill.take(7).unwrap();
        let parked = partition.rows().unwrap();
        assert_eq!(parked.len(), 4);
        let got = classify(&parked, &range.unwrap(), true).unwrap();
        let ops: Vec<_> = got.changes.iter().map(|c| (c.key.as_str(), c.op)).collect();
        assert_eq!(ops, [(keys[5].as_str(), Op::Added)]);
        // Key 4 was not extracted; key 0 was, though never parked.
        assert_eq!(got.gone, [key_hash(&keys[4])]);
        let dups: Vec<_> = (got.duplicates.iter())
            .map(|d| (d.key.as_str(), d.key_hash, d.rows, d.first.clone()))
            .collect();
        let first = |i: usize, n: i64| Some(rec(json!({"id": i, "n": n})));
        assert_eq!(
            dups,
            [
                (keys[1].as_str(), key_hash(&keys[1]), 2, None),
                (keys[2].as_str(), key_hash(&keys[2]), 2, first(2, 1)),
                (keys[3].as_str(), key_hash(&keys[3]), 2, first(3, 0)),
            ]
        );
    }

    /// What a diff found, in a form that compares: changes and deletions
    /// by key, and each duplicate with its row count and first row (the
    /// snapshot's record standing in for a settled one).
    type Found = (Vec<(String, Op)>, Vec<u128>, Vec<(String, usize, Record)>);

    fn found(got: Classified, snapshot: &std::collections::HashMap<u128, Record>) -> Found {
        let mut changes: Vec<_> = got.changes.into_iter().map(|c| (c.key, c.op)).collect();
        let mut gone = got.gone;
        let mut dups: Vec<_> = (got.duplicates.into_iter())
            .map(|d| {
                let first = d.first.unwrap_or_else(|| snapshot[&d.key_hash].clone());
                (d.key, d.rows, first)
            })
            .collect();
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        gone.sort();
        dups.sort_by(|a, b| a.0.cmp(&b.0));
        (changes, gone, dups)
    }

    /// Settling rows against ranges read ahead, whenever those arrive and
    /// whatever is parked on disk, finds exactly what comparing every row
    /// finds: random extractions of unchanged, changed, new, missing and
    /// repeated keys, in random order.
    #[test]
    fn settling_ahead_finds_what_comparing_every_row_finds() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..50 {
            let record = |k: u64, v: u64| rec(json!({"id": k, "v": v}));
            // Keys 0..300 were delivered with v = 0; 300..330 are new.
            let mut snapshot = std::collections::HashMap::new();
            let mut entries = Vec::new();
            for k in 0..300 {
                let (key, json) = row(&k.to_string(), &record(k, 0));
                let r = Row::new(&key, &json);
                snapshot.insert(r.key_hash, record(k, 0));
                entries.push(Entry {
                    key_hash: r.key_hash,
                    fingerprint: r.fingerprint,
                });
            }
            let mut rows = Vec::new();
            for k in 0..330 {
                // Missing, or one to three rows, each unchanged or not.
                for _ in 0..[0, 1, 1, 1, 1, 2, 3][next(7) as usize] {
                    rows.push(row(&k.to_string(), &record(k, next(3).min(1))));
                }
            }
            for i in (1..rows.len()).rev() {
                rows.swap(i, next(i as u64 + 1) as usize);
            }
            let by_partition = |p: usize| -> Vec<Entry> {
                (entries.iter())
                    .filter(|e| partition_of(e.key_hash) == p)
                    .copied()
                    .collect()
            };
            let budget = [1 << 20, 64 << 10, 256 << 10][round % 3];
            let mut spill = Spill::new(budget);
            // Each partition's range arrives after a random share of rows.
            let arrives: Vec<usize> = (0..PARTITIONS)
                .map(|_| next(rows.len() as u64 + 1) as usize)
                .collect();
            for (i, (key, json)) in rows.iter().enumerate() {
                for p in (0..PARTITIONS).filter(|p| arrives[*p] == i) {
                    spill.read_ahead(p, Range::new(by_partition(p)));
                }
                spill.push(&Row::new(key, json)).unwrap();
            }
            for p in (0..PARTITIONS).filter(|p| arrives[*p] == rows.len()) {
                spill.read_ahead(p, Range::new(by_partition(p)));
            }
            for p in 0..PARTITIONS {
                let (partition, range) = spill.take(p).unwrap();
                let settled = classify(&partition.rows().unwrap(), &range.unwrap(), true);
                let parked: Vec<Row> = (rows.iter())
                    .map(parked)
                    .filter(|r| partition_of(r.key_hash) == p)
                    .collect();
                let every = classify(&parked, &Range::new(by_partition(p)), true);
                assert_eq!(
                    found(settled.unwrap(), &snapshot),
                    found(every.unwrap(), &snapshot),
                    "round {round}, partition {p}"
                );
            }
        }
    }

    #[test]
    fn partitions_cover_the_key_hash_space() {
        assert_eq!(partition_bounds(0), (0, Some(1 << 120)));
        assert_eq!(partition_bounds(PARTITIONS - 1), (255 << 120, None));
        let h = key_hash("some key");
        let (lo, hi) = partition_bounds(partition_of(h));
        assert!(h >= lo && hi.is_none_or(|hi| h < hi));
    }
}
