//! `ebb:http`: POSTs events as `{"events":[…]}` to one URL, in chunks of
//! `batch_size`. A 2xx accepts the chunk unless its JSON body lists refused
//! records as `{"rejected":[{"id":…,"error":…}]}`; 429 and 5xx retry the
//! chunk (honouring `Retry-After`), 401/403 reject it as an auth error (and
//! the batch's remaining chunks with it, unsent), any other status rejects
//! it quoting the body. It is also the SDK's worked
//! example of a destination.

use ebb_sdk::{Action, Destination, Error, ErrorKind, Event, Outcome, RawEvent, Spec, http};
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
            (!url.is_empty())
                .then(|| http::url_problem("url", url))
                .flatten(),
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

    fn write(config: &Config, action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        Self::write_raw(config, action, batch.into_iter().map(Into::into).collect())
    }

    /// Records go into the body as the host sent them, never parsed.
    fn write_raw(
        config: &Config,
        _action: &str,
        batch: Vec<RawEvent>,
    ) -> Result<Vec<Outcome>, Error> {
        let mut outcomes = Vec::with_capacity(batch.len());
        // Refused credentials or a denied URL refuse every chunk alike:
        // once one is, the rest get its answer without being sent.
        let mut refused_all: Option<Outcome> = None;
        for chunk in batch.chunks(config.batch_size) {
            if let Some(outcome) = &refused_all {
                outcomes.extend(std::iter::repeat_n(outcome.clone(), chunk.len()));
                continue;
            }
            let answered = post(config, chunk);
            refused_all = answered.first().filter(|o| unfixable(o)).cloned();
            outcomes.extend(answered);
        }
        Ok(outcomes)
    }
}

/// Whether an outcome says no request to this endpoint can succeed until
/// its config or grant is fixed.
fn unfixable(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Reject(e) if matches!(e.kind, ErrorKind::Auth | ErrorKind::InvalidConfig))
}

/// The request body, written straight from the events.
#[derive(serde::Serialize)]
struct Body<'a> {
    events: &'a [RawEvent],
}

/// Sends one chunk and returns one outcome per event in it.
fn post(config: &Config, chunk: &[RawEvent]) -> Vec<Outcome> {
    let mut request = http::post(&config.url)
        .headers(&config.headers)
        .json(&Body { events: chunk });
    if let Some(ms) = config.timeout_ms {
        request = request.timeout(Duration::from_millis(ms));
    }
    let failed = |error: Error| vec![Outcome::from(error); chunk.len()];
    let response = match request.send() {
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
    let outcome = |event: &RawEvent| match refused.get(&event.id) {
        Some(error) => {
            Outcome::Reject(Error::rejected(format!("refused by the endpoint: {error}")))
        }
        None => Outcome::Ok,
    };
    chunk.iter().map(outcome).collect()
}

ebb_sdk::export_destination!(Http);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::http::Method;
    use ebb_sdk::testing::{self, MockHttp, Reply};
    use ebb_sdk::{ErrorKind, Op};

    const URL: &str = "https://hooks.example.com/ingest?key=s3cret";

    fn batch(ids: &[&str]) -> Vec<Event> {
        ids.iter()
            .map(|id| {
                testing::event(
                    Op::Added,
                    *id,
                    json!({ "email": format!("{id}@example.com") }),
                )
            })
            .collect()
    }

    fn write(config: Value, ids: &[&str]) -> Vec<Outcome> {
        testing::write::<Http>(config, "post", batch(ids)).unwrap()
    }

    #[test]
    fn posts_chunks_with_the_configured_headers_and_timeout() {
        let mock = MockHttp::new().respond(200, "").reply(
            Reply::status(202).json(&json!({"rejected": [{"id": "c", "error": "bad email"}]})),
        );
        let config = json!({
            "url": URL, "batch_size": 2, "timeout_ms": 1500,
            "headers": {"Authorization": "Bearer t", "Content-Type": "application/vnd.ebb+json"}
        });
        let outcomes = write(config, &["a", "b", "c"]);
        assert_eq!(
            outcomes,
            [
                Outcome::Ok,
                Outcome::Ok,
                Outcome::Reject(Error::rejected("refused by the endpoint: bad email"))
            ]
        );

        let sent = mock.requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].method(), Method::POST);
        assert_eq!(sent[0].url(), URL);
        assert_eq!(sent[0].header("authorization"), Some("Bearer t"));
        assert_eq!(
            sent[0].header("content-type"),
            Some("application/vnd.ebb+json")
        );
        assert_eq!(sent[0].timeout(), Some(Duration::from_millis(1500)));
        let body: Value = sent[0].body_json().unwrap();
        let ids: Vec<&str> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(
            body["events"][0]["fields"],
            json!({"email": "a@example.com"})
        );
        let body: Value = sent[1].body_json().unwrap();
        assert_eq!(body["events"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn rate_limits_retry_after_the_delay_asked() {
        let _mock = MockHttp::new()
            .reply(
                Reply::status(429)
                    .header("Retry-After", "7")
                    .body("slow down"),
            )
            .reply(Reply::status(503).header("Retry-After", "Thu, 01 Jan 1970 00:00:00 GMT"));
        let limited = Error::rate_limited("HTTP 429: slow down", Some(7000));
        assert_eq!(
            write(json!({"url": URL}), &["a", "b"]),
            [Outcome::Retry(limited.clone()), Outcome::Retry(limited)]
        );
        let [Outcome::Retry(down)] = &write(json!({"url": URL}), &["a"])[..] else {
            panic!("a 503 retries");
        };
        assert_eq!(
            (down.kind, down.retry_after_ms),
            (ErrorKind::Transient, Some(0))
        );
    }

    #[test]
    fn client_errors_reject_and_auth_errors_say_so() {
        let _mock = MockHttp::new()
            .respond(400, r#"{"error": "events[0].email is invalid"}"#)
            .respond(401, "");
        assert_eq!(
            write(json!({"url": URL}), &["a"]),
            [Outcome::Reject(Error::rejected(
                r#"HTTP 400: {"error": "events[0].email is invalid"}"#
            ))]
        );
        assert_eq!(
            write(json!({"url": URL}), &["a"]),
            [Outcome::Reject(Error::auth(
                "credentials refused: HTTP 401"
            ))]
        );
    }

    #[test]
    fn refused_credentials_refuse_the_rest_of_the_batch_unsent() {
        let mock = MockHttp::new().respond(401, "").respond(200, "");
        let outcomes = write(json!({"url": URL, "batch_size": 1}), &["a", "b", "c"]);
        let auth = Outcome::Reject(Error::auth("credentials refused: HTTP 401"));
        assert_eq!(outcomes, [auth.clone(), auth.clone(), auth]);
        assert_eq!(mock.requests().len(), 1, "one request, not one per chunk");
    }

    #[test]
    fn network_failures_retry_without_quoting_the_key() {
        let _mock = MockHttp::new()
            .reply(Reply::network_error("connection refused"))
            .reply(Reply::denied());
        let [Outcome::Retry(refused)] = &write(json!({"url": URL}), &["a"])[..] else {
            panic!("a network failure retries");
        };
        assert_eq!(
            refused.message,
            "request to https://hooks.example.com/ingest?… failed: connection refused"
        );
        let [Outcome::Reject(denied)] = &write(json!({"url": URL}), &["a"])[..] else {
            panic!("a denied request rejects");
        };
        assert_eq!(denied.kind, ErrorKind::InvalidConfig);
        assert!(!denied.message.contains("s3cret"), "{}", denied.message);
    }

    #[test]
    fn bad_configs_fail_the_batch_before_sending() {
        let mock = MockHttp::new();
        assert_eq!(
            testing::validate::<Http>(
                json!({"url": "ftp://u:pw@files.example.com/?k=s3cret", "batch_size": 0})
            ),
            Err(vec![
                r#"url must start with http:// or https://, got "ftp://files.example.com/?…""#
                    .to_owned(),
                "batch_size must be 1 to 10000, got 0".to_owned(),
            ])
        );
        let error =
            testing::write::<Http>(json!({"url": URL, "header": {}}), "post", batch(&["a"]))
                .unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidConfig);
        assert!(
            error.message.contains("unknown field `header`"),
            "{}",
            error.message
        );
        let error = testing::write::<Http>(json!({}), "post", batch(&["a"])).unwrap_err();
        assert_eq!(error.message, "url is required");
        assert!(mock.requests().is_empty());
    }

    #[test]
    fn the_spec_is_one_the_host_accepts() {
        let spec = testing::spec::<Http>().unwrap();
        assert_eq!(spec.name, "http");
        assert!(spec.action("post").is_some());
    }
}
