//! `[sources.NAME]` keys of the warehouses Ebb reads over HTTP SQL APIs
//! (Snowflake, BigQuery, Databricks). Each kind takes its own keys; they
//! are checked here, at load, so a missing account, a key that is not a
//! key or a key given to the wrong kind is named as `sources.NAME.field`
//! before anything connects.

use serde::Deserialize;

use super::SourceKind;
use crate::source::RsaKey;

/// The API keys of `[sources.NAME]` as written (after `${env:…}`).
#[derive(Default)]
pub(super) struct RawApi {
    pub account: Option<String>,
    pub user: Option<String>,
    pub private_key: Option<String>,
    pub token: Option<String>,
    pub warehouse: Option<String>,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub role: Option<String>,
    pub project: Option<String>,
    pub credentials: Option<String>,
    pub location: Option<String>,
    pub warehouse_id: Option<String>,
    pub catalog: Option<String>,
}

/// A credential; never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, Clone)]
pub enum ApiSource {
    Snowflake(Snowflake),
    BigQuery(BigQuery),
    Databricks(Databricks),
}

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

#[derive(Debug, Clone)]
pub struct BigQuery {
    pub project: String,
    pub location: Option<String>,
    pub service_account: ServiceAccount,
}

/// The parts of a Google service-account key file Ebb uses.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub private_key: RsaKey,
    /// Where the signed JWT is exchanged for an access token.
    pub token_uri: String,
}

#[derive(Debug, Clone)]
pub struct Databricks {
    pub token: Secret,
    pub warehouse_id: String,
    pub catalog: Option<String>,
    pub schema: Option<String>,
}

/// The source's API base URL (without a trailing `/`) and settings, or
/// `None` for kinds that take none of these keys.
pub(super) fn resolve(
    key: &str,
    kind: SourceKind,
    url: Option<String>,
    raw: RawApi,
) -> Result<(String, Option<ApiSource>), String> {
    let given: [(&str, &Option<String>); 13] = [
        ("account", &raw.account),
        ("user", &raw.user),
        ("private_key", &raw.private_key),
        ("token", &raw.token),
        ("warehouse", &raw.warehouse),
        ("database", &raw.database),
        ("schema", &raw.schema),
        ("role", &raw.role),
        ("project", &raw.project),
        ("credentials", &raw.credentials),
        ("location", &raw.location),
        ("warehouse_id", &raw.warehouse_id),
        ("catalog", &raw.catalog),
    ];
    let (name, takes): (&str, &[&str]) = match kind {
        SourceKind::Sqlite | SourceKind::Postgres | SourceKind::Redshift | SourceKind::Mysql => {
            ("this", &[])
        }
        SourceKind::Snowflake => (
            "a snowflake",
            &[
                "account",
                "user",
                "private_key",
                "token",
                "warehouse",
                "database",
                "schema",
                "role",
            ],
        ),
        SourceKind::Bigquery => ("a bigquery", &["project", "credentials", "location"]),
        SourceKind::Databricks => (
            "a databricks",
            &["token", "warehouse_id", "catalog", "schema"],
        ),
    };
    for (field, value) in given {
        if value.is_some() && !takes.contains(&field) {
            return Err(format!(
                "{key}.{field}: {name} source does not take `{field}`; remove it"
            ));
        }
    }
    let required = |field: &str, v: Option<String>| {
        v.filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("{key}.{field}: required for {name} source"))
    };
    let base = |url: Option<String>, default: String| {
        url.unwrap_or(default).trim_end_matches('/').to_string()
    };
    Ok(match kind {
        SourceKind::Sqlite | SourceKind::Postgres | SourceKind::Redshift | SourceKind::Mysql => {
            (required("url", url)?, None)
        }
        SourceKind::Snowflake => {
            let account = required("account", raw.account)?;
            let auth = match (raw.private_key, raw.token) {
                (Some(pem), None) => SnowflakeAuth::KeyPair(
                    RsaKey::from_pem(&pem).map_err(|e| format!("{key}.private_key: {e}"))?,
                ),
                (None, Some(token)) => {
                    SnowflakeAuth::OAuth(Secret(required("token", Some(token))?))
                }
                _ => {
                    return Err(format!(
                        "{key}: set exactly one of `private_key` (key-pair authentication) and `token` (OAuth)"
                    ));
                }
            };
            let url = base(url, format!("https://{account}.snowflakecomputing.com"));
            let settings = Snowflake {
                account,
                user: required("user", raw.user)?,
                auth,
                warehouse: raw.warehouse,
                database: raw.database,
                schema: raw.schema,
                role: raw.role,
            };
            (url, Some(ApiSource::Snowflake(settings)))
        }
        SourceKind::Bigquery => {
            let project = required("project", raw.project)?;
            let credentials = required("credentials", raw.credentials)?;
            let service_account =
                service_account(&credentials).map_err(|e| format!("{key}.credentials: {e}"))?;
            let url = base(url, "https://bigquery.googleapis.com".into());
            let settings = BigQuery {
                project,
                location: raw.location,
                service_account,
            };
            (url, Some(ApiSource::BigQuery(settings)))
        }
        SourceKind::Databricks => {
            let url = base(Some(required("url", url)?), String::new());
            let settings = Databricks {
                token: Secret(required("token", raw.token)?),
                warehouse_id: required("warehouse_id", raw.warehouse_id)?,
                catalog: raw.catalog,
                schema: raw.schema,
            };
            (url, Some(ApiSource::Databricks(settings)))
        }
    })
}

fn service_account(json: &str) -> Result<ServiceAccount, String> {
    #[derive(Deserialize)]
    struct KeyFile {
        #[serde(rename = "type")]
        kind: Option<String>,
        client_email: String,
        private_key_id: Option<String>,
        private_key: String,
        token_uri: String,
    }
    let file: KeyFile = serde_json::from_str(json).map_err(|e| {
        format!("not a service-account key file ({e}); set it to the key's JSON text, e.g. \"${{env:BIGQUERY_CREDENTIALS}}\"")
    })?;
    if let Some(kind) = file.kind.filter(|k| k != "service_account") {
        return Err(format!(
            "the key file is of type `{kind}`; Ebb needs a `service_account` key"
        ));
    }
    Ok(ServiceAccount {
        private_key: RsaKey::from_pem(&file.private_key)
            .map_err(|e| format!("its private_key: {e}"))?,
        client_email: file.client_email,
        private_key_id: file.private_key_id,
        token_uri: file.token_uri,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_takes_its_own_keys() {
        let e = resolve(
            "sources.wh",
            SourceKind::Postgres,
            Some("postgres://x".into()),
            RawApi {
                project: Some("p".into()),
                ..RawApi::default()
            },
        )
        .unwrap_err();
        assert!(e.starts_with("sources.wh.project:"), "{e}");

        let e = resolve(
            "sources.wh",
            SourceKind::Databricks,
            None,
            RawApi::default(),
        )
        .unwrap_err();
        assert_eq!(e, "sources.wh.url: required for a databricks source");

        let e = resolve(
            "sources.sf",
            SourceKind::Snowflake,
            None,
            RawApi {
                account: Some("acme".into()),
                user: Some("ebb".into()),
                ..RawApi::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("exactly one of `private_key`"), "{e}");

        let (url, api) = resolve(
            "sources.sf",
            SourceKind::Snowflake,
            None,
            RawApi {
                account: Some("acme".into()),
                user: Some("ebb".into()),
                token: Some("t".into()),
                ..RawApi::default()
            },
        )
        .unwrap();
        assert_eq!(url, "https://acme.snowflakecomputing.com");
        assert!(format!("{api:?}").contains("Secret(…)"));

        let e = resolve(
            "sources.bq",
            SourceKind::Bigquery,
            None,
            RawApi {
                project: Some("p".into()),
                credentials: Some("{}".into()),
                ..RawApi::default()
            },
        )
        .unwrap_err();
        assert!(
            e.starts_with("sources.bq.credentials: not a service-account key file"),
            "{e}"
        );
    }
}
