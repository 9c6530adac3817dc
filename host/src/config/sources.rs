//! `[sources.NAME]`: the warehouses models read from. Every source has a
//! `kind` and takes the keys every kind takes (`url`, the timeouts, and
//! `ssh` where it can be tunnelled to); each kind takes its own keys
//! besides, reads them from the source's table and checks them in its own
//! file (`sources/<kind>.rs`). The result is a [`Source`] whose
//! [`Settings`] are tagged by kind.
//!
//! A key one kind takes given to another is named with what to do (not
//! the parser's "unknown field"), and a key no kind takes gets the
//! parser's error listing every key there is.

mod bigquery;
mod databricks;
mod keys;
mod kind;
mod mysql;
mod postgres;
mod snowflake;
mod sql_api;
mod sqlite;
pub mod ssh;
mod table;

use std::collections::BTreeMap;
use std::time::Duration;

pub use bigquery::{BigQuery, ServiceAccount};
pub use databricks::Databricks;
pub use keys::RawSource;
pub use kind::SourceKind;
pub use snowflake::{Snowflake, SnowflakeAuth};
pub use ssh::Ssh;
pub use table::SourceTables;

use super::error::Invalid;
use super::resolver::Resolver;
use crate::sql_lexer::{self, Lexicon};
use keys::{COMMON, KEYS};
use kind::KindSettings;
use mysql::Mysql;
use postgres::{Postgres, Redshift};
use sqlite::Sqlite;
use table::SourceTable;

/// What a source's own keys say, by kind.
#[derive(Debug, Clone)]
pub enum Settings {
    Sqlite(Sqlite),
    Postgres(Postgres),
    Redshift(Redshift),
    Mysql(Mysql),
    Snowflake(Snowflake),
    BigQuery(BigQuery),
    Databricks(Databricks),
}

/// Every kind, with the [`Settings`] variant that holds its settings. A new
/// kind of source is a [`SourceKind`], a [`Settings`] variant and a line
/// here; the rest is its own file.
static KINDS: [&dyn Registered; 7] = [
    &Tagged(SourceKind::Sqlite, Settings::Sqlite),
    &Tagged(SourceKind::Postgres, Settings::Postgres),
    &Tagged(SourceKind::Redshift, Settings::Redshift),
    &Tagged(SourceKind::Mysql, Settings::Mysql),
    &Tagged(SourceKind::Snowflake, Settings::Snowflake),
    &Tagged(SourceKind::Bigquery, Settings::BigQuery),
    &Tagged(SourceKind::Databricks, Settings::Databricks),
];

impl SourceKind {
    /// The port a database kind listens on when its URL names none.
    pub fn default_port(self) -> Option<u16> {
        registered(self).port()
    }

    /// How the kind's SQL quotes and comments.
    pub fn lexicon(self) -> &'static Lexicon {
        match self {
            SourceKind::Sqlite => &sql_lexer::SQLITE,
            SourceKind::Postgres | SourceKind::Redshift => &sql_lexer::POSTGRES,
            SourceKind::Mysql => &sql_lexer::MYSQL,
            SourceKind::Snowflake | SourceKind::Bigquery | SourceKind::Databricks => {
                &sql_lexer::SQL_APIS
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    /// What the database's driver connects to (for the kinds read over
    /// HTTPS SQL APIs, the API's base URL).
    pub url: String,
    pub statement_timeout: Duration,
    /// How long connecting (DNS, TCP, TLS, authentication) may take.
    pub connect_timeout: Duration,
    /// Reach the database through this SSH server (`crate::source::ssh`).
    pub ssh: Option<Ssh>,
    /// The kind's own settings; always the variant of `kind`.
    pub settings: Settings,
}

impl Source {
    /// The schema Ebb owns for models with `diff = "warehouse"` (which
    /// only Postgres sources have).
    pub fn diff_schema(&self) -> &str {
        match &self.settings {
            Settings::Postgres(p) => &p.diff_schema,
            _ => postgres::DEFAULT_DIFF_SCHEMA,
        }
    }
}

pub fn resolve(
    raw: BTreeMap<String, RawSource>,
    tables: &SourceTables,
    r: &Resolver,
) -> Result<BTreeMap<String, Source>, Invalid> {
    raw.into_iter()
        .map(|(name, s)| {
            let source = source(name.clone(), s, &tables.get(&name), r)?;
            Ok((name, source))
        })
        .collect()
}

fn source(
    name: String,
    raw: RawSource,
    table: &SourceTable,
    r: &Resolver,
) -> Result<Source, Invalid> {
    let key = format!("sources.{name}");
    let kind = registered(raw.kind);
    let url = r.secret(&key, "url", raw.url)?;
    let (url, settings) = kind.read(&key, table, url, r)?;
    let ssh = raw
        .ssh
        .map(|ssh| ssh::resolve(&key, &url, kind.port(), ssh, r))
        .transpose()?;
    Ok(Source {
        name,
        kind: raw.kind,
        url,
        statement_timeout: Duration::from_secs(raw.statement_timeout_secs.unwrap_or(600)),
        connect_timeout: Duration::from_secs(raw.connect_timeout_secs.unwrap_or(10)),
        ssh,
        settings,
    })
}

fn registered(kind: SourceKind) -> &'static dyn Registered {
    *KINDS
        .iter()
        .find(|k| k.kind() == kind)
        .expect("every kind is in KINDS")
}

/// A kind as [`KINDS`] holds it: its [`KindSettings`], and the
/// [`Settings`] variant they go in.
trait Registered: Sync {
    fn kind(&self) -> SourceKind;
    /// The keys it takes besides [`COMMON`].
    fn keys(&self) -> &'static [&'static str];
    fn takes(&self, key: &str) -> bool {
        COMMON.contains(&key) || self.keys().contains(&key)
    }
    fn port(&self) -> Option<u16>;
    /// How it refuses `key`: its own words, or those of the one kind that
    /// takes it, or "does not take".
    fn refusal(&self, key: &str) -> String;
    /// How a source of another kind refuses `key`, when only this kind takes it.
    fn elsewhere(&self, key: &str) -> Option<&'static str>;
    /// Whether the table's values of this kind's keys are of their types.
    fn check(&self, table: &SourceTable) -> Result<(), Invalid>;
    /// The source's URL and settings, from its table and its URL as written.
    fn read(
        &self,
        key: &str,
        table: &SourceTable,
        url: Option<String>,
        r: &Resolver,
    ) -> Result<(String, Settings), Invalid>;
}

struct Tagged<K>(SourceKind, fn(K) -> Settings);

impl<K: KindSettings> Registered for Tagged<K> {
    fn kind(&self) -> SourceKind {
        self.0
    }

    fn keys(&self) -> &'static [&'static str] {
        K::KEYS
    }

    fn port(&self) -> Option<u16> {
        K::PORT
    }

    fn refusal(&self, key: &str) -> String {
        K::refuses(key)
            .or_else(|| {
                KINDS
                    .iter()
                    .find_map(|k| k.elsewhere(key))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| format!("{} source does not take `{key}`; remove it", K::LABEL))
    }

    fn elsewhere(&self, key: &str) -> Option<&'static str> {
        K::ELSEWHERE
            .iter()
            .find_map(|(k, words)| (*k == key).then_some(*words))
    }

    fn check(&self, table: &SourceTable) -> Result<(), Invalid> {
        table.read::<K::Raw>().map(drop)
    }

    fn read(
        &self,
        key: &str,
        table: &SourceTable,
        url: Option<String>,
        r: &Resolver,
    ) -> Result<(String, Settings), Invalid> {
        let raw = table.read::<K::Raw>()?;
        refuse_strays(self, key, table)?;
        let (url, settings) = K::resolve(raw, key, url, r)?;
        Ok((url, (self.1)(settings)))
    }
}

/// Refuses the keys of other kinds in a table of `kind`'s, once their
/// values are known to be of their types (the parser's errors come first).
fn refuse_strays(kind: &dyn Registered, key: &str, table: &SourceTable) -> Result<(), Invalid> {
    let strays: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| table.has(k) && !kind.takes(k))
        .collect();
    for stray in &strays {
        owner(stray).check(table)?;
    }
    match strays.first() {
        Some(stray) => Err(Invalid::new(format!("{key}.{stray}"), kind.refusal(stray))),
        None => Ok(()),
    }
}

/// The first kind that takes `key`.
fn owner(key: &str) -> &'static dyn Registered {
    *KINDS
        .iter()
        .find(|k| k.takes(key))
        .expect("every key in KEYS is taken by some kind")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sources of a config made of `toml`.
    fn sources(toml: &str) -> Result<BTreeMap<String, Source>, String> {
        let (raw, tables) = crate::config::raw::parse(toml).map_err(|e| e.to_string())?;
        let env = |_: &str| None;
        let r = Resolver {
            dir: "/cfg".into(),
            env: &env,
        };
        resolve(raw.sources, &tables, &r).map_err(|e| e.to_string())
    }

    #[test]
    fn each_kind_takes_its_own_keys() {
        let e =
            sources("[sources.wh]\nkind = \"postgres\"\nurl = \"postgres://x\"\nproject = \"p\"\n")
                .unwrap_err();
        assert!(e.starts_with("sources.wh.project:"), "{e}");

        let e = sources("[sources.wh]\nkind = \"databricks\"\n").unwrap_err();
        assert_eq!(e, "sources.wh.url: required for a databricks source");

        let e = sources("[sources.sf]\nkind = \"snowflake\"\naccount = \"acme\"\nuser = \"ebb\"\n")
            .unwrap_err();
        assert!(e.contains("exactly one of `private_key`"), "{e}");

        let ok = sources(
            "[sources.sf]\nkind = \"snowflake\"\naccount = \"acme\"\nuser = \"ebb\"\ntoken = \"t\"\n",
        )
        .unwrap();
        assert_eq!(ok["sf"].url, "https://acme.snowflakecomputing.com");
        assert!(format!("{:?}", ok["sf"].settings).contains("Secret(…)"));

        let e =
            sources("[sources.bq]\nkind = \"bigquery\"\nproject = \"p\"\ncredentials = \"{}\"\n")
                .unwrap_err();
        assert!(
            e.starts_with("sources.bq.credentials: not a service-account key file"),
            "{e}"
        );
    }

    #[test]
    fn every_key_is_some_kinds() {
        for key in KEYS {
            assert!(KINDS.iter().any(|k| k.takes(key)), "no kind takes {key}");
        }
        for kind in KINDS {
            assert!(kind.keys().iter().all(|k| KEYS.contains(k)));
            assert_eq!(kind.port().is_some(), kind.takes("ssh"));
        }
    }

    #[test]
    fn ssh_serves_the_kinds_with_a_port() {
        let serving: Vec<_> = KINDS
            .iter()
            .filter(|k| k.port().is_some())
            .map(|k| format!("{:?}", k.kind()).to_lowercase())
            .collect();
        assert!(ssh::refusal("").ends_with("(it serves postgres, redshift and mysql sources)"));
        assert_eq!(serving, ["postgres", "redshift", "mysql"]);
    }
}
