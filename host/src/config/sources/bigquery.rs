//! `kind = "bigquery"`: a Google Cloud project read over BigQuery's REST
//! API as a service account, whose key file's JSON is `credentials`.

use serde::Deserialize;

use super::kind::KindSettings;
use super::sql_api;
use crate::config::error::Invalid;
use crate::config::resolver::Resolver;
use crate::rsa_key::{KeyError, RsaKey};

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

#[derive(Deserialize)]
pub struct RawBigQuery {
    project: Option<String>,
    credentials: Option<String>,
    location: Option<String>,
}

impl KindSettings for BigQuery {
    const KEYS: &'static [&'static str] = &["project", "credentials", "location"];
    const LABEL: &'static str = "a bigquery";
    type Raw = RawBigQuery;

    fn resolve(
        raw: RawBigQuery,
        key: &str,
        url: Option<String>,
        r: &Resolver,
    ) -> Result<(String, BigQuery), Invalid> {
        let text = |field: &str, value: Option<String>| r.secret(key, field, value);
        let project = Self::required(key, "project", text("project", raw.project)?)?;
        let credentials =
            Self::required(key, "credentials", text("credentials", raw.credentials)?)?;
        let service_account = ServiceAccount::from_json(&credentials)
            .map_err(|e| Invalid::new(format!("{key}.credentials"), e.to_string()))?;
        let url = sql_api::base_url(url, "https://bigquery.googleapis.com".into());
        let settings = BigQuery {
            project,
            location: text("location", raw.location)?,
            service_account,
        };
        Ok((url, settings))
    }

    fn refuses(key: &str) -> Option<String> {
        sql_api::refuses(key)
    }
}

/// Why `credentials` is no service-account key Ebb can use.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "not a service-account key file ({0}); set it to the key's JSON text, e.g. \"${{env:BIGQUERY_CREDENTIALS}}\""
    )]
    NotKeyFile(serde_json::Error),
    #[error("the key file is of type `{0}`; Ebb needs a `service_account` key")]
    NotServiceAccount(String),
    #[error("its private_key: {0}")]
    Key(KeyError),
}

impl ServiceAccount {
    /// Reads a key file's JSON text.
    fn from_json(json: &str) -> Result<ServiceAccount, CredentialsError> {
        #[derive(Deserialize)]
        struct KeyFile {
            #[serde(rename = "type")]
            kind: Option<String>,
            client_email: String,
            private_key_id: Option<String>,
            private_key: String,
            token_uri: String,
        }
        let file: KeyFile = serde_json::from_str(json).map_err(CredentialsError::NotKeyFile)?;
        if let Some(kind) = file.kind.filter(|k| k != "service_account") {
            return Err(CredentialsError::NotServiceAccount(kind));
        }
        Ok(ServiceAccount {
            private_key: RsaKey::from_pem(&file.private_key).map_err(CredentialsError::Key)?,
            client_email: file.client_email,
            private_key_id: file.private_key_id,
            token_uri: file.token_uri,
        })
    }
}
