//! Extract: binds a model's template variables, checks the result's shape,
//! and turns each row into a keyed record within the limits.
//!
//! Template variables become numbered bind parameters, never text spliced
//! into SQL, so a value can never change what the query means.

use std::borrow::Cow;

use crate::config::{Model, SourceKind};
use crate::limits::Limits;
use crate::param::Param;
use crate::rows::{self, NotUtf8, RowRef};
use crate::source::single_query::single_query;
use crate::source::{self, BoundQuery, Column};
use crate::template::{self, Piece};

/// Why a model's query cannot be bound or its result cannot be a model's.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("model `{model}`: {why}")]
    Unclosed {
        model: String,
        why: template::Unclosed,
    },
    #[error(
        "model `{model}`: the query uses `{{{{cursor}}}}` but the model sets no `cursor` column"
    )]
    NoCursor { model: String },
    #[error(
        "model `{model}`: unknown template variable `{{{{{name}}}}}`; available: {}",
        Templates::NAMES.join(", ")
    )]
    UnknownTemplate { model: String, name: String },
    /// Not one `SELECT`: a second statement, or a statement of another
    /// kind.
    #[error("model `{model}`: {message}")]
    NotOneQuery { model: String, message: String },
    /// Too many columns, or names a record cannot have.
    #[error("model `{model}`: {message}")]
    Columns { model: String, message: String },
    #[error(
        "model `{model}`: {setting} `{column}` is not a column of the query (columns: {columns}); fix {setting} or select that column"
    )]
    MissingColumn {
        model: String,
        setting: &'static str,
        column: String,
        columns: String,
    },
}

/// Values a model query may reference as `{{name}}`.
pub struct Templates {
    /// Seconds since the epoch at the start of the last successful run.
    pub last_sync_time: i64,
    pub cursor: CursorTemplate,
}

/// What `{{cursor}}` becomes.
pub enum CursorTemplate {
    /// The model has no cursor column.
    Absent,
    /// The SQL literal `NULL`: how a query is described before the cursor
    /// column's type is known (Postgres cannot type a bare `$1 IS NULL`),
    /// and previewed as a first run would read it.
    NullLiteral,
    /// The highest value delivered, typed as the cursor column (a typed
    /// NULL before anything was delivered).
    Bound(Param),
}

/// One `{{…}}` of a query, once resolved.
enum Resolved {
    Param(Param),
    Sql(&'static str),
}

impl Templates {
    /// The values of a first run, for describing and previewing a query.
    pub fn first_run(model: &Model) -> Templates {
        Templates {
            last_sync_time: 0,
            cursor: match model.cursor {
                Some(_) => CursorTemplate::NullLiteral,
                None => CursorTemplate::Absent,
            },
        }
    }

    const NAMES: &'static [&'static str] = &["last_sync_time", "cursor"];

    fn value(&self, model: &Model, name: &str) -> Result<Resolved, ExtractError> {
        match name {
            "last_sync_time" => Ok(Resolved::Param(Param::int(self.last_sync_time))),
            "cursor" => match &self.cursor {
                CursorTemplate::Bound(p) => Ok(Resolved::Param(p.clone())),
                CursorTemplate::NullLiteral => Ok(Resolved::Sql("NULL")),
                CursorTemplate::Absent => Err(ExtractError::NoCursor {
                    model: model.name.clone(),
                }),
            },
            _ => Err(ExtractError::UnknownTemplate {
                model: model.name.clone(),
                name: name.to_string(),
            }),
        }
    }
}

/// Replaces each `{{name}}` with a placeholder and collects the values.
pub fn bind(
    model: &Model,
    kind: SourceKind,
    templates: &Templates,
) -> Result<BoundQuery, ExtractError> {
    let driver = source::driver(kind);
    let style = driver.placeholders();
    let mut sql = String::with_capacity(model.query.len());
    let mut params: Vec<(&str, Param)> = Vec::new();
    for piece in template::pieces(&model.query, kind.lexicon()) {
        let name = match piece.map_err(|why| ExtractError::Unclosed {
            model: model.name.clone(),
            why,
        })? {
            Piece::Text(text) => {
                sql.push_str(text);
                continue;
            }
            Piece::Template { name, .. } => name,
        };
        let value = match templates.value(model, name)? {
            Resolved::Param(p) => p,
            Resolved::Sql(literal) => {
                sql.push_str(literal);
                continue;
            }
        };
        let reuse = style
            .reusable()
            .then(|| params.iter().position(|(p, _)| *p == name))
            .flatten();
        let n = match reuse {
            Some(i) => i + 1,
            None => {
                params.push((name, value));
                params.len()
            }
        };
        sql.push_str(&style.write(n));
    }
    let sql = single_query(&sql, kind.lexicon()).map_err(|message| ExtractError::NotOneQuery {
        model: model.name.clone(),
        message,
    })?;
    Ok(BoundQuery {
        model: model.name.clone(),
        sql: sql.to_owned(),
        params: params.into_iter().map(|(_, v)| v).collect(),
    })
}

/// How a model reads its rows, which decides whether a run can see
/// deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading<'a> {
    /// Every row on every run: a key that is no longer returned was
    /// deleted.
    Full,
    /// Only rows changed since the last run, as the query's first template
    /// (`{{template}}` at 1-based `line`) asks: a row it leaves out is
    /// unchanged, not gone, so deletions cannot be seen.
    Incremental { template: &'a str, line: usize },
}

/// Whether `model` is incremental: its query uses a template in its SQL
/// (one in a comment or a string literal does not count, as it is not
/// bound either).
pub fn reading(model: &Model, kind: SourceKind) -> Reading<'_> {
    match template::templates(&model.query, kind.lexicon()).next() {
        None => Reading::Full,
        Some((template, at)) => Reading::Incremental {
            template,
            line: 1 + model.query[..at].matches('\n').count(),
        },
    }
}

/// Checks the query's columns before anything runs.
pub fn check_columns(
    model: &Model,
    columns: &[Column],
    limits: &Limits,
) -> Result<(), ExtractError> {
    let names = || columns.iter().map(|c| c.name.as_str());
    limits
        .check_columns(names())
        .map_err(|e| e.to_string())
        .and_then(|()| rows::check_names(names()).map_err(|e| e.to_string()))
        .map_err(|message| ExtractError::Columns {
            model: model.name.clone(),
            message,
        })?;
    let wanted = std::iter::once(("primary_key", &model.primary_key))
        .chain(model.cursor.as_ref().map(|c| ("cursor", c)));
    for (setting, column) in wanted {
        if !columns.iter().any(|c| &c.name == column) {
            return Err(ExtractError::MissingColumn {
                model: model.name.clone(),
                setting,
                column: column.clone(),
                columns: names().collect::<Vec<_>>().join(", "),
            });
        }
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
pub fn keyed<'a>(
    model: &Model,
    row: RowRef<'a>,
    limits: &Limits,
) -> Result<Cow<'a, str>, RowProblem> {
    if let Some((column, text)) = row.undecodable() {
        return Err(not_utf8(model, row, column, text));
    }
    let Some(key) = row.get(&model.primary_key).and_then(rows::key_text) else {
        return Err(RowProblem {
            key: String::new(),
            message: format!(
                "model `{}`: a row has a null `{}` (its primary key); rows without a key cannot be synced: {}",
                model.name,
                model.primary_key,
                truncate(&String::from_utf8_lossy(row.json()), 200)
            ),
        });
    };
    for (column, value) in row.columns() {
        if value.len() > limits.value_bytes {
            return Err(RowProblem {
                key: key.into_owned(),
                message: format!(
                    "column `{column}` holds {} bytes of JSON, over the limit of {}; trim it in the model or raise limits.value_bytes",
                    value.len(),
                    limits.value_bytes
                ),
            });
        }
    }
    let total = row.json().len();
    if total > limits.record_bytes {
        return Err(RowProblem {
            key: key.into_owned(),
            message: format!(
                "the record is {total} bytes of JSON, over the limit of {}; select fewer columns or raise limits.record_bytes",
                limits.record_bytes
            ),
        });
    }
    Ok(key)
}

/// The row error of a value that was text but not UTF-8. When that value
/// is the key, the key is its text with the bad bytes escaped.
fn not_utf8(model: &Model, row: RowRef<'_>, column: &str, text: &NotUtf8) -> RowProblem {
    let key = match column == model.primary_key {
        true => text.escaped(),
        false => row
            .get(&model.primary_key)
            .and_then(rows::key_text)
            .map(Cow::into_owned)
            .unwrap_or_default(),
    };
    RowProblem {
        key,
        message: format!(
            "model `{}`: column `{column}` holds text that is not valid UTF-8 ({text}), which JSON cannot carry; fix the data, or convert the column in the model's query (from the encoding it is really in, or to bytes, which Ebb sends as base64)",
            model.name
        ),
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
    use crate::rows::{Header, RowChunk};
    use serde_json::{Value, json};

    fn model(query: &str) -> Model {
        Model {
            name: "m".into(),
            source: "s".into(),
            primary_key: "id".into(),
            cursor: None,
            query: query.into(),
            diff: Default::default(),
        }
    }

    #[test]
    fn templates_become_numbered_parameters() {
        let t = Templates {
            last_sync_time: 42,
            cursor: CursorTemplate::Absent,
        };
        let q = bind(
            &model("SELECT * FROM t WHERE a > {{last_sync_time}} OR b > {{ last_sync_time }}"),
            SourceKind::Postgres,
            &t,
        )
        .unwrap();
        assert_eq!(q.sql, "SELECT * FROM t WHERE a > $1 OR b > $1");
        assert_eq!(q.params, [Param::int(42)]);
        let q = bind(
            &model("SELECT 1 WHERE x > {{last_sync_time}}"),
            SourceKind::Sqlite,
            &t,
        )
        .unwrap();
        assert_eq!(q.sql, "SELECT 1 WHERE x > ?1");

        let query = "SELECT * FROM t WHERE {{cursor}} IS NULL OR at > {{cursor}} AND b > {{last_sync_time}}";
        let described = bind(
            &model(query),
            SourceKind::Postgres,
            &Templates::first_run(&Model {
                cursor: Some("at".into()),
                ..model(query)
            }),
        )
        .unwrap();
        assert_eq!(
            described.sql,
            "SELECT * FROM t WHERE NULL IS NULL OR at > NULL AND b > $1"
        );
        assert_eq!(described.params, [Param::int(0)]);
        let high = Param {
            kind: crate::param::ParamKind::TimestampTz,
            value: Some("2024-05-01T00:00:00Z".into()),
        };
        let with_cursor = Templates {
            last_sync_time: 7,
            cursor: CursorTemplate::Bound(high.clone()),
        };
        let bound = bind(&model(query), SourceKind::Postgres, &with_cursor).unwrap();
        assert_eq!(
            bound.sql,
            "SELECT * FROM t WHERE $1 IS NULL OR at > $1 AND b > $2"
        );
        assert_eq!(bound.params, [high, Param::int(7)]);
        let refused = |query: &str| {
            bind(&model(query), SourceKind::Sqlite, &t)
                .unwrap_err()
                .to_string()
        };
        assert!(refused("{{cursor}}").contains("sets no `cursor` column"));
        assert!(refused("{{nope}}").contains("unknown template variable `{{nope}}`"));
        assert!(refused("{{last_sync_time").contains("closing"));
    }

    #[test]
    fn a_model_is_incremental_only_when_its_sql_uses_a_template() {
        let read = |query: &str| {
            let m = model(query);
            let r = reading(&m, SourceKind::Postgres);
            format!("{r:?}")
        };
        assert_eq!(read("SELECT * FROM t"), "Full");
        for commented in [
            "SELECT * FROM t -- WHERE at > {{last_sync_time}}",
            "SELECT * FROM t /* WHERE at >\n {{last_sync_time}} */",
            "SELECT '{{last_sync_time}}' AS s FROM t",
        ] {
            assert_eq!(read(commented), "Full", "{commented}");
        }
        assert_eq!(
            read("SELECT *\n-- {{cursor}}\nFROM t WHERE at > {{ last_sync_time }}"),
            r#"Incremental { template: "last_sync_time", line: 3 }"#
        );
        // A commented template is left as written, not bound.
        let t = Templates {
            last_sync_time: 1,
            cursor: CursorTemplate::Absent,
        };
        let q = bind(
            &model("SELECT 1 -- {{nope}}\nWHERE a > {{last_sync_time}}"),
            SourceKind::Sqlite,
            &t,
        )
        .unwrap();
        assert_eq!(q.sql, "SELECT 1 -- {{nope}}\nWHERE a > ?1");
    }

    #[test]
    fn keys_and_limits() {
        let m = model("");
        let limits = Limits {
            value_bytes: 20,
            record_bytes: 40,
            ..Limits::default()
        };
        let keyed = |v: Value| {
            let record = v.as_object().unwrap();
            let names = record.keys().cloned().collect();
            let mut chunk = RowChunk::new(Header::new(names).unwrap());
            chunk.push_record(record);
            keyed(&m, chunk.rows().next().unwrap(), &limits).map(Cow::into_owned)
        };
        assert_eq!(keyed(json!({"id": 7, "a": "x"})).unwrap(), "7");
        assert_eq!(keyed(json!({"id": "k"})).unwrap(), "k");
        assert!(
            keyed(json!({"id": null}))
                .unwrap_err()
                .message
                .contains("null `id`")
        );
        assert!(keyed(json!({"a": 1})).is_err());
        let e = keyed(json!({"id": 1, "big": "x".repeat(30)})).unwrap_err();
        assert!(e.key == "1" && e.message.contains("column `big`"), "{e:?}");
        let e = keyed(json!({"id": 1, "a": "x".repeat(15), "b": "y".repeat(15)})).unwrap_err();
        assert!(e.message.contains("record is"), "{e:?}");
    }

    #[test]
    fn text_that_is_not_utf8_is_a_row_problem_naming_key_and_column() {
        let mut chunk = RowChunk::new(Header::new(vec!["id".into(), "name".into()]).unwrap());
        for row in [[&b"7"[..], b"Jos\xe9"], [b"K\xff", b"ok"]] {
            let pushed: Result<(), std::convert::Infallible> = chunk.push_row(|i, out| {
                let text = std::str::from_utf8(row[i]).map_err(|_| NotUtf8::new(row[i]))?;
                let _ = serde_json::to_writer(out, text);
                Ok(())
            });
            let Ok(()) = pushed;
        }
        let problems: Vec<RowProblem> = chunk
            .rows()
            .map(|row| keyed(&model(""), row, &Limits::default()).unwrap_err())
            .collect();
        assert_eq!(problems[0].key, "7");
        assert!(
            problems[0].message.starts_with(
                r#"model `m`: column `name` holds text that is not valid UTF-8 (byte 0xe9 at offset 3: "Jos\xe9")"#
            ),
            "{:?}",
            problems[0]
        );
        assert_eq!(problems[1].key, r"K\xff");
        assert!(
            problems[1].message.contains("column `id`"),
            "{:?}",
            problems[1]
        );
    }
}
