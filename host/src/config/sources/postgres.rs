//! `kind = "postgres"` and `kind = "redshift"`: databases reached by URL
//! over the Postgres protocol, possibly through an SSH tunnel. Only
//! Postgres diffs in the warehouse, in the schema `diff_schema` names.

use serde::Deserialize;

use super::kind::KindSettings;
use crate::config::error::Invalid;
use crate::config::resolver::Resolver;

/// The schema Ebb owns for models with `diff = "warehouse"` unless
/// `diff_schema` names another.
pub const DEFAULT_DIFF_SCHEMA: &str = "_ebb";

#[derive(Debug, Clone)]
pub struct Postgres {
    /// The schema Ebb owns for models with `diff = "warehouse"`.
    pub diff_schema: String,
}

#[derive(Deserialize)]
pub struct RawPostgres {
    diff_schema: Option<String>,
}

impl KindSettings for Postgres {
    const KEYS: &'static [&'static str] = &["ssh", "diff_schema"];
    const PORT: Option<u16> = Some(5432);
    const ELSEWHERE: &'static [(&'static str, &'static str)] = &[(
        "diff_schema",
        "only Postgres sources diff in the warehouse; remove it",
    )];
    type Raw = RawPostgres;

    fn resolve(
        raw: RawPostgres,
        key: &str,
        url: Option<String>,
        _: &Resolver,
    ) -> Result<(String, Postgres), Invalid> {
        let url = Self::required(key, "url", url)?;
        let diff_schema = match raw.diff_schema {
            None => DEFAULT_DIFF_SCHEMA.to_owned(),
            Some(schema) if !schema.trim().is_empty() => schema,
            Some(_) => {
                return Err(Invalid::new(
                    format!("{key}.diff_schema"),
                    format!("must name a schema; remove it to use `{DEFAULT_DIFF_SCHEMA}`"),
                ));
            }
        };
        Ok((url, Postgres { diff_schema }))
    }
}

/// Amazon Redshift, read through the Postgres protocol; nothing of its own
/// to set.
#[derive(Debug, Clone, Deserialize)]
pub struct Redshift {}

impl KindSettings for Redshift {
    const KEYS: &'static [&'static str] = &["ssh"];
    const PORT: Option<u16> = Some(5439);
    type Raw = Redshift;

    fn resolve(
        raw: Redshift,
        key: &str,
        url: Option<String>,
        _: &Resolver,
    ) -> Result<(String, Redshift), Invalid> {
        Ok((Self::required(key, "url", url)?, raw))
    }
}
