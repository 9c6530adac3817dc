//! Extracted rows parked until the diff reads them back, one partition at a
//! time, so memory holds one partition rather than the whole model.
//!
//! Rows are spread over [`PARTITIONS`] partitions by the first byte of
//! their key hash, which is also how the snapshot is ordered: partition `p`
//! of the extraction meets exactly the snapshot's key hashes starting with
//! byte `p`. Rows stay in memory while all of them fit in a budget; past it,
//! every partition's buffer is appended to its own file in a temporary
//! folder (deleted when the spill is dropped), and the budget then bounds
//! the buffers between flushes.

use std::fs::File;
use std::io::{BufReader, Read, Write};

/// How many partitions rows are spread over: a model at the 30-million-row
/// limit leaves about 120,000 rows (some tens of MiB) per partition.
pub const PARTITIONS: usize = 256;

/// One row as the diff needs it: the key's hash (the snapshot's order),
/// the record's fingerprint, the key, and the record's JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key_hash: u128,
    pub fingerprint: u128,
    pub key: String,
    pub json: Vec<u8>,
}

pub fn partition_of(key_hash: u128) -> usize {
    (key_hash >> 120) as usize
}

pub struct Spill {
    buffers: Vec<Vec<u8>>,
    buffered: usize,
    budget: usize,
    /// Created on the first flush.
    files: Option<(tempfile::TempDir, Vec<File>)>,
    rows: u64,
}

impl Spill {
    /// A spill keeping at most about `budget` bytes of rows in memory.
    pub fn new(budget: usize) -> Spill {
        Spill {
            buffers: vec![Vec::new(); PARTITIONS],
            buffered: 0,
            budget,
            files: None,
            rows: 0,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether any row went to disk.
    pub fn spilled(&self) -> bool {
        self.files.is_some()
    }

    /// Parks a row by its key and its record's JSON, from which its key
    /// hash and fingerprint are taken.
    pub fn push(&mut self, key: &str, json: &[u8]) -> std::io::Result<()> {
        let key_hash = super::key_hash(key);
        let buf = &mut self.buffers[partition_of(key_hash)];
        let before = buf.len();
        buf.extend_from_slice(&key_hash.to_le_bytes());
        buf.extend_from_slice(&super::fingerprint_of(json).to_le_bytes());
        buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(&(json.len() as u32).to_le_bytes());
        buf.extend_from_slice(json);
        self.buffered += buf.len() - before;
        self.rows += 1;
        if self.buffered > self.budget {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let files = match &mut self.files {
            Some((_, files)) => files,
            None => {
                let dir = tempfile::Builder::new().prefix("ebb-diff-").tempdir()?;
                let files = (0..PARTITIONS)
                    .map(|p| File::create(dir.path().join(p.to_string())))
                    .collect::<std::io::Result<Vec<_>>>()?;
                &mut self.files.insert((dir, files)).1
            }
        };
        for (buf, file) in self.buffers.iter_mut().zip(files.iter_mut()) {
            file.write_all(buf)?;
            buf.clear();
        }
        self.buffered = 0;
        Ok(())
    }

    /// Partition `p`'s rows in the order they were pushed. Each partition
    /// can be read once; its memory is released as it is read.
    pub fn take(&mut self, p: usize) -> std::io::Result<Vec<Row>> {
        let mut bytes = Vec::new();
        if let Some((dir, files)) = &mut self.files {
            files[p].flush()?;
            BufReader::new(File::open(dir.path().join(p.to_string()))?).read_to_end(&mut bytes)?;
            // Only this partition's rows are needed again: give the disk back.
            files[p] = File::create(dir.path().join(p.to_string()))?;
        }
        bytes.extend_from_slice(&std::mem::take(&mut self.buffers[p]));
        decode(&bytes)
    }
}

fn decode(mut bytes: &[u8]) -> std::io::Result<Vec<Row>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> std::io::Result<&'a [u8]> {
        if bytes.len() < n {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the diff's spill file is truncated",
            ));
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    fn u128_of(b: &[u8]) -> u128 {
        u128::from_le_bytes(b.try_into().expect("16 bytes"))
    }
    fn len_of(b: &[u8]) -> usize {
        u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize
    }
    let mut rows = Vec::new();
    while !bytes.is_empty() {
        let key_hash = u128_of(take(&mut bytes, 16)?);
        let fingerprint = u128_of(take(&mut bytes, 16)?);
        let n = len_of(take(&mut bytes, 4)?);
        let key = String::from_utf8(take(&mut bytes, n)?.to_vec())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let n = len_of(take(&mut bytes, 4)?);
        let json = take(&mut bytes, n)?.to_vec();
        rows.push(Row {
            key_hash,
            fingerprint,
            key,
            json,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u128) -> Row {
        let key = format!("k{i}");
        let json = format!("{{\"id\":{i}}}").into_bytes();
        Row {
            key_hash: super::super::key_hash(&key),
            fingerprint: super::super::fingerprint_of(&json),
            key,
            json,
        }
    }

    #[test]
    fn rows_come_back_by_partition_in_push_order_from_memory_and_disk() {
        for budget in [usize::MAX, 200] {
            let mut spill = Spill::new(budget);
            let rows: Vec<Row> = (0..2000).map(row).collect();
            for r in &rows {
                spill.push(&r.key, &r.json).unwrap();
            }
            assert_eq!(spill.spilled(), budget == 200);
            let mut back = Vec::new();
            for p in 0..PARTITIONS {
                let part = spill.take(p).unwrap();
                assert!(part.iter().all(|r| partition_of(r.key_hash) == p));
                back.extend(part);
            }
            let mut want = rows.clone();
            want.sort_by_key(|r| partition_of(r.key_hash));
            assert_eq!(back, want);
        }
    }
}
