//! The change event: what the diff produces, transforms reshape and
//! destinations receive. It is the user-facing envelope from DESIGN.md,
//! `{"op","id","fields","previous","delivery_id"}`, and crosses into plugins as JSON bytes.
//! It is defined here, with the engine that carries it across, so the engine
//! needs nothing from the rest of Ebb; the pipeline uses it from here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object: a record's fields.
pub type Record = Map<String, Value>;

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
    pub fields: Record,
    /// The last record Ebb delivered for this key; `None` for `added`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub previous: Option<Record>,
    /// Names this change of this record: the same whenever the change is
    /// sent again, different for any other change, so a destination can
    /// de-duplicate by it. Empty until the run gives it one.
    #[serde(default)]
    pub delivery_id: String,
}
