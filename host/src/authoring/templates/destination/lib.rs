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
        let response = http::post(&url)
            .bearer(&config.api_key)
            .json(&json!({ "events": batch }))
            .send()?;
        match response.error() {
            // The whole batch failed the same way: Ebb retries or keeps it.
            Some(error) => Err(error),
            None => Ok(vec![Outcome::Ok; batch.len()]),
        }
    }
}

ebb_sdk::export_destination!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::Op;
    use ebb_sdk::testing::{self, MockHttp, Reply};
    use serde_json::Value;

    fn batch() -> Vec<Event> {
        vec![
            testing::event(Op::Added, "1", json!({"email": "ada@example.com"})),
            testing::event(Op::Updated, "2", json!({"email": "grace@example.com"})),
        ]
    }

    #[test]
    fn a_batch_is_posted_with_the_key_and_accepted() {
        let mock = MockHttp::new().respond(200, "{}");
        let config = json!({"api_key": "k-123"});
        let outcomes = testing::write::<Plugin>(config, "send", batch());
        assert_eq!(outcomes, Ok(vec![Outcome::Ok, Outcome::Ok]));

        let sent = &mock.requests()[0];
        assert_eq!(sent.url(), "https://api.example.com/v1/events");
        assert_eq!(sent.header("authorization"), Some("Bearer k-123"));
        let body: Value = sent.body_json().unwrap();
        assert_eq!(body["events"][1]["fields"]["email"], "grace@example.com");
    }

    #[test]
    fn rate_limits_are_retried_and_bad_requests_refused() {
        let _mock = MockHttp::new()
            .reply(Reply::status(429).header("Retry-After", "2"))
            .respond(400, "email is invalid");
        let config = json!({"api_key": "k", "endpoint": "https://eu.example.com/"});
        let limited = testing::write::<Plugin>(config.clone(), "send", batch());
        assert_eq!(limited, Err(Error::rate_limited("HTTP 429", Some(2_000))));
        let refused = testing::write::<Plugin>(config, "send", batch());
        assert_eq!(refused, Err(Error::rejected("HTTP 400: email is invalid")));
    }

    #[test]
    fn the_endpoint_must_be_http() {
        let problems = testing::validate::<Plugin>(json!({"api_key": "k", "endpoint": "ftp://x"}));
        assert!(problems.is_err());
        assert_eq!(testing::spec::<Plugin>().unwrap().name, "{{name}}");
    }
}
