//! The change event: what the diff produces, transforms reshape and
//! destinations receive. It is the user-facing envelope from DESIGN.md,
//! `{"op","id","fields","previous","delivery_id"}`, and crosses into plugins as JSON bytes.
//! It is defined here, with the engine that carries it across, so the engine
//! needs nothing from the rest of Ebb; the pipeline uses it from here.
//!
//! An event's records are kept as their JSON text ([`Fields`]): they arrive
//! as JSON (extracted, read from the snapshot, returned by a plugin) and
//! leave as JSON (into a plugin, the state store, an API answer), so most
//! events are never parsed on the host at all. What reads or changes the
//! fields (a mapping, `ebb plan`'s diff) parses them itself.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A JSON object: a record's fields.
pub type Record = Map<String, Value>;

/// A record as the text of a JSON object, checked once when made.
#[derive(Debug, Clone)]
pub struct Fields(Box<RawValue>);

/// Text that is not a JSON object.
#[derive(Debug, thiserror::Error)]
pub enum NotObject {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("a JSON {0}, not an object")]
    Other(&'static str),
}

impl Fields {
    /// The fields of `text`, which must be one JSON object.
    pub fn from_json(text: String) -> Result<Fields, NotObject> {
        Fields::checked(RawValue::from_string(text)?)
    }

    /// [`Fields::from_json`] of bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Fields, NotObject> {
        match String::from_utf8(bytes) {
            Ok(text) => Fields::from_json(text),
            // Parsing says where the bytes stop being text.
            Err(e) => Err(serde_json::from_slice::<&RawValue>(e.as_bytes())
                .err()
                .map_or(NotObject::Other("non-UTF-8 text"), NotObject::Json)),
        }
    }

    fn checked(raw: Box<RawValue>) -> Result<Fields, NotObject> {
        match raw.get().as_bytes().first() {
            Some(b'{') => Ok(Fields(raw)),
            Some(b'[') => Err(NotObject::Other("array")),
            Some(b'"') => Err(NotObject::Other("string")),
            Some(b't' | b'f') => Err(NotObject::Other("boolean")),
            Some(b'n') => Err(NotObject::Other("null")),
            _ => Err(NotObject::Other("number")),
        }
    }

    /// The fields of a record.
    pub fn of(record: &Record) -> Fields {
        let raw = serde_json::value::to_raw_value(record)
            .expect("a JSON object with string keys always serialises");
        Fields(raw)
    }

    /// No fields: `{}`.
    pub fn empty() -> Fields {
        Fields::of(&Record::new())
    }

    /// The record, parsed.
    pub fn record(&self) -> Record {
        serde_json::from_str(self.0.get()).expect("checked to be a JSON object when made")
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.json() == other.json() || self.record() == other.record()
    }
}

impl From<Record> for Fields {
    fn from(record: Record) -> Fields {
        Fields::of(&record)
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fields, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Fields::checked(raw).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Added,
    Updated,
    Deleted,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Added => "added",
            Op::Updated => "updated",
            Op::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "added" => Some(Op::Added),
            "updated" => Some(Op::Updated),
            "deleted" => Some(Op::Deleted),
            _ => None,
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub op: Op,
    /// The record's primary key, as text.
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub fields: Fields,
    /// The last record Ebb delivered for this key; `None` for `added`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub previous: Option<Fields>,
    /// Names this change of this record: the same whenever the change is
    /// sent again, different for any other change, so a destination can
    /// de-duplicate by it. Empty until the run gives it one.
    #[serde(default)]
    pub delivery_id: String,
}
