//! The two hashes the diff compares by: a key's (which partition and
//! snapshot entry it belongs to) and a record's fingerprint (whether it
//! changed). Both xxh3-128: fast, and wide enough that collisions never
//! matter at 30 million records.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub fn key_hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

pub fn fingerprint_of(json: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(json)
}

/// A map keyed by key hashes. They are xxh3 already, uniform, so their low
/// 64 bits serve as the map's hash: SipHash over them was a tenth of the
/// diff's own time.
pub type ByKeyHash<V> = HashMap<u128, V, BuildHasherDefault<KeyHashHasher>>;

/// The [`Hasher`] of [`ByKeyHash`]: a key hash's low 64 bits.
#[derive(Default)]
pub struct KeyHashHasher(u64);

impl Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }

    /// Only key hashes are meant to be hashed here; anything else is
    /// hashed properly all the same.
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
}
