//! `ebb:http`: POSTs events as `{"events":[…]}` to one URL, in chunks of
//! `batch_size`. A 2xx accepts the chunk unless its JSON body lists refused
//! records as `{"rejected":[{"id":…,"error":…}]}`; 429 and 5xx retry the
//! chunk (honouring `Retry-After`), 401/403 reject it as an auth error, any
//! other status rejects it quoting the body. It is also the SDK's worked
//! example of a destination.

use ebb_sdk::{Action, Destination, Error, Event, Outcome, Spec, http};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

struct Http;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_batch_size")]
    batch_size: usize,
    timeout_ms: Option<u64>,
}

fn default_batch_size() -> usize {
    100
}

/// The part of a 2xx body that names refused records.
#[derive(Deserialize, Default)]
struct Reply {
    #[serde(default)]
    rejected: Vec<Rejected>,
}

#[derive(Deserialize)]
struct Rejected {
    /// The event id, as a string or a number.
    id: Value,
    #[serde(default = "no_reason")]
    error: String,
}

fn no_reason() -> String {
    "no reason given".to_owned()
}

impl Destination for Http {
    type Config = Config;

    fn spec() -> Spec {
        Spec {
            config_schema: json!({
                "type": "object",
                "required": ["url"],
                "additionalProperties": false,
                "properties": {
                    "url": { "type": "string", "description": "http(s) URL that receives the POSTs" },
                    "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                    "batch_size": { "type": "integer", "minimum": 1, "maximum": 10000, "default": 100 },
                    "timeout_ms": { "type": "integer", "minimum": 1 }
                }
            }),
            actions: vec![Action::new("post", "POST events as {\"events\":[…]}")],
            max_batch_records: 1000,
            max_batch_bytes: 8 << 20,
            ..Spec::new("http", env!("CARGO_PKG_VERSION"))
        }
    }

    fn validate(config: &Config) -> Result<(), Vec<String>> {
        let url = &config.url;
        let problems: Vec<String> = [
            url.is_empty().then(|| "url is required".to_owned()),
            (!url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://"))
                .then(|| format!("url must start with http:// or https://, got {url:?}")),
            (!(1..=10_000).contains(&config.batch_size))
                .then(|| format!("batch_size must be 1 to 10000, got {}", config.batch_size)),
        ]
        .into_iter()
        .flatten()
        .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn write(config: &Config, _action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        Ok(batch
            .chunks(config.batch_size)
            .flat_map(|chunk| post(config, chunk))
            .collect())
    }
}

/// Sends one chunk and returns one outcome per event in it.
fn post(config: &Config, chunk: &[Event]) -> Vec<Outcome> {
    let timeout = config.timeout_ms.map(Duration::from_millis);
    let body = json!({ "events": chunk });
    let failed = |error: Error| vec![Outcome::from(error); chunk.len()];
    let response = match http::post_json(&config.url, &config.headers, &body, timeout) {
        Ok(response) => response,
        Err(error) => return failed(error),
    };
    if let Some(error) = response.error() {
        return failed(error);
    }
    // A 2xx body that is empty or of another shape accepts the whole chunk.
    let reply: Reply = serde_json::from_slice(&response.body).unwrap_or_default();
    let refused: HashMap<String, String> = reply
        .rejected
        .into_iter()
        .map(|r| {
            (
                r.id.as_str()
                    .map_or_else(|| r.id.to_string(), str::to_owned),
                r.error,
            )
        })
        .collect();
    let outcome = |event: &Event| match refused.get(&event.id) {
        Some(error) => {
            Outcome::Reject(Error::rejected(format!("refused by the endpoint: {error}")))
        }
        None => Outcome::Ok,
    };
    chunk.iter().map(outcome).collect()
}

ebb_sdk::export_destination!(Http);
