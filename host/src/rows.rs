//! Extracted rows as JSON text, written once by the source and read in
//! place by everything after it.
//!
//! A model can return tens of millions of rows, and most of them are
//! unchanged: all the diff needs of a row is its key, its fingerprint (a
//! hash of its JSON) and its JSON, to park until the snapshot is compared.
//! So a source writes each row straight into a chunk's buffer as a JSON
//! object, columns in query order, and notes where each value lies. Nothing
//! is allocated per row or per column, the column names are written from
//! one shared [`Header`], and only the rows that changed are ever parsed
//! back into a [`Record`].
//!
//! The encoding is serde_json's compact form of the same record, so a
//! row's fingerprint does not depend on which of the two wrote it.
//!
//! JSON holds only Unicode, so text a database returns that is not UTF-8
//! cannot be written. Such a value is kept as null and its row marked with
//! the bytes ([`ValueError::NotUtf8`]): the row becomes a row error naming
//! the column, and the other rows go on.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use serde_json::Value;

use crate::event::Record;

/// A chunk is handed on once it holds this many rows…
pub const ROWS_PER_CHUNK: usize = 512;
/// …or this many bytes of JSON, whichever comes first.
const BYTES_PER_CHUNK: usize = 4 << 20;

/// A query's column names, shared by every chunk of its rows.
#[derive(Debug)]
pub struct Header {
    names: Vec<String>,
    /// `{"name":` for the first column, `,"name":` for the others.
    prefixes: Vec<Vec<u8>>,
}

impl Header {
    /// Refuses a result naming a column twice: a record has one value per
    /// name, and which of the two to keep cannot be guessed.
    pub fn new(names: Vec<String>) -> Result<Arc<Header>, DuplicateColumn> {
        check_names(names.iter().map(String::as_str))?;
        let prefixes = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut p = Vec::with_capacity(name.len() + 4);
                p.push(if i == 0 { b'{' } else { b',' });
                // Writing a string into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut p, name);
                p.push(b':');
                p
            })
            .collect();
        Ok(Arc::new(Header { names, prefixes }))
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// A result that names a column twice.
#[derive(Debug, thiserror::Error)]
#[error("the result has two columns named `{0}`; give one of them another name with AS")]
pub struct DuplicateColumn(pub String);

/// Refuses a column named twice.
pub fn check_names<'a>(
    names: impl ExactSizeIterator<Item = &'a str>,
) -> Result<(), DuplicateColumn> {
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    for name in names {
        if !seen.insert(name) {
            return Err(DuplicateColumn(name.to_owned()));
        }
    }
    Ok(())
}

/// Rows of one query, each a JSON object in one shared buffer.
#[derive(Debug)]
pub struct RowChunk {
    header: Arc<Header>,
    buf: Vec<u8>,
    /// Where each row's object starts in `buf`; it ends where the next
    /// starts (the last at the buffer's end).
    starts: Vec<usize>,
    /// Each row's values in `buf`, `width` per row.
    values: Vec<Range<usize>>,
    /// The values that were text but not UTF-8, in row order; empty but
    /// for bad data.
    undecodable: Vec<Undecodable>,
}

/// A value of a row that was text but not UTF-8 (kept as null).
#[derive(Debug)]
struct Undecodable {
    row: usize,
    column: usize,
    text: NotUtf8,
}

impl RowChunk {
    pub fn new(header: Arc<Header>) -> RowChunk {
        RowChunk {
            values: Vec::with_capacity(ROWS_PER_CHUNK * header.names.len()),
            header,
            buf: Vec::new(),
            starts: Vec::with_capacity(ROWS_PER_CHUNK),
            undecodable: Vec::new(),
        }
    }

    pub fn header(&self) -> &Arc<Header> {
        &self.header
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Whether the chunk is big enough to hand on.
    pub fn is_full(&self) -> bool {
        self.starts.len() >= ROWS_PER_CHUNK || self.buf.len() >= BYTES_PER_CHUNK
    }

    /// Appends a row: `write(i, out)` writes column `i`'s value as JSON.
    /// A value that is text but not UTF-8 is kept as null and the row
    /// marked; on any other error nothing of the row is kept.
    pub fn push_row<E>(
        &mut self,
        mut write: impl FnMut(usize, &mut Vec<u8>) -> Result<(), ValueError<E>>,
    ) -> Result<(), E> {
        let start = self.buf.len();
        let first_value = self.values.len();
        let first_mark = self.undecodable.len();
        for (i, prefix) in self.header.prefixes.iter().enumerate() {
            self.buf.extend_from_slice(prefix);
            let at = self.buf.len();
            match write(i, &mut self.buf) {
                Ok(()) => {}
                Err(ValueError::NotUtf8(text)) => {
                    self.buf.truncate(at);
                    self.buf.extend_from_slice(b"null");
                    self.undecodable.push(Undecodable {
                        row: self.starts.len(),
                        column: i,
                        text,
                    });
                }
                Err(ValueError::Failed(e)) => {
                    self.buf.truncate(start);
                    self.values.truncate(first_value);
                    self.undecodable.truncate(first_mark);
                    return Err(e);
                }
            }
            self.values.push(at..self.buf.len());
        }
        if self.header.prefixes.is_empty() {
            self.buf.push(b'{');
        }
        self.buf.push(b'}');
        self.starts.push(start);
        Ok(())
    }

    /// Appends a record built elsewhere: each column's value by its name
    /// (null where the record has none).
    pub fn push_record(&mut self, record: &Record) {
        let header = Arc::clone(&self.header);
        let result: Result<(), Infallible> = self.push_row(|i, out| {
            let value = record.get(&header.names[i]).unwrap_or(&Value::Null);
            let _ = serde_json::to_writer(out, value);
            Ok(())
        });
        let Ok(()) = result;
    }

    /// The same rows without their first `n` columns; the others keep
    /// their values and marks. Fails when the rest name a column twice.
    pub fn without_first_columns(&self, n: usize) -> Result<RowChunk, DuplicateColumn> {
        let mut rows = RowChunk::new(Header::new(self.header.names[n..].to_vec())?);
        for row in self.rows() {
            let marks = row.marks();
            let copied: Result<(), Infallible> = rows.push_row(|i, out| {
                match marks.iter().find(|m| m.column == n + i) {
                    Some(mark) => return Err(ValueError::NotUtf8(mark.text.clone())),
                    None => out.extend_from_slice(row.value(n + i)),
                }
                Ok(())
            });
            let Ok(()) = copied;
        }
        Ok(rows)
    }

    pub fn rows(&self) -> impl ExactSizeIterator<Item = RowRef<'_>> {
        (0..self.len()).map(move |index| RowRef { chunk: self, index })
    }
}

/// One row of a chunk.
#[derive(Clone, Copy)]
pub struct RowRef<'a> {
    chunk: &'a RowChunk,
    index: usize,
}

impl<'a> RowRef<'a> {
    /// The whole record as a JSON object.
    pub fn json(&self) -> &'a [u8] {
        let c = self.chunk;
        let start = c.starts[self.index];
        let end = c.starts.get(self.index + 1).copied().unwrap_or(c.buf.len());
        &c.buf[start..end]
    }

    /// Column `i`'s value as JSON.
    pub fn value(&self, i: usize) -> &'a [u8] {
        let c = self.chunk;
        let width = c.header.names.len();
        &c.buf[c.values[self.index * width + i].clone()]
    }

    /// The value of the column named `name` as JSON, if there is one.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.chunk.header.position(name).map(|i| self.value(i))
    }

    /// Each column's name and its value as JSON, in query order.
    pub fn columns(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        let row = *self;
        let names = &self.chunk.header.names;
        names
            .iter()
            .enumerate()
            .map(move |(i, name)| (name.as_str(), row.value(i)))
    }

    /// The first column whose value was text but not UTF-8 (written as
    /// null), and its bytes.
    pub fn undecodable(&self) -> Option<(&'a str, &'a NotUtf8)> {
        let mark = self.marks().first()?;
        Some((&self.chunk.header.names[mark.column], &mark.text))
    }

    /// The row's marks, found by halving: the chunk keeps them in row order.
    fn marks(&self) -> &'a [Undecodable] {
        let all = &self.chunk.undecodable;
        let from = all.partition_point(|m| m.row < self.index);
        let to = all.partition_point(|m| m.row <= self.index);
        &all[from..to]
    }

    /// Column `i`'s value, parsed.
    pub fn parse_value(&self, i: usize) -> Value {
        parse(self.value(i))
    }

    /// The record, parsed (for the rows that go on past the diff).
    pub fn record(&self) -> Record {
        match parse(self.json()) {
            Value::Object(record) => record,
            _ => Record::new(),
        }
    }
}

/// Why a source could not write a value as JSON.
#[derive(Debug)]
pub enum ValueError<E> {
    /// Text that is not UTF-8: the value is kept as null and its row
    /// marked ([`RowRef::undecodable`]), so that row becomes a row error and
    /// the others go on.
    NotUtf8(NotUtf8),
    /// Anything else: the row is not kept, and the error ends the read.
    Failed(E),
}

impl<E> ValueError<E> {
    /// The same error, a failure described by `f`.
    pub fn map<F>(self, f: impl FnOnce(E) -> F) -> ValueError<F> {
        match self {
            ValueError::NotUtf8(text) => ValueError::NotUtf8(text),
            ValueError::Failed(e) => ValueError::Failed(f(e)),
        }
    }
}

impl<E> From<NotUtf8> for ValueError<E> {
    fn from(text: NotUtf8) -> Self {
        ValueError::NotUtf8(text)
    }
}

/// For drivers that describe a failed value in words.
impl From<String> for ValueError<String> {
    fn from(e: String) -> Self {
        ValueError::Failed(e)
    }
}

impl From<&str> for ValueError<String> {
    fn from(e: &str) -> Self {
        ValueError::Failed(e.to_string())
    }
}

/// Text a database returned that is not UTF-8 (SQLite stores any bytes it
/// is given as text, and so does a Postgres database in `SQL_ASCII`).
#[derive(Debug, Clone, PartialEq)]
pub struct NotUtf8(Vec<u8>);

impl NotUtf8 {
    pub fn new(bytes: &[u8]) -> NotUtf8 {
        NotUtf8(bytes.to_vec())
    }

    /// The text with each byte that is not UTF-8 written `\xNN`: readable,
    /// and the same for the same bytes, so it can stand for a key.
    pub fn escaped(&self) -> String {
        escape(&self.0)
    }
}

/// The first byte that is not UTF-8, where it is, and the text around it:
/// `byte 0xe9 at offset 3: "Jos\xe9"`.
impl std::fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// Bytes shown on either side of the first bad one.
        const AROUND: usize = 32;
        let bytes = &self.0;
        let at = bytes.utf8_chunks().next().map_or(0, |c| c.valid().len());
        let from = char_start(bytes, at.saturating_sub(AROUND)).min(at);
        let to = char_start(bytes, (at + AROUND).min(bytes.len()));
        let cut = |cut: bool| if cut { "…" } else { "" };
        write!(
            f,
            "byte {:#04x} at offset {at}: \"{}{}{}\"",
            bytes.get(at).copied().unwrap_or_default(),
            cut(from > 0),
            escape(&bytes[from..to]),
            cut(to < bytes.len()),
        )
    }
}

/// `bytes` as text, each byte that is not UTF-8 written `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(text, "\\x{b:02x}");
        }
    }
    text
}

/// `i`, moved past the continuation bytes of a character it may fall
/// inside, so an excerpt does not cut a valid character in two.
fn char_start(bytes: &[u8], mut i: usize) -> usize {
    for _ in 0..3 {
        match bytes.get(i) {
            Some(b) if b & 0xc0 == 0x80 => i += 1,
            _ => break,
        }
    }
    i
}

/// Parses JSON the sources wrote, which is valid by construction.
fn parse(json: &[u8]) -> Value {
    serde_json::from_slice(json).unwrap_or(Value::Null)
}

/// A value's text as a key: a string's contents, anything else as JSON.
/// `None` for null. Borrowed unless the string holds escapes.
pub fn key_text(json: &[u8]) -> Option<Cow<'_, str>> {
    let text = |b| String::from_utf8_lossy(b);
    match json {
        b"null" => None,
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => Some(text(inner)),
        [b'"', ..] => match parse(json) {
            Value::String(s) => Some(Cow::Owned(s)),
            _ => None,
        },
        other => Some(text(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_are_serde_jsons_compact_encoding() {
        let header = Header::new(vec!["id".into(), "na\"me".into(), "tags".into()]).unwrap();
        let mut chunk = RowChunk::new(header);
        let record = |v: Value| v.as_object().unwrap().clone();
        chunk.push_record(&record(
            json!({"tags": {"a": [1, 2]}, "id": 1, "na\"me": "é\n"}),
        ));
        chunk.push_record(&record(json!({"id": "k\"1", "tags": []})));
        let failed: Result<(), &str> = chunk.push_row(|i, out| match i {
            0 => {
                out.extend_from_slice(b"3");
                Ok(())
            }
            _ => Err(ValueError::Failed("unreadable")),
        });
        assert_eq!(failed, Err("unreadable"));
        assert_eq!(chunk.len(), 2);

        let rows: Vec<RowRef> = chunk.rows().collect();
        let want = json!({"id": 1, "na\"me": "é\n", "tags": {"a": [1, 2]}});
        assert_eq!(rows[0].json(), serde_json::to_vec(&want).unwrap());
        assert_eq!(Value::Object(rows[0].record()), want);
        assert_eq!(rows[1].value(1), b"null");
        assert_eq!(rows[1].parse_value(2), json!([]));
        assert_eq!(key_text(rows[0].value(0)).as_deref(), Some("1"));
        assert_eq!(key_text(rows[1].value(0)).as_deref(), Some("k\"1"));
        assert_eq!(key_text(rows[0].value(1)).as_deref(), Some("é\n"));
        assert_eq!(key_text(rows[1].value(1)), None);
        let names: Vec<&str> = rows[1].columns().map(|(n, _)| n).collect();
        assert_eq!(names, ["id", "na\"me", "tags"]);
    }

    #[test]
    fn a_column_named_twice_is_refused() {
        let e = Header::new(vec!["id".into(), "email".into(), "id".into()]).unwrap_err();
        assert!(e.to_string().contains("two columns named `id`"), "{e}");
    }

    #[test]
    fn a_result_without_columns_is_an_empty_object() {
        let mut chunk = RowChunk::new(Header::new(Vec::new()).unwrap());
        chunk.push_record(&Record::new());
        assert_eq!(chunk.rows().next().unwrap().json(), b"{}");
    }

    #[test]
    fn text_that_is_not_utf8_is_null_and_marks_its_row() {
        let header = Header::new(vec!["_meta".into(), "id".into(), "name".into()]).unwrap();
        let mut chunk = RowChunk::new(header);
        let bad = NotUtf8::new(b"K\xff");
        for row in 0..3 {
            let pushed: Result<(), Infallible> = chunk.push_row(|i, out| {
                match (row, i) {
                    (1, 0 | 2) => return Err(ValueError::NotUtf8(bad.clone())),
                    _ => out.extend_from_slice(b"1"),
                }
                Ok(())
            });
            let Ok(()) = pushed;
        }
        let failed: Result<(), &str> = chunk.push_row(|i, _| match i {
            0 => Err(ValueError::NotUtf8(bad.clone())),
            _ => Err(ValueError::Failed("unreadable")),
        });
        assert_eq!(failed, Err("unreadable"));
        assert_eq!(chunk.len(), 3);

        let rows: Vec<RowRef> = chunk.rows().collect();
        assert_eq!(rows[1].json(), br#"{"_meta":null,"id":1,"name":null}"#);
        assert_eq!(rows[1].undecodable(), Some(("_meta", &bad)));
        assert_eq!(rows[0].undecodable(), None);
        assert_eq!(rows[2].undecodable(), None);

        let without_meta = chunk.without_first_columns(1).unwrap();
        let rows: Vec<RowRef> = without_meta.rows().collect();
        assert_eq!(rows[0].json(), br#"{"id":1,"name":1}"#);
        assert_eq!(rows[1].json(), br#"{"id":1,"name":null}"#);
        assert_eq!(rows[1].undecodable(), Some(("name", &bad)));
        assert_eq!(rows[2].undecodable(), None);
    }

    #[test]
    fn text_that_is_not_utf8_shows_its_bytes_escaped() {
        let key = NotUtf8::new(b"K\xff\xfeA");
        assert_eq!(key.escaped(), r"K\xff\xfeA");
        assert_eq!(key.to_string(), r#"byte 0xff at offset 1: "K\xff\xfeA""#);
        // A lone continuation byte first is shown, not skipped.
        let first = NotUtf8::new(b"\x80abc");
        assert_eq!(first.to_string(), r#"byte 0x80 at offset 0: "\x80abc""#);
        // Long text: the bytes around the first bad one, whole characters.
        let long = [&"é".repeat(40).into_bytes()[..], b"\xff!", &[b'x'; 40]].concat();
        assert_eq!(
            NotUtf8::new(&long).to_string(),
            format!(
                r#"byte 0xff at offset 80: "…{}\xff!{}…""#,
                "é".repeat(16),
                "x".repeat(30)
            )
        );
    }
}
