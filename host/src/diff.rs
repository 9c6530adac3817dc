//! Diff: compares each extracted record with the sync's committed snapshot
//! by primary key and fingerprint (xxh3-128 of the record's JSON, columns in
//! query order), yielding `added`, `updated` and, once extraction is done,
//! `deleted` for keys that were not seen again.

use std::collections::{HashMap, HashSet};

use crate::event::{Op, Record};

pub fn fingerprint(record: &Record) -> u128 {
    let bytes = serde_json::to_vec(record).unwrap_or_default();
    xxhash_rust::xxh3::xxh3_128(&bytes)
}

/// A change found by the diff; `record` is `None` for deletions.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: String,
    pub op: Op,
    pub record: Option<Record>,
    pub fingerprint: u128,
}

pub struct Differ {
    snapshot: HashMap<String, u128>,
    seen: HashSet<String>,
}

pub enum Verdict {
    Changed(Change),
    Unchanged,
    /// The key was already returned by this extraction.
    Duplicate,
}

impl Differ {
    pub fn new(snapshot: HashMap<String, u128>) -> Differ {
        Differ {
            snapshot,
            seen: HashSet::new(),
        }
    }

    pub fn row(&mut self, key: String, record: Record) -> Verdict {
        if !self.seen.insert(key.clone()) {
            return Verdict::Duplicate;
        }
        let fp = fingerprint(&record);
        let op = match self.snapshot.get(&key) {
            None => Op::Added,
            Some(old) if *old != fp => Op::Updated,
            Some(_) => return Verdict::Unchanged,
        };
        Verdict::Changed(Change {
            key,
            op,
            record: Some(record),
            fingerprint: fp,
        })
    }

    /// Keys in the snapshot that this extraction did not return.
    pub fn deletions(self) -> Vec<Change> {
        let mut keys: Vec<String> = self
            .snapshot
            .into_keys()
            .filter(|k| !self.seen.contains(k))
            .collect();
        keys.sort();
        keys.into_iter()
            .map(|key| Change {
                key,
                op: Op::Deleted,
                record: None,
                fingerprint: 0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: serde_json::Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn classifies_changes() {
        let snap = HashMap::from([
            (
                "1".to_string(),
                fingerprint(&rec(json!({"id": 1, "a": "x"}))),
            ),
            (
                "2".to_string(),
                fingerprint(&rec(json!({"id": 2, "a": "y"}))),
            ),
            ("3".to_string(), 0),
        ]);
        let mut d = Differ::new(snap);
        assert!(matches!(
            d.row("1".into(), rec(json!({"id": 1, "a": "x"}))),
            Verdict::Unchanged
        ));
        assert!(matches!(
            d.row("2".into(), rec(json!({"id": 2, "a": "z"}))),
            Verdict::Changed(Change {
                op: Op::Updated,
                ..
            })
        ));
        assert!(matches!(
            d.row("4".into(), rec(json!({"id": 4}))),
            Verdict::Changed(Change { op: Op::Added, .. })
        ));
        assert!(matches!(
            d.row("4".into(), rec(json!({"id": 4}))),
            Verdict::Duplicate
        ));
        let deleted: Vec<_> = d.deletions().into_iter().map(|c| (c.key, c.op)).collect();
        assert_eq!(deleted, [("3".to_string(), Op::Deleted)]);
    }
}
