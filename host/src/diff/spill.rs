//! Extracted rows parked until the diff reads them back, one partition at a
//! time, so memory holds one partition rather than the whole model.
//!
//! Rows are spread over [`PARTITIONS`] partitions by the first byte of
//! their key hash, which is also how the snapshot is ordered: partition `p`
//! of the extraction meets exactly the snapshot's key hashes starting with
//! byte `p`.
//!
//! Each partition has a buffer of a fixed share of the budget
//! (`budget / PARTITIONS`), reserved once at its full size: a full buffer is
//! appended to one temporary file (created on the first such write, gone
//! when the spill is dropped) as a block of that partition, and reused, so
//! the buffers together never hold more than the budget. (A row larger
//! than a whole buffer goes straight to the file.) Key hashes are uniform,
//! so a model well within the budget never touches the disk. A buffer left
//! to grow by doubling, and kept at its largest after a flush, would hold
//! up to twice its rows. One file for all partitions, with each block's
//! place kept in memory, rather than a file each: creating and emptying
//! 256 files cost more than the blocks' reads. The file keeps what was
//! read until the spill is dropped: the disk it takes at its peak, once
//! every row is parked, is the same either way.
//!
//! A partition is read back as one block of bytes, its rows borrowing their
//! keys and JSON from it ([`Partition::rows`]): the diff keeps one copy of a
//! partition, not the bytes and an owned key and record for each row.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

/// How many partitions rows are spread over: a model at the 30-million-row
/// limit leaves about 120,000 rows (some tens of MiB) per partition.
pub const PARTITIONS: usize = 256;

/// One row as the diff needs it: the key's hash (the snapshot's order),
/// the record's fingerprint, the key, and the record's JSON, the last two
/// borrowed from the [`Partition`] they were read from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row<'a> {
    pub key_hash: u128,
    pub fingerprint: u128,
    pub key: &'a str,
    pub json: &'a [u8],
}

pub fn partition_of(key_hash: u128) -> usize {
    (key_hash >> 120) as usize
}

pub struct Spill {
    buffers: Vec<Vec<u8>>,
    /// How many bytes each partition's buffer holds before it is written.
    share: usize,
    /// Created on the first write.
    file: Option<Parked>,
    rows: u64,
}

/// The temporary file full buffers go to, and where each partition's
/// blocks lie in it, in the order they were written.
struct Parked {
    file: File,
    end: u64,
    blocks: Vec<Vec<(u64, usize)>>,
}

impl Parked {
    fn new() -> std::io::Result<Parked> {
        Ok(Parked {
            file: tempfile::tempfile()?,
            end: 0,
            blocks: vec![Vec::new(); PARTITIONS],
        })
    }

    /// Appends `bytes` as partition `p`'s next block.
    fn append(&mut self, p: usize, bytes: &[u8]) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(self.end))?;
        self.file.write_all(bytes)?;
        self.blocks[p].push((self.end, bytes.len()));
        self.end += bytes.len() as u64;
        Ok(())
    }

    /// Partition `p`'s blocks, one after the other.
    fn read(&mut self, p: usize) -> std::io::Result<Vec<u8>> {
        let blocks = std::mem::take(&mut self.blocks[p]);
        // Sized exactly: reading into a growing vector could reserve up to
        // twice the partition.
        let mut bytes = vec![0; blocks.iter().map(|(_, len)| len).sum()];
        let mut at = 0;
        for (offset, len) in blocks {
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.read_exact(&mut bytes[at..at + len])?;
            at += len;
        }
        Ok(bytes)
    }
}

impl Spill {
    /// A spill keeping at most about `budget` bytes of rows in memory.
    pub fn new(budget: usize) -> Spill {
        Spill {
            buffers: vec![Vec::new(); PARTITIONS],
            share: budget / PARTITIONS,
            file: None,
            rows: 0,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether any row went to disk.
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Parks a row by its key and its record's JSON, from which its key
    /// hash and fingerprint are taken.
    pub fn push(&mut self, key: &str, json: &[u8]) -> std::io::Result<()> {
        let key_hash = super::hash::key_hash(key);
        let p = partition_of(key_hash);
        let (hash, fingerprint) = (
            key_hash.to_le_bytes(),
            super::hash::fingerprint_of(json).to_le_bytes(),
        );
        let (key_len, json_len) = (
            (key.len() as u32).to_le_bytes(),
            (json.len() as u32).to_le_bytes(),
        );
        let row: [&[u8]; 6] = [
            &hash,
            &fingerprint,
            &key_len,
            key.as_bytes(),
            &json_len,
            json,
        ];
        let size: usize = row.iter().map(|b| b.len()).sum();
        self.rows += 1;
        if self.buffers[p].len() + size > self.share {
            self.write(p)?;
            if size > self.share {
                // A row larger than a whole buffer goes straight to disk.
                return parked(&mut self.file)?.append(p, &row.concat());
            }
        }
        let buf = &mut self.buffers[p];
        if buf.capacity() == 0 {
            buf.reserve_exact(self.share);
        }
        row.iter().for_each(|b| buf.extend_from_slice(b));
        Ok(())
    }

    /// Appends partition `p`'s buffer to the file and empties it.
    fn write(&mut self, p: usize) -> std::io::Result<()> {
        if !self.buffers[p].is_empty() {
            parked(&mut self.file)?.append(p, &self.buffers[p])?;
            self.buffers[p].clear();
        }
        Ok(())
    }

    /// Partition `p`'s rows in the order they were pushed. Each partition
    /// can be read once.
    ///
    /// Once rows went to disk, the first read writes every buffer out and
    /// frees it: otherwise the partitions not read yet would keep up to the
    /// whole budget in memory while the diff holds the one it reads and
    /// the changes it delivers.
    pub fn take(&mut self, p: usize) -> std::io::Result<Partition> {
        if self.file.is_none() {
            let bytes = std::mem::take(&mut self.buffers[p]);
            return Ok(Partition { bytes });
        }
        for q in 0..PARTITIONS {
            self.write(q)?;
            self.buffers[q] = Vec::new();
        }
        let bytes = parked(&mut self.file)?.read(p)?;
        Ok(Partition { bytes })
    }
}

/// The spill's file, created on first use.
fn parked(slot: &mut Option<Parked>) -> std::io::Result<&mut Parked> {
    match slot {
        Some(parked) => Ok(parked),
        None => Ok(slot.insert(Parked::new()?)),
    }
}

/// One partition's rows as they were parked.
pub struct Partition {
    bytes: Vec<u8>,
}

impl Partition {
    /// The rows in push order, borrowing their keys and JSON from the
    /// partition.
    pub fn rows(&self) -> std::io::Result<Vec<Row<'_>>> {
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
        let mut bytes = self.bytes.as_slice();
        let mut rows = Vec::new();
        while !bytes.is_empty() {
            let key_hash = u128_of(take(&mut bytes, 16)?);
            let fingerprint = u128_of(take(&mut bytes, 16)?);
            let n = len_of(take(&mut bytes, 4)?);
            let key = std::str::from_utf8(take(&mut bytes, n)?)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            let n = len_of(take(&mut bytes, 4)?);
            let json = take(&mut bytes, n)?;
            rows.push(Row {
                key_hash,
                fingerprint,
                key,
                json,
            });
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row `i`: every seventh has a record of 400 bytes or more.
    fn row(i: usize) -> (String, Vec<u8>) {
        let pad = if i.is_multiple_of(7) {
            "x".repeat(400)
        } else {
            String::new()
        };
        (
            format!("k{i}"),
            format!(r#"{{"id":{i},"pad":"{pad}"}}"#).into_bytes(),
        )
    }

    fn spill_of(budget: usize, rows: &[(String, Vec<u8>)]) -> Spill {
        let mut spill = Spill::new(budget);
        for (key, json) in rows {
            spill.push(key, json).unwrap();
        }
        spill
    }

    #[test]
    fn rows_come_back_by_partition_in_push_order_from_memory_and_disk() {
        let rows: Vec<_> = (0..2000).map(row).collect();
        // 1 MiB keeps every row in memory; 200 bytes leaves no room in a
        // buffer, so every row goes to disk; 64 KiB (256 bytes a
        // partition) writes full buffers and the long rows on their own,
        // and keeps the rest.
        for budget in [1 << 20, 200, 64 << 10] {
            let mut spill = spill_of(budget, &rows);
            assert_eq!(spill.rows(), 2000);
            assert_eq!(spill.spilled(), budget != 1 << 20);
            let mut back = Vec::new();
            for p in 0..PARTITIONS {
                let part = spill.take(p).unwrap();
                for r in part.rows().unwrap() {
                    assert_eq!(partition_of(r.key_hash), p);
                    assert_eq!(r.key_hash, super::super::hash::key_hash(r.key));
                    assert_eq!(r.fingerprint, super::super::hash::fingerprint_of(r.json));
                    back.push((r.key.to_string(), r.json.to_vec()));
                }
            }
            let mut want = rows.clone();
            want.sort_by_key(|(key, _)| partition_of(super::super::hash::key_hash(key)));
            assert_eq!(back, want);
        }
    }

    #[test]
    fn buffers_hold_no_more_than_the_budget() {
        let budget = 64 << 10;
        let spill = spill_of(budget, &(0..20_000).map(row).collect::<Vec<_>>());
        assert!(spill.spilled());
        assert!(
            spill
                .buffers
                .iter()
                .all(|b| b.capacity() == budget / PARTITIONS)
        );
    }
}
