//! What a destination declares about itself: the JSON its `spec` export
//! returns. The plugin builds and serialises it; the host parses and checks
//! it ([`Spec::parse`]) and holds configs, mappings and batch sizes to it
//! before sending anything. Both sides use this one definition, so the shape
//! cannot drift between them; it needs none of the guest side of the SDK.
//!
//! The WIT keeps the spec as JSON so fields can be added within 0.x without
//! a new world: unknown keys are ignored and everything but `name` and
//! `version` has a default, so older plugins keep loading.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Batch size used when a plugin does not declare one.
pub const DEFAULT_MAX_BATCH_RECORDS: usize = 100;
/// Batch byte size used when a plugin does not declare one.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1 << 20;

/// A destination's self-description.
///
/// Start from [`Spec::new`] and override what differs:
/// `Spec { actions: vec![..], ..Spec::new("crm", env!("CARGO_PKG_VERSION")) }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    pub version: String,
    /// A JSON Schema for the plugin's config; `{}` (anything) when absent.
    #[serde(default = "empty_object")]
    pub config_schema: Value,
    #[serde(default)]
    pub actions: Vec<Action>,
    /// The most events the host puts in one `write` call.
    #[serde(default = "default_max_batch_records")]
    pub max_batch_records: usize,
    /// The most bytes of event JSON the host puts in one `write` call.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// `host:port` pairs the plugin wants to reach; the operator grants them
    /// in `allow_hosts`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The vendor's published rate limit, which every sync to one
    /// destination shares; the operator's `rate` on the destination
    /// overrides it. `None`: no limit unless the operator sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// Requests and records per second a destination may be sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_sec: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_per_sec: Option<f64>,
}

impl Rate {
    /// At most `n` requests a second.
    pub fn requests(n: f64) -> Rate {
        Rate {
            requests_per_sec: Some(n),
            records_per_sec: None,
        }
    }

    /// Whether every limit it sets is a number above 0.
    pub fn is_valid(&self) -> bool {
        [self.requests_per_sec, self.records_per_sec]
            .into_iter()
            .flatten()
            .all(|n| n.is_finite() && n > 0.0)
    }
}

impl Spec {
    /// A spec with no actions, an object config schema, batches of at most
    /// 100 events and 1 MiB, and no hosts.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Spec {
            name: name.into(),
            version: version.into(),
            config_schema: json!({ "type": "object" }),
            actions: Vec::new(),
            max_batch_records: DEFAULT_MAX_BATCH_RECORDS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            hosts: Vec::new(),
            rate: None,
        }
    }

    /// Parses and checks a spec as a plugin returned it.
    pub fn parse(json: &str) -> Result<Spec, SpecError> {
        let spec: Spec = serde_json::from_str(json)?;
        if spec.name.trim().is_empty() {
            return Err(SpecError::EmptyName);
        }
        if spec.max_batch_records == 0 || spec.max_batch_bytes == 0 {
            return Err(SpecError::EmptyBatch);
        }
        if spec.rate.is_some_and(|rate| !rate.is_valid()) {
            return Err(SpecError::BadRate);
        }
        for (i, action) in spec.actions.iter().enumerate() {
            if spec.actions[..i].iter().any(|a| a.name == action.name) {
                return Err(SpecError::DuplicateAction(action.name.clone()));
            }
        }
        Ok(spec)
    }

    pub fn action(&self, name: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// Why a spec cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Not JSON, or not the shape above.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("`name` is empty")]
    EmptyName,
    #[error("`max_batch_records` and `max_batch_bytes` must be at least 1")]
    EmptyBatch,
    #[error("action `{0}` is declared twice")]
    DuplicateAction(String),
    #[error("`rate` limits must be numbers above 0")]
    BadRate,
}

/// Something a destination can do with an event, such as `upsert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The fields a sync's mapping may fill.
    #[serde(default)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
}

/// The JSON type a field expects; [`FieldType::Any`] when not declared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
    /// Any JSON value.
    #[default]
    Any,
    /// A type name not listed above, kept as written, so a plugin that
    /// declares one still loads.
    #[serde(untagged)]
    Other(String),
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn default_max_batch_records() -> usize {
    DEFAULT_MAX_BATCH_RECORDS
}

fn default_max_batch_bytes() -> usize {
    DEFAULT_MAX_BATCH_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec = Spec::parse(r#"{"name":"http","version":"0.1.0"}"#).unwrap();
        assert_eq!(spec.name, "http");
        assert_eq!(spec.config_schema, json!({}));
        assert!(spec.actions.is_empty());
        assert_eq!(spec.max_batch_records, DEFAULT_MAX_BATCH_RECORDS);
        assert_eq!(spec.max_batch_bytes, DEFAULT_MAX_BATCH_BYTES);
        assert!(spec.hosts.is_empty());
    }

    #[test]
    fn full_spec_round_trips() {
        let json = json!({
            "name": "crm", "version": "1.2.0",
            "config_schema": {"type": "object", "required": ["url"]},
            "actions": [
                {"name": "upsert", "description": "Create or update", "fields": [
                    {"name": "email", "type": "string", "required": true},
                    {"name": "plan"},
                    {"name": "born", "type": "date"}
                ]},
                {"name": "delete"}
            ],
            "max_batch_records": 500, "max_batch_bytes": 2048,
            "hosts": ["api.crm.example"],
            "future_key": true
        });
        let spec = Spec::parse(&json.to_string()).unwrap();
        let upsert = spec.action("upsert").unwrap();
        assert_eq!(upsert.description, "Create or update");
        assert_eq!(upsert.fields[0].kind, FieldType::String);
        assert!(upsert.fields[0].required);
        assert_eq!(upsert.fields[1].kind, FieldType::Any);
        assert!(!upsert.fields[1].required);
        assert_eq!(upsert.fields[2].kind, FieldType::Other("date".into()));
        assert!(spec.action("delete").unwrap().fields.is_empty());
        assert!(spec.action("merge").is_none());
        assert_eq!(spec.max_batch_records, 500);
        assert_eq!(spec.hosts, ["api.crm.example"]);
        let again = serde_json::to_string(&spec).unwrap();
        assert_eq!(Spec::parse(&again).unwrap(), spec);
        assert_eq!(
            serde_json::to_value(&upsert.fields[2]).unwrap(),
            json!({"name": "born", "type": "date", "required": false})
        );
    }

    #[test]
    fn what_the_builder_makes_parses() {
        let spec = Spec {
            actions: vec![Action::new("post", "send").field("email", FieldType::String, true)],
            ..Spec::new("webhook", "1.0.0")
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(Spec::parse(&json).unwrap(), spec);
    }

    #[test]
    fn broken_specs_are_explained() {
        for (json, why) in [
            (r#"{"version":"1"}"#, "missing field `name`"),
            (r#"{"name":" ","version":"1"}"#, "`name` is empty"),
            (
                r#"{"name":"x","version":"1","max_batch_records":0}"#,
                "at least 1",
            ),
            (
                r#"{"name":"x","version":"1","actions":[{"name":"a"},{"name":"a"}]}"#,
                "action `a` is declared twice",
            ),
            ("not json", "expected"),
        ] {
            let err = Spec::parse(json).unwrap_err().to_string();
            assert!(err.contains(why), "{json}: {err}");
        }
    }
}
