//! `{{name}}`: an Ebb destination. It POSTs each batch of events as JSON to
//! `{endpoint}/v1/events` with the API key as a bearer token, and lets the
//! SDK turn the answer into outcomes: 2xx accepts the batch, 429 and 5xx
//! retry it (honouring `Retry-After`), 401/403 are auth errors, any other
//! status rejects it with the body quoted.
//!
//! Change `spec` (what Ebb and the operator see), `Config` (what
//! `config = { … }` holds) and `write` (what is sent) to fit your API.

use ebb_sdk::{Action, Destination, Error, Event, Outcome, Spec, http};
use serde::Deserialize;
use serde_json::json;

pub struct Plugin;

/// `config = { … }` of the destination in `ebb.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    api_key: String,
    #[serde(default = "default_endpoint")]
    endpoint: String,
}

fn default_endpoint() -> String {
    "https://api.example.com".to_owned()
}

impl Destination for Plugin {
    type Config = Config;

    fn spec() -> Spec {
        Spec {
            // Ebb checks configs against this before `validate` sees them.
            config_schema: json!({
                "type": "object",
                "required": ["api_key"],
                "additionalProperties": false,
                "properties": {
                    "api_key": { "type": "string", "minLength": 1 },
                    "endpoint": { "type": "string", "format": "uri" }
                }
            }),
            actions: vec![Action::new("send", "POST events to /v1/events")],
            max_batch_records: 100,
            // The host the default endpoint reaches; `ebb check` asks the
            // operator to grant it (or the host of `endpoint`, when set).
            hosts: vec!["api.example.com".to_owned()],
            ..Spec::new("{{name}}", env!("CARGO_PKG_VERSION"))
        }
    }

    fn validate(config: &Config) -> Result<(), Vec<String>> {
        if config.endpoint.starts_with("https://") || config.endpoint.starts_with("http://") {
            Ok(())
        } else {
            Err(vec![format!(
                "endpoint must start with https://, got {:?}",
                config.endpoint
            )])
        }
    }

    fn write(config: &Config, _action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        let url = format!("{}/v1/events", config.endpoint.trim_end_matches('/'));
        let auth = [("authorization", format!("Bearer {}", config.api_key))];
        let response = http::post_json(&url, auth, &json!({ "events": batch }), None)?;
        match response.error() {
            // The whole batch failed the same way: Ebb retries or keeps it.
            Some(error) => Err(error),
            None => Ok(vec![Outcome::Ok; batch.len()]),
        }
    }
}

ebb_sdk::export_destination!(Plugin);
