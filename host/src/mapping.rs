//! Mapping: turns an event's fields into the destination action's payload.
//!
//! `mapping = { "traits.email" = "email", "source" = { static = "warehouse" } }`
//! Each key is a target path (dots nest objects); each value names a source
//! path or gives a static value. A source path's dots reach into nested
//! objects, and a numeric segment picks an array's element (`meta.tags.0`);
//! on an object a numeric segment is a key like any other. A whole object or
//! array is copied as is. A source missing from a record (or an index past
//! an array's end) leaves its target out rather than inventing a null.
//!
//! Fields not mentioned are left out, unless `"*" = "*"` copies every field
//! of the record to the top level first. `{ ignore = true }` then takes a
//! path out of what is sent (`"internal_notes" = { ignore = true }`), so a
//! sync can send "everything but"; without the pass-through it states that
//! a field is deliberately not sent, and prunes inside a mapped object.
//! Target paths cannot index arrays: `"tags.0"` would have to invent the
//! elements before it, so it is refused.

use std::collections::HashSet;

use serde_json::Value;

use crate::event::Record;

/// The key that, with the value `"*"`, copies every field through.
const EVERYTHING: &str = "*";

#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    rules: Vec<Rule>,
    /// `"*" = "*"`: every field of the record goes to the top level first.
    pass_through: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    target: Vec<String>,
    value: Source,
}

/// What is wrong with a sync's `mapping`: the target (key) it is about and
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MappingError {
    pub target: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Field(String),
    Static(Value),
    /// `{ ignore = true }`: this path is never sent.
    Ignore,
}

/// A source path as the user wrote it, and the target it fills.
pub struct Read<'a> {
    pub target: String,
    pub source: &'a str,
}

impl Mapping {
    pub fn parse(table: &toml::Table) -> Result<Mapping, MappingError> {
        let mut rules = Vec::with_capacity(table.len());
        let mut pass_through = false;
        for (target, spec) in table {
            let refuse = |message: String| MappingError {
                target: target.clone(),
                message,
            };
            if target == EVERYTHING {
                if spec.as_str() != Some(EVERYTHING) {
                    return Err(refuse(
                        "the pass-through is written \"*\" = \"*\": every field of the record, at the top level".into(),
                    ));
                }
                pass_through = true;
                continue;
            }
            let target_path = path(target).map_err(refuse)?;
            let value = match spec {
                toml::Value::String(field) if field == EVERYTHING => {
                    return Err(refuse(
                        "\"*\" is only a source in the pass-through \"*\" = \"*\"; name a field here"
                            .into(),
                    ));
                }
                toml::Value::String(field) => Source::Field(field.clone()),
                toml::Value::Table(t) if t.len() == 1 && t.contains_key("static") => {
                    Source::Static(
                        serde_json::to_value(&t["static"]).map_err(|e| refuse(e.to_string()))?,
                    )
                }
                toml::Value::Table(t)
                    if t.len() == 1 && matches!(t.get("column"), Some(toml::Value::String(_))) =>
                {
                    Source::Field(t["column"].as_str().unwrap_or_default().to_string())
                }
                toml::Value::Table(t) if t.len() == 1 && t.contains_key("ignore") => {
                    if t["ignore"].as_bool() != Some(true) {
                        return Err(refuse(
                            "the only form is { ignore = true }; to send the field, map it instead"
                                .into(),
                        ));
                    }
                    Source::Ignore
                }
                _ => {
                    return Err(refuse(
                        "expected a source path (\"email\", \"meta.tags.0\"), { column = \"email\" }, { static = … } or { ignore = true }".into(),
                    ));
                }
            };
            if let Source::Field(field) = &value
                && field.split('.').any(str::is_empty)
            {
                return Err(refuse(format!("source `{field}` has an empty segment")));
            }
            rules.push(Rule {
                target: target_path,
                value,
            });
        }
        overlaps(&rules)?;
        Ok(Mapping {
            rules,
            pass_through,
        })
    }

    /// The source paths the mapping reads, with their targets.
    pub fn reads(&self) -> impl Iterator<Item = Read<'_>> {
        self.rules.iter().filter_map(|r| match &r.value {
            Source::Field(f) => Some(Read {
                target: r.target.join("."),
                source: f.as_str(),
            }),
            Source::Static(_) | Source::Ignore => None,
        })
    }

    /// The paths `{ ignore = true }` takes out.
    pub fn ignored(&self) -> impl Iterator<Item = String> {
        self.rules
            .iter()
            .filter(|r| r.value == Source::Ignore)
            .map(|r| r.target.join("."))
    }

    /// The top-level names its mapped targets (not the pass-through) fill.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .filter(|r| r.value != Source::Ignore)
            .map(|r| r.target[0].as_str())
    }

    /// The top-level names of the payload it can produce from records
    /// whose top-level names are `fields`; `None` when that depends on
    /// fields not known (a pass-through of unknown fields).
    pub fn produces<'a>(&'a self, fields: Option<&'a [String]>) -> Option<HashSet<&'a str>> {
        let mut produced: HashSet<&str> = match (self.pass_through, fields) {
            (false, _) => HashSet::new(),
            (true, Some(fields)) => fields.iter().map(String::as_str).collect(),
            (true, None) => return None,
        };
        produced.extend(self.targets());
        for rule in &self.rules {
            if let (Source::Ignore, [only]) = (&rule.value, rule.target.as_slice()) {
                produced.remove(only.as_str());
            }
        }
        Some(produced)
    }

    /// The payload: with a pass-through every field first, then each
    /// mapped target, then the ignored paths taken out.
    pub fn apply(&self, fields: &Record) -> Record {
        let mut out = if self.pass_through {
            fields.clone()
        } else {
            Record::new()
        };
        for rule in &self.rules {
            let value = match &rule.value {
                Source::Static(v) => Some(v.clone()),
                Source::Field(f) => lookup(fields, f).cloned(),
                Source::Ignore => None,
            };
            if let Some(v) = value {
                insert(&mut out, &rule.target, v);
            }
        }
        for rule in self.rules.iter().filter(|r| r.value == Source::Ignore) {
            remove(&mut out, &rule.target);
        }
        out
    }
}

/// `target` as a key of the `mapping` table: bare when TOML allows it.
pub fn key(target: &str) -> String {
    let bare = !target.is_empty()
        && target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        target.to_string()
    } else {
        format!("{target:?}")
    }
}

/// A target path's segments: none empty, none an array index, no `*`.
fn path(target: &str) -> Result<Vec<String>, String> {
    let segments: Vec<String> = target.split('.').map(str::to_string).collect();
    if segments.iter().any(String::is_empty) {
        return Err("a target path cannot have empty segments".into());
    }
    if segments.iter().any(|s| s == EVERYTHING) {
        return Err("`*` stands alone: \"*\" = \"*\" copies every field to the top level".into());
    }
    if let Some(numeric) = segments.iter().find(|s| index(s).is_some()) {
        return Err(format!(
            "a target path cannot index an array (`{numeric}`): map the whole array, or give the element a name (\"first_tag\" = \"tags.0\")"
        ));
    }
    Ok(segments)
}

/// Refuses two rules where one would overwrite the other. An ignore may
/// prune inside a mapped value (`"meta" = "meta"`, `"meta.secret"`
/// ignored), never take out a mapped target whole.
fn overlaps(rules: &[Rule]) -> Result<(), MappingError> {
    for (i, a) in rules.iter().enumerate() {
        for b in &rules[i + 1..] {
            let n = a.target.len().min(b.target.len());
            if a.target[..n] != b.target[..n] {
                continue;
            }
            let prunes = |value: &Rule, ignore: &Rule| {
                value.value != Source::Ignore
                    && ignore.value == Source::Ignore
                    && value.target.len() < ignore.target.len()
            };
            if prunes(a, b) || prunes(b, a) {
                continue;
            }
            return Err(MappingError {
                target: b.target.join("."),
                message: format!(
                    "overlaps `{}`: one would overwrite or take out the other",
                    a.target.join(".")
                ),
            });
        }
    }
    Ok(())
}

/// A segment that reads as an array index.
fn index(segment: &str) -> Option<usize> {
    if segment.bytes().all(|b| b.is_ascii_digit()) {
        segment.parse().ok()
    } else {
        None
    }
}

/// A field by exact name first (columns may contain dots), then by path:
/// a segment is an object's key, or an array's index when it is a number.
fn lookup<'a>(fields: &'a Record, path: &str) -> Option<&'a Value> {
    if let Some(v) = fields.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = fields.get(parts.next()?)?;
    for part in parts {
        cur = match cur {
            Value::Object(o) => o.get(part)?,
            Value::Array(a) => a.get(index(part)?)?,
            _ => return None,
        };
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

/// Takes `path` out of `out`, if every object on the way is there.
fn remove(out: &mut Record, path: &[String]) {
    let (last, parents) = path.split_last().expect("target paths are never empty");
    let mut cur = out;
    for p in parents {
        match cur.get_mut(p) {
            Some(Value::Object(o)) => cur = o,
            _ => return,
        }
    }
    cur.remove(last);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(toml_text: &str) -> Result<Mapping, String> {
        Mapping::parse(&toml::from_str(toml_text).unwrap())
            .map_err(|e| format!("{}: {}", e.target, e.message))
    }

    fn apply(m: &Mapping, fields: Value) -> Value {
        Value::Object(m.apply(fields.as_object().unwrap()))
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
        assert_eq!(
            apply(&m, fields),
            json!({"traits": {"email": "a@x", "city": "Oslo"}, "source": "warehouse", "plan": "pro",
                   "whole": {"city": "Oslo", "zip": "0150"}})
        );
        let mut sources: Vec<_> = m.reads().map(|r| (r.target, r.source)).collect();
        sources.sort();
        assert_eq!(
            sources,
            [
                ("gone".to_string(), "missing"),
                ("plan".into(), "plan"),
                ("traits.city".into(), "address.city"),
                ("traits.email".into(), "email"),
                ("whole".into(), "address"),
            ]
        );
    }

    #[test]
    fn numeric_segments_index_arrays_and_name_object_keys() {
        let m = mapping(
            r#"
            "first_tag" = "meta.tags.0"
            "third_tag" = "meta.tags.2"
            "sku" = "items.1.sku"
            "zero" = "meta.by_number.0"
            "deep" = "meta.tags.0.x"
            "#,
        )
        .unwrap();
        let fields = json!({
            "meta": {"tags": ["vip", "beta"], "by_number": {"0": "zeroth"}},
            "items": [{"sku": "A"}, {"sku": "B"}],
        });
        assert_eq!(
            apply(&m, fields),
            json!({"first_tag": "vip", "sku": "B", "zero": "zeroth"})
        );
    }

    #[test]
    fn pass_through_sends_everything_but_the_ignored() {
        let m = mapping(
            r#"
            "*" = "*"
            "internal_notes" = { ignore = true }
            "meta.secret" = { ignore = true }
            "traits.email" = "email"
            "email" = { ignore = true }
            "#,
        )
        .unwrap();
        let fields = json!({"id": 1, "email": "a@x", "internal_notes": "n",
                            "meta": {"secret": "s", "tier": 2}});
        assert_eq!(
            apply(&m, fields),
            json!({"id": 1, "meta": {"tier": 2}, "traits": {"email": "a@x"}})
        );
        let columns = ["id", "email", "internal_notes", "meta"].map(String::from);
        let mut produced: Vec<_> = m.produces(Some(&columns)).unwrap().into_iter().collect();
        produced.sort();
        assert_eq!(produced, ["id", "meta", "traits"]);
        assert_eq!(m.produces(None), None);
        let mut ignored: Vec<_> = m.ignored().collect();
        ignored.sort();
        assert_eq!(ignored, ["email", "internal_notes", "meta.secret"]);
    }

    #[test]
    fn ignore_without_pass_through_prunes_a_mapped_object() {
        let m = mapping(
            r#"
            "attributes" = "meta"
            "attributes.secret" = { ignore = true }
            "internal_notes" = { ignore = true }
            "#,
        )
        .unwrap();
        let fields = json!({"internal_notes": "n", "meta": {"secret": "s", "tier": 2}});
        assert_eq!(apply(&m, fields), json!({"attributes": {"tier": 2}}));
        let produced: Vec<_> = m.produces(None).unwrap().into_iter().collect();
        assert_eq!(produced, ["attributes"]);
    }

    #[test]
    fn rejects_bad_specs() {
        let refused = |text: &str, target: &str, says: &str| {
            let e = mapping(text).unwrap_err();
            assert!(
                e.starts_with(&format!("{target}: ")) && e.contains(says),
                "{text}: {e}"
            );
        };
        refused(r#""a" = 3"#, "a", "expected a source path");
        refused(r#""a..b" = "x""#, "a..b", "empty segments");
        refused(r#""a" = "x..y""#, "a", "empty segment");
        refused("\"a\" = \"x\"\n\"a.b\" = \"y\"", "a.b", "overlaps `a`");
        refused(r#""tags.0" = "x""#, "tags.0", "cannot index an array (`0`)");
        refused(r#""a" = { ignore = false }"#, "a", "{ ignore = true }");
        refused(r#""*" = "email""#, "*", "\"*\" = \"*\"");
        refused(r#""all" = "*""#, "all", "pass-through");
        refused(r#""traits.*" = "x""#, "traits.*", "stands alone");
        refused(
            "\"traits\" = { ignore = true }\n\"traits.email\" = \"email\"",
            "traits.email",
            "overlaps `traits`",
        );
    }

    #[test]
    fn keys_are_quoted_when_toml_needs_it() {
        assert_eq!(key("email"), "email");
        assert_eq!(key("traits.email"), "\"traits.email\"");
    }
}
