//! `kind = "databricks"`: a workspace (its URL) whose SQL warehouse
//! `warehouse_id` is read over the Statement Execution API with a `token`,
//! optionally in a given catalog and schema.

use serde::Deserialize;

use super::kind::KindSettings;
use super::sql_api;
use crate::config::error::Invalid;
use crate::config::resolver::Resolver;
use crate::config::secrets::Secret;

#[derive(Debug, Clone)]
pub struct Databricks {
    pub token: Secret,
    pub warehouse_id: String,
    pub catalog: Option<String>,
    pub schema: Option<String>,
}

#[derive(Deserialize)]
pub struct RawDatabricks {
    token: Option<String>,
    warehouse_id: Option<String>,
    catalog: Option<String>,
    schema: Option<String>,
}

impl KindSettings for Databricks {
    const KEYS: &'static [&'static str] = &["token", "warehouse_id", "catalog", "schema"];
    const LABEL: &'static str = "a databricks";
    type Raw = RawDatabricks;

    fn resolve(
        raw: RawDatabricks,
        key: &str,
        url: Option<String>,
        r: &Resolver,
    ) -> Result<(String, Databricks), Invalid> {
        let text = |field: &str, value: Option<String>| r.secret(key, field, value);
        let url = sql_api::base_url(Some(Self::required(key, "url", url)?), String::new());
        let settings = Databricks {
            token: Secret(Self::required(key, "token", text("token", raw.token)?)?),
            warehouse_id: Self::required(
                key,
                "warehouse_id",
                text("warehouse_id", raw.warehouse_id)?,
            )?,
            catalog: text("catalog", raw.catalog)?,
            schema: text("schema", raw.schema)?,
        };
        Ok((url, settings))
    }

    fn refuses(key: &str) -> Option<String> {
        sql_api::refuses(key)
    }
}
