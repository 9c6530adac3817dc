//! Extract: binds a model's template variables, checks the result's shape,
//! and turns each row into a keyed record within the limits.
//!
//! Template variables become numbered bind parameters, never text spliced
//! into SQL, so a value can never change what the query means.

use serde_json::Value;

use crate::config::{Model, SourceKind};
use crate::event::Record;
use crate::limits::Limits;
use crate::source::{BoundQuery, Warehouse};

/// Values a model query may reference as `{{name}}`.
pub struct Templates {
    pub last_sync_time: i64,
}

impl Templates {
    const NAMES: &'static [&'static str] = &["last_sync_time"];

    fn value(&self, name: &str) -> Option<i64> {
        match name {
            "last_sync_time" => Some(self.last_sync_time),
            _ => None,
        }
    }
}

/// Replaces each `{{name}}` with a placeholder and collects the values.
pub fn bind(model: &Model, kind: SourceKind, templates: &Templates) -> Result<BoundQuery, String> {
    let mut sql = String::with_capacity(model.query.len());
    let mut params: Vec<(String, i64)> = Vec::new();
    let mut rest = model.query.as_str();
    while let Some(start) = rest.find("{{") {
        sql.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            format!(
                "model `{}`: `{{{{` without a closing `}}}}` in the query",
                model.name
            )
        })?;
        let name = after[..end].trim();
        let value = templates.value(name).ok_or_else(|| {
            format!(
                "model `{}`: unknown template variable `{{{{{name}}}}}`; available: {}",
                model.name,
                Templates::NAMES.join(", ")
            )
        })?;
        let n = match params.iter().position(|(p, _)| p == name) {
            Some(i) => i + 1,
            None => {
                params.push((name.to_string(), value));
                params.len()
            }
        };
        sql.push_str(&Warehouse::placeholder(kind, n));
        rest = &after[end + 2..];
    }
    sql.push_str(rest);
    Ok(BoundQuery {
        model: model.name.clone(),
        sql,
        params: params.into_iter().map(|(_, v)| v).collect(),
    })
}

/// A model that only returns rows changed since the last run cannot reveal
/// deletions: a row it leaves out is unchanged, not gone.
pub fn is_incremental(model: &Model) -> bool {
    model.query.contains("{{")
}

/// Checks the query's columns before anything runs.
pub fn check_columns(model: &Model, columns: &[String], limits: &Limits) -> Result<(), String> {
    limits
        .check_columns(columns.iter().map(String::as_str))
        .map_err(|e| format!("model `{}`: {e}", model.name))?;
    if !columns.iter().any(|c| c == &model.primary_key) {
        return Err(format!(
            "model `{}`: primary_key `{}` is not a column of the query (columns: {}); fix primary_key or select that column",
            model.name,
            model.primary_key,
            columns.join(", ")
        ));
    }
    Ok(())
}

/// A row that cannot take part in the sync.
#[derive(Debug, Clone, PartialEq)]
pub struct RowProblem {
    /// The row's key as far as it is known ("" when the key itself is bad).
    pub key: String,
    pub message: String,
}

/// The row's primary key as text, and the row checked against the limits.
pub fn keyed(model: &Model, record: &Record, limits: &Limits) -> Result<String, RowProblem> {
    let key = match record.get(&model.primary_key) {
        None | Some(Value::Null) => {
            return Err(RowProblem {
                key: String::new(),
                message: format!(
                    "model `{}`: a row has a null `{}` (its primary key); rows without a key cannot be synced: {}",
                    model.name,
                    model.primary_key,
                    truncate(&Value::Object(record.clone()).to_string(), 200)
                ),
            });
        }
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let mut total = 2;
    for (column, value) in record {
        let size = json_len(value);
        if size > limits.value_bytes {
            return Err(RowProblem {
                key,
                message: format!(
                    "column `{column}` holds {size} bytes of JSON, over the limit of {}; trim it in the model or raise limits.value_bytes",
                    limits.value_bytes
                ),
            });
        }
        total += column.len() + 4 + size;
    }
    if total > limits.record_bytes {
        return Err(RowProblem {
            key,
            message: format!(
                "the record is {total} bytes of JSON, over the limit of {}; select fewer columns or raise limits.record_bytes",
                limits.record_bytes
            ),
        });
    }
    Ok(key)
}

fn json_len(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Null => 4,
        Value::Bool(_) | Value::Number(_) => v.to_string().len(),
        _ => serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX),
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(query: &str) -> Model {
        Model {
            name: "m".into(),
            source: "s".into(),
            primary_key: "id".into(),
            query: query.into(),
        }
    }

    #[test]
    fn templates_become_numbered_parameters() {
        let t = Templates { last_sync_time: 42 };
        let q = bind(
            &model("SELECT * FROM t WHERE a > {{last_sync_time}} OR b > {{ last_sync_time }}"),
            SourceKind::Postgres,
            &t,
        )
        .unwrap();
        assert_eq!(q.sql, "SELECT * FROM t WHERE a > $1 OR b > $1");
        assert_eq!(q.params, [42]);
        let q = bind(
            &model("SELECT 1 WHERE x > {{last_sync_time}}"),
            SourceKind::Sqlite,
            &t,
        )
        .unwrap();
        assert_eq!(q.sql, "SELECT 1 WHERE x > ?1");
        assert!(
            bind(&model("{{nope}}"), SourceKind::Sqlite, &t)
                .unwrap_err()
                .contains("unknown template variable `{{nope}}`")
        );
        assert!(
            bind(&model("{{last_sync_time"), SourceKind::Sqlite, &t)
                .unwrap_err()
                .contains("closing")
        );
    }

    #[test]
    fn keys_and_limits() {
        let m = model("");
        let limits = Limits {
            value_bytes: 20,
            record_bytes: 40,
            ..Limits::default()
        };
        let rec = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            keyed(&m, &rec(json!({"id": 7, "a": "x"})), &limits).unwrap(),
            "7"
        );
        assert_eq!(keyed(&m, &rec(json!({"id": "k"})), &limits).unwrap(), "k");
        assert!(
            keyed(&m, &rec(json!({"id": null})), &limits)
                .unwrap_err()
                .message
                .contains("null `id`")
        );
        let e = keyed(&m, &rec(json!({"id": 1, "big": "x".repeat(30)})), &limits).unwrap_err();
        assert!(e.key == "1" && e.message.contains("column `big`"), "{e:?}");
        let e = keyed(
            &m,
            &rec(json!({"id": 1, "a": "x".repeat(15), "b": "y".repeat(15)})),
            &limits,
        )
        .unwrap_err();
        assert!(e.message.contains("record is"), "{e:?}");
    }
}
