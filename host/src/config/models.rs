//! `[models.NAME]`: a query (inline or from a file) against a source, its
//! primary key, an optional cursor column, and where its changes are found.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::{Invalid, no_such};
use super::resolver::Resolver;
use super::sources::{Source, SourceKind};
use crate::limits::Limits;
use crate::template;

#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub source: String,
    pub primary_key: String,
    /// A column whose highest delivered value is bound as `{{cursor}}`.
    pub cursor: Option<String>,
    pub query: String,
    pub diff: DiffIn,
}

/// Where a model's changes are found (see docs/diff.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffIn {
    /// Ebb reads every row and compares it with the state store's snapshot.
    #[default]
    Engine,
    /// The warehouse compares the model with a snapshot in its own `_ebb`
    /// schema and only changed rows are read (Postgres sources).
    Warehouse,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    source: String,
    primary_key: String,
    cursor: Option<String>,
    query: Option<String>,
    query_file: Option<String>,
    #[serde(default)]
    diff: DiffIn,
}

pub fn resolve(
    raw: BTreeMap<String, RawModel>,
    sources: &BTreeMap<String, Source>,
    limits: &Limits,
    r: &Resolver,
) -> Result<BTreeMap<String, Model>, Invalid> {
    raw.into_iter()
        .map(|(name, m)| Ok((name.clone(), model(name, m, sources, limits, r)?)))
        .collect()
}

fn model(
    name: String,
    m: RawModel,
    sources: &BTreeMap<String, Source>,
    limits: &Limits,
    r: &Resolver,
) -> Result<Model, Invalid> {
    let key = format!("models.{name}");
    let Some(source) = sources.get(&m.source) else {
        return Err(Invalid::new(
            format!("{key}.source"),
            no_such("source", &m.source, sources.keys()),
        ));
    };
    if m.diff == DiffIn::Warehouse && source.kind != SourceKind::Postgres {
        return Err(Invalid::new(
            format!("{key}.diff"),
            format!(
                "\"warehouse\" needs a Postgres source, and `{}` is of kind {}; remove the line to diff in Ebb",
                m.source,
                format!("{:?}", source.kind).to_lowercase()
            ),
        ));
    }
    let query = match (m.query, m.query_file) {
        (Some(q), None) => q,
        (None, Some(f)) => {
            let p = r.existing_file(&format!("{key}.query_file"), &f)?;
            std::fs::read_to_string(&p).map_err(|e| {
                Invalid::new(
                    format!("{key}.query_file"),
                    format!("cannot read {}: {e}", p.display()),
                )
            })?
        }
        _ => {
            return Err(Invalid::new(
                key,
                "set exactly one of `query` and `query_file`",
            ));
        }
    };
    limits
        .check_query(&query)
        .map_err(|e| Invalid::new(format!("{key}.query"), e.to_string()))?;
    if m.primary_key.trim().is_empty() {
        return Err(Invalid::new(
            format!("{key}.primary_key"),
            "must name a column of the query",
        ));
    }
    check_cursor(&key, m.cursor.as_deref(), &query, source.kind)?;
    Ok(Model {
        name,
        source: m.source,
        primary_key: m.primary_key,
        cursor: m.cursor,
        query,
        diff: m.diff,
    })
}

/// A cursor column and `{{cursor}}` in the query go together.
fn check_cursor(
    key: &str,
    cursor: Option<&str>,
    query: &str,
    kind: SourceKind,
) -> Result<(), Invalid> {
    match (cursor, template::uses(query, kind.lexicon(), "cursor")) {
        (Some(c), false) => Err(Invalid::new(
            format!("{key}.cursor"),
            format!(
                "the query never uses `{{{{cursor}}}}`, so `{c}` would not limit what is read; add e.g. `WHERE {{{{cursor}}}} IS NULL OR {c} > {{{{cursor}}}}`"
            ),
        )),
        (None, true) => Err(Invalid::new(
            key,
            "the query uses `{{cursor}}`; set `cursor` to the column it tracks (e.g. cursor = \"updated_at\")",
        )),
        _ => Ok(()),
    }
}
