//! What the kinds read over HTTPS SQL APIs (Snowflake, BigQuery,
//! Databricks) share in the config: a base URL written without a trailing
//! `/`, and no SSH tunnel.

use super::ssh;

/// `url` as given, else `default`, without a trailing `/`.
pub fn base_url(url: Option<String>, default: String) -> String {
    url.unwrap_or(default).trim_end_matches('/').to_string()
}

/// How these kinds refuse `ssh`.
pub fn refuses(key: &str) -> Option<String> {
    (key == "ssh").then(|| {
        ssh::refusal("this source is reached over its HTTPS API, not a database connection")
    })
}
