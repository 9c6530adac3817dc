//! The keys a `[sources.NAME]` table may hold, and the ones every kind
//! reads alike, read as written. What only some kinds take is left in the
//! table for the source's kind to read.

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess};

use super::kind::SourceKind;
use super::ssh::RawSsh;

/// The keys every kind takes.
pub const COMMON: &[&str] = &[
    "kind",
    "url",
    "statement_timeout_secs",
    "connect_timeout_secs",
];

/// Every key a `[sources.NAME]` table may hold, whatever its kind, in the
/// order the parser's "unknown field" error lists them. A kind that brings
/// a key no other kind takes adds it here (a test checks each kind's keys
/// are listed).
pub const KEYS: &[&str] = &[
    "kind",
    "url",
    "init_sql",
    "statement_timeout_secs",
    "connect_timeout_secs",
    "account",
    "user",
    "private_key",
    "token",
    "warehouse",
    "database",
    "schema",
    "role",
    "project",
    "credentials",
    "location",
    "warehouse_id",
    "catalog",
    "ssh",
    "diff_schema",
];

/// `[sources.NAME]` as written: its kind and the keys every kind reads
/// alike (`ssh` too, which only the kinds reached over TCP take). The
/// kind's own keys are read from the source's table later, by the kind.
pub struct RawSource {
    pub kind: SourceKind,
    pub url: Option<String>,
    pub statement_timeout_secs: Option<u64>,
    pub connect_timeout_secs: Option<u64>,
    pub ssh: Option<RawSsh>,
}

/// Reads the keys every kind takes and refuses any no kind takes, like a
/// derived `Deserialize` with `deny_unknown_fields` over [`KEYS`] would
/// (so in the same words); the others are left for the kinds.
impl<'de> Deserialize<'de> for RawSource {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<RawSource, D::Error> {
        d.deserialize_struct("RawSource", KEYS, RawSourceVisitor)
    }
}

struct RawSourceVisitor;

impl<'de> de::Visitor<'de> for RawSourceVisitor {
    type Value = RawSource;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("struct RawSource")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSource, A::Error> {
        let mut kind = None;
        let (mut url, mut ssh) = (None, None);
        let (mut statement_timeout_secs, mut connect_timeout_secs) = (None, None);
        while let Some(key) = map.next_key_seed(Known)? {
            match key {
                "kind" => kind = Some(map.next_value()?),
                "url" => url = map.next_value()?,
                "statement_timeout_secs" => statement_timeout_secs = map.next_value()?,
                "connect_timeout_secs" => connect_timeout_secs = map.next_value()?,
                "ssh" => ssh = map.next_value()?,
                _ => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(RawSource {
            kind: kind.ok_or_else(|| de::Error::missing_field("kind"))?,
            url,
            statement_timeout_secs,
            connect_timeout_secs,
            ssh,
        })
    }
}

/// A key of [`KEYS`].
struct Known;

impl<'de> DeserializeSeed<'de> for Known {
    type Value = &'static str;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        let key = String::deserialize(d)?;
        KEYS.iter()
            .find(|k| **k == key)
            .copied()
            .ok_or_else(|| de::Error::unknown_field(&key, KEYS))
    }
}
