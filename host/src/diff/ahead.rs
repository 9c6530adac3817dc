//! The snapshot's ranges a full model's diff reads while the source is
//! still read, and the parked rows they settle.
//!
//! Most rows of an incremental run are unchanged. Once a partition's range
//! is here, a parked row that matches its key's entry (same fingerprint)
//! is counted against that entry and dropped when its partition's buffer
//! fills (see [`super::Spill`]): it is never written out, read back or
//! compared. The other rows stay parked, marked if they follow a row of
//! their key settled this way, so that a key extracted more than once is
//! still found, with its first row, by [`super::classify`]. Only a key's
//! first matching row is settled: a second one stays parked, so an entry
//! counts at most one row.
//!
//! Settling a buffer at a time, not each row as it is read, keeps the
//! lookups in one range: the ranges read ahead hold about a million
//! entries (32 MiB) together, and looking each row up as it came missed
//! the cache twice a row, on the thread that reads the source. That cost
//! more than the compare it saved.

/// One committed snapshot entry, as the diff compares it: without its key,
/// which only a deletion needs (see [`super::Classified::gone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key_hash: u128,
    pub fingerprint: u128,
}

/// One partition's snapshot entries, sorted by key hash, and which of them
/// a row settled.
///
/// Key hashes are uniform, so the bits after a partition's first byte
/// spread its entries evenly over buckets of about [`PER_BUCKET`]: a lookup
/// reads where its bucket starts and scans a few entries, rather than
/// taking a dozen steps of a binary search.
#[derive(Debug, Default)]
pub struct Range {
    pub entries: Vec<Entry>,
    pub settled: Vec<bool>,
    /// Where each bucket's entries start, and past the last, the end.
    starts: Vec<u32>,
    /// How many bits of the key hash, after the first byte, pick a bucket.
    bits: u32,
}

/// How many entries a bucket of a [`Range`] holds, on average.
const PER_BUCKET: usize = 4;

impl Range {
    /// The range of `entries`, all of one partition.
    pub fn new(mut entries: Vec<Entry>) -> Range {
        if !entries.is_sorted_by_key(|e| e.key_hash) {
            entries.sort_unstable_by_key(|e| e.key_hash);
        }
        let bits = (entries.len() / PER_BUCKET).max(1).ilog2();
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        for (i, e) in entries.iter().enumerate() {
            while starts.len() <= bucket(e.key_hash, bits) {
                starts.push(i as u32);
            }
        }
        starts.resize((1 << bits) + 1, entries.len() as u32);
        let settled = vec![false; entries.len()];
        Range {
            entries,
            settled,
            starts,
            bits,
        }
    }

    /// The index of `key_hash`'s entry.
    pub fn find(&self, key_hash: u128) -> Option<usize> {
        let b = bucket(key_hash, self.bits);
        let (from, to) = (*self.starts.get(b)?, self.starts[b + 1]);
        (from as usize..to as usize).find(|&i| self.entries[i].key_hash == key_hash)
    }

    /// Settles a parked row if it matches its entry and is the first of
    /// its key to.
    pub fn arrive(&mut self, key_hash: u128, fingerprint: u128) -> Arrival {
        let parked = |after_settled| Arrival::Parked { after_settled };
        let Some(i) = self.find(key_hash) else {
            return parked(false);
        };
        if self.settled[i] {
            return parked(true);
        }
        if self.entries[i].fingerprint != fingerprint {
            return parked(false);
        }
        self.settled[i] = true;
        Arrival::Settled
    }
}

/// The bucket of `key_hash` among `1 << bits`: the bits after its first
/// byte, which every key hash of a partition shares.
fn bucket(key_hash: u128, bits: u32) -> usize {
    (key_hash << 8).checked_shr(128 - bits).unwrap_or(0) as usize
}

/// What becomes of an extracted row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// It matches its snapshot entry and is the first row of its key to:
    /// unchanged, nothing more to do.
    Settled,
    /// It stays parked; `after_settled` if a row of its key was settled
    /// before it.
    Parked { after_settled: bool },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{key_hash, partition_of};

    fn entry(key: &str, fingerprint: u128) -> Entry {
        Entry {
            key_hash: key_hash(key),
            fingerprint,
        }
    }

    #[test]
    fn settles_a_keys_first_matching_row_only() {
        let p = partition_of(key_hash("a"));
        // Unsorted, as a store may give them.
        let mut entries: Vec<Entry> = (0..500).map(|i| entry(&format!("k{i}"), i)).collect();
        entries.push(entry("a", 1));
        entries.retain(|e| partition_of(e.key_hash) == p);
        entries.reverse();
        let mut range = Range::new(entries.clone());
        assert!(range.entries.is_sorted_by_key(|e| e.key_hash));
        for e in &entries {
            assert_eq!(range.entries[range.find(e.key_hash).unwrap()], *e);
        }
        assert_eq!(range.find(key_hash("b")), None);
        let parked = |after_settled| Arrival::Parked { after_settled };
        assert_eq!(range.arrive(key_hash("b"), 1), parked(false));
        assert_eq!(range.arrive(key_hash("a"), 2), parked(false));
        assert_eq!(range.arrive(key_hash("a"), 1), Arrival::Settled);
        assert_eq!(range.arrive(key_hash("a"), 1), parked(true));
        assert_eq!(range.arrive(key_hash("a"), 2), parked(true));
        assert!(range.settled[range.find(key_hash("a")).unwrap()]);
        assert_eq!(range.settled.iter().filter(|s| **s).count(), 1);
        // Too few entries for more than one bucket, and none at all.
        let one = Range::new(vec![entry("a", 1)]);
        assert_eq!(one.find(key_hash("a")), Some(0));
        assert_eq!(Range::default().find(key_hash("a")), None);
    }
}
