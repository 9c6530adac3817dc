//! The kinds of source, and what each says about its `[sources.NAME]`
//! keys: which it takes, how it is named in messages, the port it listens
//! on, and how its keys become its settings. Each kind implements
//! [`KindSettings`] in its own file; [`sources`](super) registers them.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::error::Invalid;
use crate::config::resolver::Resolver;

/// The kinds of source, as `kind = "…"` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Sqlite,
    Postgres,
    /// Amazon Redshift, read through the Postgres protocol.
    Redshift,
    /// MySQL or MariaDB.
    Mysql,
    Snowflake,
    Bigquery,
    Databricks,
}

/// The settings of one kind of source, and the rules of its keys.
pub trait KindSettings: Sized {
    /// The keys a source of this kind takes besides those every kind takes
    /// (`kind`, `url`, `statement_timeout_secs`, `connect_timeout_secs`).
    const KEYS: &'static [&'static str];

    /// How messages name a source of this kind: "this" ("required for this
    /// source") or "a snowflake".
    const LABEL: &'static str = "this";

    /// The port the database listens on when its URL names none. Only
    /// kinds with one can be reached through an SSH tunnel.
    const PORT: Option<u16> = None;

    /// Keys only this kind takes, with the words a source of any other kind
    /// refuses them in.
    const ELSEWHERE: &'static [(&'static str, &'static str)] = &[];

    /// The kind's own keys as written.
    type Raw: DeserializeOwned;

    /// Checks the kind's keys, with the source's URL as written (secrets
    /// substituted), and gives the URL to connect to and the settings.
    fn resolve(
        raw: Self::Raw,
        key: &str,
        url: Option<String>,
        r: &Resolver,
    ) -> Result<(String, Self), Invalid>;

    /// This kind's own words for refusing `key`, which other kinds take,
    /// where "does not take" would not say why.
    fn refuses(key: &str) -> Option<String> {
        let _ = key;
        None
    }

    /// `field` of the source at `key`, which must be given and not blank.
    fn required(key: &str, field: &str, value: Option<String>) -> Result<String, Invalid> {
        value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            Invalid::new(
                format!("{key}.{field}"),
                format!("required for {} source", Self::LABEL),
            )
        })
    }
}
