//! The two hashes the diff compares by: a key's (which partition and
//! snapshot entry it belongs to) and a record's fingerprint (whether it
//! changed). Both xxh3-128: fast, and wide enough that collisions never
//! matter at 30 million records.

pub fn key_hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

pub fn fingerprint_of(json: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(json)
}
