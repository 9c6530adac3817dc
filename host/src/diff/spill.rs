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
//! Once a partition's range of the snapshot is read ahead
//! ([`Spill::read_ahead`]), a full buffer first drops the rows that range
//! settles (see [`super::ahead`]) and is written only if it is still full:
//! an incremental run's unchanged rows never reach the disk.
//!
//! A partition is read back as one block of bytes, its rows borrowing their
//! keys and JSON from it ([`Partition::rows`]): the diff keeps one copy of a
//! partition, not the bytes and an owned key and record for each row.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use super::ahead::{Arrival, Range};

/// How many partitions rows are spread over: a model at the 30-million-row
/// limit leaves about 120,000 rows (some tens of MiB) per partition.
pub const PARTITIONS: usize = 256;

/// One row as the diff needs it: the key's hash (the snapshot's order),
/// the record's fingerprint, the key, and the record's JSON, the last two
/// borrowed from the [`Partition`] they were read from; and whether a row
/// of the same key was settled before it (see [`super::ahead`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row<'a> {
    pub key_hash: u128,
    pub fingerprint: u128,
    pub key: &'a str,
    pub json: &'a [u8],
    pub after_settled: bool,
}

impl<'a> Row<'a> {
    /// A row as extracted, its hashes taken.
    pub fn new(key: &'a str, json: &'a [u8]) -> Row<'a> {
        Row {
            key_hash: super::hash::key_hash(key),
            fingerprint: super::hash::fingerprint_of(json),
            key,
            json,
            after_settled: false,
        }
    }

    /// The row parked at the start of `bytes`, and how many bytes it takes.
    fn parked(bytes: &'a [u8]) -> std::io::Result<(Row<'a>, usize)> {
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
        let mut rest = bytes;
        let key_hash = u128_of(take(&mut rest, 16)?);
        let fingerprint = u128_of(take(&mut rest, 16)?);
        let after_settled = take(&mut rest, 1)?[0] == 1;
        let n = len_of(take(&mut rest, 4)?);
        let key = std::str::from_utf8(take(&mut rest, n)?)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let n = len_of(take(&mut rest, 4)?);
        let json = take(&mut rest, n)?;
        let row = Row {
            key_hash,
            fingerprint,
            key,
            json,
            after_settled,
        };
        Ok((row, bytes.len() - rest.len()))
    }
}

/// Where a parked row keeps its `after_settled` byte.
const AFTER_SETTLED_AT: usize = 32;

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
    /// The snapshot's ranges read ahead, by partition, which settle a
    /// full buffer's rows before it is written.
    ranges: Vec<Option<Range>>,
    /// How much of each buffer its range has settled: the rows it kept
    /// are final, and looking at them again would take a row settled
    /// after them for one before.
    settled: Vec<usize>,
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
            ranges: std::iter::repeat_with(|| None).take(PARTITIONS).collect(),
            settled: vec![0; PARTITIONS],
        }
    }

    /// Partition `p`'s range of the snapshot, read ahead: from now on, its
    /// rows that match their entries are settled (see [`super::ahead`]).
    pub fn read_ahead(&mut self, p: usize, range: Range) {
        self.ranges[p] = Some(range);
    }

    /// How many partitions, from the first, have their range read ahead.
    pub fn ranges_ahead(&self) -> usize {
        self.ranges.iter().take_while(|r| r.is_some()).count()
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether any row went to disk.
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Parks a row.
    pub fn push(&mut self, row: &Row<'_>) -> std::io::Result<()> {
        let (key_hash, fingerprint) = (row.key_hash, row.fingerprint);
        let p = partition_of(key_hash);
        let (hash, print) = (key_hash.to_le_bytes(), fingerprint.to_le_bytes());
        let (key_len, json_len) = (
            (row.key.len() as u32).to_le_bytes(),
            (row.json.len() as u32).to_le_bytes(),
        );
        let row: [&[u8]; 7] = [
            &hash,
            &print,
            &[0],
            &key_len,
            row.key.as_bytes(),
            &json_len,
            row.json,
        ];
        let size: usize = row.iter().map(|b| b.len()).sum();
        self.rows += 1;
        if self.buffers[p].len() + size > self.share {
            self.settle(p)?;
        }
        if self.buffers[p].len() + size > self.share {
            self.write(p)?;
            if size > self.share {
                // A row larger than a whole buffer goes straight to disk,
                // unless it settles.
                let mut row = row.concat();
                if let Some(range) = &mut self.ranges[p]
                    && !stays(range, &mut row, key_hash, fingerprint)
                {
                    return Ok(());
                }
                return parked(&mut self.file)?.append(p, &row);
            }
        }
        let buf = &mut self.buffers[p];
        if buf.capacity() == 0 {
            buf.reserve_exact(self.share);
        }
        row.iter().for_each(|b| buf.extend_from_slice(b));
        Ok(())
    }

    /// Drops the rows of partition `p`'s buffer that its range read ahead
    /// settles, and marks those that follow a settled row of their key.
    fn settle(&mut self, p: usize) -> std::io::Result<()> {
        // A first run's ranges are empty: nothing to settle.
        let Some(range) = self.ranges[p].as_mut().filter(|r| !r.entries.is_empty()) else {
            return Ok(());
        };
        let buf = &mut self.buffers[p];
        let (mut read, mut kept) = (self.settled[p], self.settled[p]);
        while read < buf.len() {
            let (row, len) = Row::parked(&buf[read..])?;
            let (key_hash, fingerprint) = (row.key_hash, row.fingerprint);
            if stays(range, &mut buf[read..read + len], key_hash, fingerprint) {
                if kept != read {
                    buf.copy_within(read..read + len, kept);
                }
                kept += len;
            }
            read += len;
        }
        buf.truncate(kept);
        self.settled[p] = kept;
        Ok(())
    }

    /// Appends partition `p`'s buffer to the file and empties it.
    fn write(&mut self, p: usize) -> std::io::Result<()> {
        if !self.buffers[p].is_empty() {
            parked(&mut self.file)?.append(p, &self.buffers[p])?;
            self.buffers[p].clear();
            self.settled[p] = 0;
        }
        Ok(())
    }

    /// Partition `p`'s rows in the order they were pushed, but for those
    /// settled, and its range if it was read ahead. Each partition can be
    /// read once.
    ///
    /// Once rows went to disk, the first read writes every buffer out and
    /// frees it: otherwise the partitions not read yet would keep up to the
    /// whole budget in memory while the diff holds the one it reads and
    /// the changes it delivers.
    pub fn take(&mut self, p: usize) -> std::io::Result<(Partition, Option<Range>)> {
        if self.file.is_none() {
            self.settle(p)?;
            let bytes = std::mem::take(&mut self.buffers[p]);
            return Ok((Partition { bytes }, self.ranges[p].take()));
        }
        for q in 0..PARTITIONS {
            self.settle(q)?;
            self.write(q)?;
            self.buffers[q] = Vec::new();
        }
        let bytes = parked(&mut self.file)?.read(p)?;
        Ok((Partition { bytes }, self.ranges[p].take()))
    }
}

/// Whether a parked row, `row` its bytes, stays parked against its
/// partition's range; if so, it is marked when it follows a settled row of
/// its key.
fn stays(range: &mut Range, row: &mut [u8], key_hash: u128, fingerprint: u128) -> bool {
    match range.arrive(key_hash, fingerprint) {
        Arrival::Settled => false,
        Arrival::Parked { after_settled } => {
            row[AFTER_SETTLED_AT] = u8::from(after_settled);
            true
        }
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
        let mut bytes = self.bytes.as_slice();
        let mut rows = Vec::new();
        while !bytes.is_empty() {
            let (row, len) = Row::parked(bytes)?;
            rows.push(row);
            bytes = &bytes[len..];
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
            spill.push(&Row::new(key, json)).unwrap();
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
                let (part, range) = spill.take(p).unwrap();
                assert!(range.is_none());
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

    #[test]
    fn rows_matching_ranges_read_ahead_are_settled_in_memory_and_on_disk() {
        let rows: Vec<_> = (0..2000).map(row).collect();
        // The snapshot holds the even rows; every tenth row comes twice.
        let twice = |i: usize| i.is_multiple_of(10);
        let mut extracted = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            extracted.push(r);
            if twice(i) {
                extracted.push(r);
            }
        }
        for budget in [1 << 20, 200, 64 << 10] {
            let mut spill = Spill::new(budget);
            let mut ranges = vec![Vec::new(); PARTITIONS];
            for (key, json) in rows.iter().step_by(2) {
                let row = Row::new(key, json);
                ranges[partition_of(row.key_hash)].push(super::super::Entry {
                    key_hash: row.key_hash,
                    fingerprint: row.fingerprint,
                });
            }
            for (p, entries) in ranges.into_iter().enumerate() {
                spill.read_ahead(p, Range::new(entries));
            }
            for (key, json) in &extracted {
                spill.push(&Row::new(key, json)).unwrap();
            }
            let mut parked = Vec::new();
            let mut settled = 0;
            for p in 0..PARTITIONS {
                let (part, range) = spill.take(p).unwrap();
                settled += range.unwrap().settled.iter().filter(|s| **s).count();
                for r in part.rows().unwrap() {
                    parked.push((r.key.to_string(), r.after_settled));
                }
            }
            assert_eq!(settled, 1000, "budget {budget}");
            // The odd rows, and the second of each even row that came
            // twice, after its first settled.
            let mut want: Vec<_> = (0..2000)
                .filter(|i| i % 2 == 1 || twice(*i))
                .map(|i| (format!("k{i}"), i % 2 == 0))
                .collect();
            parked.sort();
            want.sort();
            assert_eq!(parked, want, "budget {budget}");
        }
    }
}
