//! `kind = "sqlite"`: a database file (its URL relative to the config's
//! folder), which an `init_sql` script can create when it is missing.

use std::path::PathBuf;

use serde::Deserialize;

use super::kind::KindSettings;
use super::ssh;
use crate::config::error::Invalid;
use crate::config::resolver::Resolver;

#[derive(Debug, Clone)]
pub struct Sqlite {
    /// A script that creates the database when its file is missing.
    pub init_sql: Option<PathBuf>,
}

#[derive(Deserialize)]
pub struct RawSqlite {
    init_sql: Option<String>,
}

impl KindSettings for Sqlite {
    const KEYS: &'static [&'static str] = &["init_sql"];
    const ELSEWHERE: &'static [(&'static str, &'static str)] = &[(
        "init_sql",
        "only SQLite sources can be created from a script; remove it",
    )];
    type Raw = RawSqlite;

    fn resolve(
        raw: RawSqlite,
        key: &str,
        url: Option<String>,
        r: &Resolver,
    ) -> Result<(String, Sqlite), Invalid> {
        let url = r.sqlite_url(&Self::required(key, "url", url)?);
        let init_sql = raw
            .init_sql
            .map(|f| r.existing_file(&format!("{key}.init_sql"), &f))
            .transpose()?;
        Ok((url, Sqlite { init_sql }))
    }

    fn refuses(key: &str) -> Option<String> {
        (key == "ssh").then(|| {
            ssh::refusal("an SQLite warehouse is a local file, so there is nothing to tunnel to")
        })
    }
}
