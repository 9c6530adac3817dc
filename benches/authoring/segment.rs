//! A Segment-format destination: each batch goes to `{endpoint}/v1/batch`
//! as Segment's HTTP Tracking API expects it, with the write key as the
//! Basic-auth user. 429 and 5xx are retried (honouring `Retry-After`),
//! 401/403 are auth errors, any other failure rejects the batch.

use ebb_sdk::{Action, Destination, Error, Event, Op, Outcome, Spec, http};
use serde::Deserialize;
use serde_json::json;

pub struct Plugin;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    write_key: String,
    #[serde(default = "default_endpoint")]
    endpoint: String,
}

fn default_endpoint() -> String {
    "https://api.segment.io".to_owned()
}

impl Destination for Plugin {
    type Config = Config;

    fn spec() -> Spec {
        Spec {
            config_schema: json!({
                "type": "object",
                "required": ["write_key"],
                "properties": {
                    "write_key": { "type": "string", "minLength": 1 },
                    "endpoint": { "type": "string", "format": "uri" }
                }
            }),
            actions: vec![Action::new("identify", "Segment identify calls")],
            max_batch_records: 100,
            hosts: vec!["api.segment.io".to_owned()],
            ..Spec::new("seglite", env!("CARGO_PKG_VERSION"))
        }
    }

    fn write(config: &Config, _action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        let calls: Vec<_> = batch
            .iter()
            .map(|e| match e.op {
                Op::Deleted => json!({"type": "track", "userId": e.id, "event": "Deleted"}),
                _ => json!({"type": "identify", "userId": e.id, "traits": e.fields}),
            })
            .collect();
        let url = format!("{}/v1/batch", config.endpoint.trim_end_matches('/'));
        let response = http::post(&url)
            .basic_auth(&config.write_key, "")
            .json(&json!({ "batch": calls }))
            .send()?;
        match response.error() {
            Some(error) => Err(error),
            None => Ok(vec![Outcome::Ok; batch.len()]),
        }
    }
}

ebb_sdk::export_destination!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::testing::{self, MockHttp, Reply};

    fn batch() -> Vec<Event> {
        let ada = json!({"email": "ada@example.com"});
        vec![testing::event(Op::Added, "1", ada.clone()), testing::event(Op::Deleted, "2", ada)]
    }

    #[test]
    fn a_batch_is_sent_in_segment_format_with_basic_auth() {
        let mock = MockHttp::new().respond(200, "{}");
        let outcomes = testing::write::<Plugin>(json!({"write_key": "wk"}), "identify", batch());
        assert_eq!(outcomes, Ok(vec![Outcome::Ok, Outcome::Ok]));
        let sent = &mock.requests()[0];
        assert_eq!(sent.url(), "https://api.segment.io/v1/batch");
        assert_eq!(sent.header("authorization"), Some("Basic d2s6"));
        let body: serde_json::Value = sent.body_json().unwrap();
        assert_eq!(body["batch"][0]["traits"]["email"], "ada@example.com");
        assert_eq!(body["batch"][1]["type"], "track");
    }

    #[test]
    fn rate_limits_and_outages_are_retried_bad_requests_refused() {
        let _mock = MockHttp::new()
            .reply(Reply::status(429).header("Retry-After", "3"))
            .respond(503, "down")
            .respond(400, "bad userId");
        let write = || testing::write::<Plugin>(json!({"write_key": "wk"}), "identify", batch());
        assert_eq!(write(), Err(Error::rate_limited("HTTP 429", Some(3_000))));
        assert!(matches!(write(), Err(e) if e.kind == ebb_sdk::ErrorKind::Transient));
        assert_eq!(write(), Err(Error::rejected("HTTP 400: bad userId")));
    }
}
