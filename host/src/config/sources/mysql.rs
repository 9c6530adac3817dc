//! `kind = "mysql"`: MySQL or MariaDB, reached by URL, possibly through an
//! SSH tunnel; nothing of its own to set.

use serde::Deserialize;

use super::kind::KindSettings;
use crate::config::error::Invalid;
use crate::config::resolver::Resolver;

#[derive(Debug, Clone, Deserialize)]
pub struct Mysql {}

impl KindSettings for Mysql {
    const KEYS: &'static [&'static str] = &["ssh"];
    const PORT: Option<u16> = Some(3306);
    type Raw = Mysql;

    fn resolve(
        raw: Mysql,
        key: &str,
        url: Option<String>,
        _: &Resolver,
    ) -> Result<(String, Mysql), Invalid> {
        Ok((Self::required(key, "url", url)?, raw))
    }
}
