//! What a destination declares about itself, serialised to the JSON the
//! `spec` export returns: the host checks configs, mappings and batch sizes
//! against it before sending anything.

use serde::Serialize;
use serde_json::{Value, json};

/// A destination's self-description.
///
/// Start from [`Spec::new`] and override what differs:
/// `Spec { actions: vec![..], ..Spec::new("crm", env!("CARGO_PKG_VERSION")) }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    pub name: String,
    pub version: String,
    /// A JSON Schema for the plugin's config.
    pub config_schema: Value,
    pub actions: Vec<Action>,
    /// The most events the host puts in one `write` call.
    pub max_batch_records: u32,
    /// The most bytes of event JSON the host puts in one `write` call.
    pub max_batch_bytes: u64,
    /// `host:port` pairs the plugin wants to reach; the operator grants them.
    pub hosts: Vec<String>,
}

impl Spec {
    /// A spec with no actions, an open config schema, batches of at most 100
    /// events and 1 MiB, and no hosts.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Spec {
            name: name.into(),
            version: version.into(),
            config_schema: json!({ "type": "object" }),
            actions: Vec::new(),
            max_batch_records: 100,
            max_batch_bytes: 1 << 20,
            hosts: Vec::new(),
        }
    }
}

/// Something a destination can do with an event, such as `upsert`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub name: String,
    pub description: String,
    /// The fields a sync's mapping may fill.
    pub fields: Vec<Field>,
}

impl Action {
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Action {
            name: name.into(),
            description: description.into(),
            fields: Vec::new(),
        }
    }

    pub fn field(mut self, name: impl Into<String>, kind: FieldType, required: bool) -> Self {
        self.fields.push(Field {
            name: name.into(),
            kind,
            required,
        });
        self
    }
}

/// One field of an action's payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    pub required: bool,
}

/// The JSON type a field expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
    /// Any JSON value.
    Any,
}
