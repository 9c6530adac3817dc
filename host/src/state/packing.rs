//! How the snapshot's records are packed into blocks and read back: the
//! bytes of a block, and where a record sits in it. Plain Rust, below the
//! statements that store blocks (record_blocks.rs).

/// Records a block holds at most. Places are written with it, and the
/// snapshot's triggers divide by it: it cannot change.
pub const BLOCK: usize = 16;

/// zstd's level for blocks. A block is a few kilobytes, where level 1
/// spends most of its time building entropy tables: level −1 packs a
/// million of the benchmark's records in about half the time (and unpacks
/// them in 40 % of it) for a quarter more bytes (BENCHMARKS.md, "Eighth
/// round").
const LEVEL: i32 = -1;

/// A block ready to be written: its records, packed.
pub struct Packed {
    /// How many records it holds.
    pub size: i64,
    /// Each record's key hash (16 bytes), length (4 bytes, little-endian)
    /// and JSON text, one after the other, compressed with zstd (or, if
    /// that failed, after a 0 byte as they are).
    pub bytes: Vec<u8>,
}

/// Packs records, in the order given, into blocks of [`BLOCK`]: record `i`
/// goes to block `i / BLOCK`, slot `i % BLOCK`.
pub fn pack<'a>(records: impl IntoIterator<Item = (u128, &'a str)>) -> Vec<Packed> {
    let mut blocks = Vec::new();
    let mut frames = Vec::new();
    let mut size = 0;
    // One compression context for all blocks: making one is a good part of
    // compressing a few kilobytes.
    let mut zstd = zstd::bulk::Compressor::new(LEVEL).ok();
    let mut close = |frames: &mut Vec<u8>, size: &mut i64| {
        // Compressing into memory fails only for want of memory: the
        // block is then kept as it is.
        let bytes = zstd
            .as_mut()
            .and_then(|z| z.compress(frames).ok())
            .unwrap_or_else(|| [&[0][..], frames].concat());
        blocks.push(Packed { size: *size, bytes });
        frames.clear();
        *size = 0;
    };
    for (key_hash, record) in records {
        frames.extend_from_slice(&key_hash.to_be_bytes());
        frames.extend_from_slice(&(record.len() as u32).to_le_bytes());
        frames.extend_from_slice(record.as_bytes());
        size += 1;
        if size == BLOCK as i64 {
            close(&mut frames, &mut size);
        }
    }
    if size > 0 {
        close(&mut frames, &mut size);
    }
    blocks
}

/// Unpacks blocks with one decompression context: making one costs more
/// than unpacking a block.
pub struct Unpacker(Option<zstd::bulk::Decompressor<'static>>);

impl Unpacker {
    pub fn new() -> Unpacker {
        Unpacker(zstd::bulk::Decompressor::new().ok())
    }

    /// A block's records: key hash and JSON text, slot by slot.
    pub fn unpack(&mut self, bytes: &[u8]) -> std::io::Result<Vec<(u128, String)>> {
        let frames = match bytes {
            [0, raw @ ..] => raw.to_vec(),
            [] => Vec::new(),
            _ => self.decompress(bytes)?,
        };
        let mut out = Vec::with_capacity(BLOCK);
        let mut rest = &frames[..];
        while !rest.is_empty() {
            let (head, tail) = rest.split_at_checked(20).ok_or_else(cut_short)?;
            let (hash, len) = head.split_at(16);
            let key_hash = u128::from_be_bytes(hash.try_into().map_err(|_| cut_short())?);
            let len = u32::from_le_bytes(len.try_into().map_err(|_| cut_short())?) as usize;
            let (record, tail) = tail.split_at_checked(len).ok_or_else(cut_short)?;
            let record = String::from_utf8(record.to_vec()).map_err(std::io::Error::other)?;
            out.push((key_hash, record));
            rest = tail;
        }
        Ok(out)
    }

    fn decompress(&mut self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        // `pack` writes the size of what it compressed into the frame.
        let size = zstd::zstd_safe::get_frame_content_size(bytes).map_err(|_| cut_short())?;
        match (&mut self.0, size) {
            (Some(zstd), Some(size)) => zstd.decompress(bytes, size as usize),
            _ => zstd::decode_all(bytes),
        }
    }
}

fn cut_short() -> std::io::Error {
    std::io::Error::other("a block of the snapshot's records is cut short")
}

/// The place of slot `slot` of block `id`.
pub fn place(id: i64, slot: usize) -> i64 {
    id * BLOCK as i64 + slot as i64
}

/// The block and slot of a place.
pub fn block_and_slot(place: i64) -> (i64, usize) {
    (place / BLOCK as i64, (place % BLOCK as i64) as usize)
}

/// The places of `blocks` once written with `ids`, record by record.
pub fn places(ids: &[i64], blocks: &[Packed]) -> Vec<i64> {
    let mut out = Vec::new();
    for (id, block) in ids.iter().zip(blocks) {
        out.extend((0..block.size as usize).map(|slot| place(*id, slot)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_from_their_blocks_slot_by_slot() {
        let records: Vec<(u128, String)> = (0..40u128)
            .map(|i| (i * 7919, format!(r#"{{"id":{i},"note":"é {i}"}}"#)))
            .collect();
        let blocks = pack(records.iter().map(|(h, r)| (*h, r.as_str())));
        assert_eq!(
            blocks.iter().map(|b| b.size).collect::<Vec<_>>(),
            [16, 16, 8]
        );
        let back: Vec<(u128, String)> = blocks
            .iter()
            .flat_map(|b| Unpacker::new().unpack(&b.bytes).expect("unpacks"))
            .collect();
        assert_eq!(back, records);
        assert_eq!(
            places(&[5, 9, 2], &blocks)[15..18],
            [place(5, 15), place(9, 0), place(9, 1)]
        );
        assert_eq!(block_and_slot(place(9, 1)), (9, 1));
    }

    #[test]
    fn a_cut_block_is_an_error_not_a_panic() {
        let blocks = pack([(1, r#"{"a":1}"#)]);
        let frames = zstd::decode_all(&blocks[0].bytes[..]).expect("zstd");
        let raw = |frames: &[u8]| [&[0][..], frames].concat();
        let mut unpacker = Unpacker::new();
        let one = unpacker.unpack(&raw(&frames)).expect("raw");
        assert_eq!(one, [(1, r#"{"a":1}"#.into())]);
        for cut in [1, 19, 20, frames.len() - 1] {
            assert!(
                unpacker.unpack(&raw(&frames[..cut])).is_err(),
                "cut at {cut}"
            );
        }
        assert!(unpacker.unpack(b"{not a block").is_err());
        assert!(unpacker.unpack(&blocks[0].bytes[..9]).is_err());
        assert!(unpacker.unpack(&[]).expect("empty").is_empty());
    }
}
