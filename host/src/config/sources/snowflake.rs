//! `kind = "snowflake"`: an account read over Snowflake's SQL API, as a
//! user authenticating with a key pair (`private_key`) or an OAuth
//! `token`, optionally in a given warehouse, database, schema and role.

use serde::Deserialize;

use super::kind::KindSettings;
use super::sql_api;
use crate::config::error::Invalid;
use crate::config::resolver::Resolver;
use crate::config::secrets::Secret;
use crate::rsa_key::RsaKey;

#[derive(Debug, Clone)]
pub struct Snowflake {
    pub account: String,
    pub user: String,
    pub auth: SnowflakeAuth,
    pub warehouse: Option<String>,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub role: Option<String>,
}

#[derive(Debug, Clone)]
pub enum SnowflakeAuth {
    /// Key-pair authentication: Ebb signs a JWT with this key.
    KeyPair(RsaKey),
    /// An OAuth access token.
    OAuth(Secret),
}

#[derive(Deserialize)]
pub struct RawSnowflake {
    account: Option<String>,
    user: Option<String>,
    private_key: Option<String>,
    token: Option<String>,
    warehouse: Option<String>,
    database: Option<String>,
    schema: Option<String>,
    role: Option<String>,
}

impl KindSettings for Snowflake {
    const KEYS: &'static [&'static str] = &[
        "account",
        "user",
        "private_key",
        "token",
        "warehouse",
        "database",
        "schema",
        "role",
    ];
    const LABEL: &'static str = "a snowflake";
    type Raw = RawSnowflake;

    fn resolve(
        raw: RawSnowflake,
        key: &str,
        url: Option<String>,
        r: &Resolver,
    ) -> Result<(String, Snowflake), Invalid> {
        let text = |field: &str, value: Option<String>| r.secret(key, field, value);
        let account = Self::required(key, "account", text("account", raw.account)?)?;
        let auth = match (
            text("private_key", raw.private_key)?,
            text("token", raw.token)?,
        ) {
            (Some(pem), None) => SnowflakeAuth::KeyPair(
                RsaKey::from_pem(&pem)
                    .map_err(|e| Invalid::new(format!("{key}.private_key"), e.to_string()))?,
            ),
            (None, Some(token)) => {
                SnowflakeAuth::OAuth(Secret(Self::required(key, "token", Some(token))?))
            }
            _ => {
                return Err(Invalid::new(
                    key,
                    "set exactly one of `private_key` (key-pair authentication) and `token` (OAuth)",
                ));
            }
        };
        let url = sql_api::base_url(url, format!("https://{account}.snowflakecomputing.com"));
        let settings = Snowflake {
            account,
            user: Self::required(key, "user", text("user", raw.user)?)?,
            auth,
            warehouse: text("warehouse", raw.warehouse)?,
            database: text("database", raw.database)?,
            schema: text("schema", raw.schema)?,
            role: text("role", raw.role)?,
        };
        Ok((url, settings))
    }

    fn refuses(key: &str) -> Option<String> {
        sql_api::refuses(key)
    }
}
