//! Mapping: turns an event's fields into the destination action's payload.
//!
//! `mapping = { "traits.email" = "email", "source" = { static = "warehouse" } }`
//! Each key is a target path (dots nest objects); each value names a source
//! field (dots reach into nested objects; a whole object or array is copied as
//! is) or gives a static value. Fields not mentioned are left out. A source
//! missing from a record leaves its target out rather than inventing a null.

use serde_json::Value;

use crate::event::Record;

#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    target: Vec<String>,
    value: Source,
}

/// What is wrong with a sync's `mapping`, naming the target it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("`{0}`: a target path cannot have empty segments")]
    EmptySegment(String),
    #[error("`{target}`: {message}")]
    Static { target: String, message: String },
    #[error(
        "`{0}`: expected a column name (\"email\"), {{ column = \"email\" }} or {{ static = … }}"
    )]
    Unknown(String),
    #[error("`{0}` and `{1}` overlap: one would overwrite the other")]
    Overlap(String, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Field(String),
    Static(Value),
}

impl Mapping {
    pub fn parse(table: &toml::Table) -> Result<Mapping, MappingError> {
        let mut rules = Vec::with_capacity(table.len());
        for (target, spec) in table {
            let path: Vec<String> = target.split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(MappingError::EmptySegment(target.clone()));
            }
            let value = match spec {
                toml::Value::String(field) => Source::Field(field.clone()),
                toml::Value::Table(t) if t.len() == 1 && t.contains_key("static") => {
                    Source::Static(serde_json::to_value(&t["static"]).map_err(|e| {
                        MappingError::Static {
                            target: target.clone(),
                            message: e.to_string(),
                        }
                    })?)
                }
                toml::Value::Table(t)
                    if t.len() == 1 && matches!(t.get("column"), Some(toml::Value::String(_))) =>
                {
                    Source::Field(t["column"].as_str().unwrap_or_default().to_string())
                }
                _ => {
                    return Err(MappingError::Unknown(target.clone()));
                }
            };
            rules.push(Rule {
                target: path,
                value,
            });
        }
        for (i, a) in rules.iter().enumerate() {
            for b in &rules[i + 1..] {
                let n = a.target.len().min(b.target.len());
                if a.target[..n] == b.target[..n] {
                    return Err(MappingError::Overlap(
                        a.target.join("."),
                        b.target.join("."),
                    ));
                }
            }
        }
        Ok(Mapping { rules })
    }

    /// The source fields (names or dot paths) the mapping reads.
    pub fn source_fields(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().filter_map(|r| match &r.value {
            Source::Field(f) => Some(f.as_str()),
            Source::Static(_) => None,
        })
    }

    /// The top-level names of the payload it produces.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.target[0].as_str())
    }

    pub fn apply(&self, fields: &Record) -> Record {
        let mut out = Record::new();
        for rule in &self.rules {
            let value = match &rule.value {
                Source::Static(v) => Some(v.clone()),
                Source::Field(f) => lookup(fields, f).cloned(),
            };
            if let Some(v) = value {
                insert(&mut out, &rule.target, v);
            }
        }
        out
    }
}

/// A field by exact name first (columns may contain dots), then by path.
fn lookup<'a>(fields: &'a Record, path: &str) -> Option<&'a Value> {
    if let Some(v) = fields.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = fields.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

fn insert(out: &mut Record, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("target paths are never empty");
    let mut cur = out;
    for p in parents {
        let slot = cur
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Record::new()));
        if !slot.is_object() {
            *slot = Value::Object(Record::new());
        }
        cur = slot.as_object_mut().expect("just made an object");
    }
    cur.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(toml_text: &str) -> Result<Mapping, String> {
        Mapping::parse(&toml::from_str(toml_text).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn maps_columns_statics_and_nested_paths() {
        let m = mapping(
            r#"
            "traits.email" = "email"
            "traits.city" = "address.city"
            "source" = { static = "warehouse" }
            "plan" = { column = "plan" }
            "whole" = "address"
            "gone" = "missing"
            "#,
        )
        .unwrap();
        let fields =
            json!({"email": "a@x", "plan": "pro", "address": {"city": "Oslo", "zip": "0150"}});
        let out = m.apply(fields.as_object().unwrap());
        assert_eq!(
            Value::Object(out),
            json!({"traits": {"email": "a@x", "city": "Oslo"}, "source": "warehouse", "plan": "pro",
                   "whole": {"city": "Oslo", "zip": "0150"}})
        );
        let mut sources: Vec<_> = m.source_fields().collect();
        sources.sort();
        assert_eq!(
            sources,
            ["address", "address.city", "email", "missing", "plan"]
        );
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(
            mapping(r#""a" = 3"#)
                .unwrap_err()
                .contains("expected a column name")
        );
        assert!(
            mapping(r#""a..b" = "x""#)
                .unwrap_err()
                .contains("empty segments")
        );
        assert!(
            mapping("\"a\" = \"x\"\n\"a.b\" = \"y\"")
                .unwrap_err()
                .contains("overlap")
        );
    }
}
