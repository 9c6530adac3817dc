//! A destination's self-description, parsed from the JSON its `spec()`
//! export returns.
//!
//! The WIT keeps the spec as JSON so fields can be added within 0.x without
//! a new world: unknown keys are ignored and everything but `name` and
//! `version` has a default, so older plugins keep loading.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Batch size used when a plugin does not declare one.
pub const DEFAULT_MAX_BATCH_RECORDS: usize = 100;
/// Batch byte size used when a plugin does not declare one.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    pub version: String,
    /// JSON Schema of the plugin's config; `{}` (anything) when absent.
    #[serde(default = "empty_object")]
    pub config_schema: Value,
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
    #[serde(default = "default_max_batch_records")]
    pub max_batch_records: usize,
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Hosts the plugin says it needs; the operator grants them in
    /// `allow_hosts`.
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSpec {
    pub name: String,
    /// A JSON type name such as `string`, `number`, `object`; `any` when
    /// absent.
    #[serde(default = "any_type")]
    pub r#type: String,
    #[serde(default)]
    pub required: bool,
}

impl Spec {
    /// Parses and checks a spec; the error says what is wrong with it.
    pub fn parse(json: &str) -> Result<Spec, String> {
        let spec: Spec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if spec.name.trim().is_empty() {
            return Err("`name` is empty".to_string());
        }
        if spec.max_batch_records == 0 || spec.max_batch_bytes == 0 {
            return Err("`max_batch_records` and `max_batch_bytes` must be at least 1".to_string());
        }
        for (i, action) in spec.actions.iter().enumerate() {
            if spec.actions[..i].iter().any(|a| a.name == action.name) {
                return Err(format!("action `{}` is declared twice", action.name));
            }
        }
        Ok(spec)
    }

    pub fn action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }
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

fn any_type() -> String {
    "any".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
                    {"name": "plan"}
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
        assert_eq!(upsert.fields[0].r#type, "string");
        assert!(upsert.fields[0].required);
        assert_eq!(upsert.fields[1].r#type, "any");
        assert!(!upsert.fields[1].required);
        assert!(spec.action("delete").unwrap().fields.is_empty());
        assert!(spec.action("merge").is_none());
        assert_eq!(spec.max_batch_records, 500);
        assert_eq!(spec.hosts, ["api.crm.example"]);
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
                "twice",
            ),
            ("not json", "expected"),
        ] {
            let err = Spec::parse(json).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
    }
}
