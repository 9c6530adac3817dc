//! A destination's `config_schema`, compiled once at load and applied
//! before the plugin sees its config, so that every problem a JSON Schema
//! can describe is listed at once, each with the key it is about, and the
//! plugin's own `validate` only has to say what a schema cannot.
//!
//! Messages never quote the value they refuse: configs hold secrets.

use serde_json::Value;

/// A compiled `config_schema`.
pub struct ConfigSchema(jsonschema::Validator);

impl ConfigSchema {
    /// Compiles a spec's schema; the error says what is wrong with it.
    pub fn compile(schema: &Value) -> Result<ConfigSchema, String> {
        jsonschema::validator_for(schema)
            .map(ConfigSchema)
            .map_err(|e| format!("its config_schema is not a valid JSON Schema: {e}"))
    }

    /// Every way `config` breaks the schema, as `config.KEY: what is wrong`.
    pub fn problems(&self, config: &Value) -> Vec<String> {
        self.0
            .iter_errors(config)
            .map(|e| format!("{}: {}", key(&e.instance_path().to_string()), e.masked()))
            .collect()
    }
}

/// A JSON pointer into the config (`/headers/Authorization`) as the key it
/// names (`config.headers.Authorization`).
fn key(pointer: &str) -> String {
    let mut key = String::from("config");
    for segment in pointer.split('/').skip(1) {
        key.push('.');
        key.push_str(&segment.replace("~1", "/").replace("~0", "~"));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_problem_is_named_by_its_key_without_its_value() {
        let schema = ConfigSchema::compile(&json!({
            "type": "object",
            "required": ["write_key"],
            "properties": {
                "write_key": {"type": "string"},
                "batch": {"type": "object", "properties": {"size": {"type": "integer", "maximum": 500}}},
            },
            "additionalProperties": false,
        }))
        .unwrap();
        let problems =
            schema.problems(&json!({"batch": {"size": 900}, "wrte_key": "sk_live_secret"}));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("config: ") && p.contains("write_key")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("config.batch.size: ")),
            "{problems:?}"
        );
        assert!(
            problems.iter().all(|p| !p.contains("sk_live_secret")),
            "{problems:?}"
        );
        assert!(schema.problems(&json!({"write_key": "k"})).is_empty());
    }

    #[test]
    fn a_broken_schema_is_refused() {
        let err = ConfigSchema::compile(&json!({"type": "objekt"}))
            .err()
            .unwrap();
        assert!(err.contains("not a valid JSON Schema"), "{err}");
    }
}
