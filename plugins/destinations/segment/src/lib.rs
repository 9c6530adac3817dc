//! `ebb:segment`: events as calls of Segment's HTTP Tracking API, sent in
//! batches to `{endpoint}/v1/batch` with the write key as the Basic-auth
//! user (RudderStack and Customer.io accept the same requests).
//!
//! The action is the call's type. Of an event's fields, the ones Segment
//! reads at the top of a call (`userId`, `anonymousId`, `groupId`, `event`,
//! `name`, `timestamp`, `context`, `integrations`) go there; the rest
//! become `traits` (identify, group) or `properties` (track, page, screen).
//! `userId` is the record's key unless a field gives it, and `messageId`
//! is the event's delivery id, so a batch sent again is de-duplicated by
//! Segment. A call over Segment's 32 KB is refused on its own, and a batch
//! is cut to stay under 500 KB. A deleted record is skipped, or sent as a
//! `track` of `delete_event` when `on_delete = "track"`.
//!
//! Fields that already are a whole call (a `type` naming one and a
//! `context` object, as a RudderStack-shaped JavaScript transform returns)
//! are sent as that call whatever the action; the `call` action asks for
//! exactly that, so a record that is not one becomes a row error.

use ebb_sdk::batch::{self, Entries};
use ebb_sdk::spec::Rate;
use ebb_sdk::{Action, Destination, Error, Event, Op, Outcome, Record, Spec, http};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Segment's limits: one call, and one request of calls.
const MAX_CALL_BYTES: usize = 32 * 1024;
const MAX_BATCH_BYTES: usize = 500 * 1024;

/// The calls of Segment's spec, as a whole call's `type` names them.
const CALL_TYPES: [&str; 6] = ["identify", "track", "page", "screen", "group", "alias"];

/// Fields Segment reads at the top level of a call.
const RESERVED: [&str; 8] = [
    "userId",
    "anonymousId",
    "groupId",
    "event",
    "name",
    "timestamp",
    "context",
    "integrations",
];

struct Segment;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    write_key: String,
    #[serde(default = "default_endpoint")]
    endpoint: String,
    #[serde(default)]
    on_delete: OnDelete,
    #[serde(default = "default_delete_event")]
    delete_event: String,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum OnDelete {
    /// Nothing is sent; the record counts as synced.
    #[default]
    Skip,
    /// A `track` call of `delete_event`, with the record's last fields.
    Track,
}

fn default_endpoint() -> String {
    "https://api.segment.io".to_owned()
}

fn default_delete_event() -> String {
    "Record Deleted".to_owned()
}

impl Destination for Segment {
    type Config = Config;

    fn spec() -> Spec {
        Spec {
            config_schema: json!({
                "type": "object",
                "required": ["write_key"],
                "additionalProperties": false,
                "properties": {
                    "write_key": { "type": "string", "minLength": 1, "description": "the source's write key; use ${env:…}" },
                    "endpoint": { "type": "string", "description": "base URL (default https://api.segment.io)" },
                    "on_delete": { "enum": ["skip", "track"], "default": "skip" },
                    "delete_event": { "type": "string", "minLength": 1, "default": "Record Deleted" }
                }
            }),
            actions: ["identify", "track", "group", "page", "screen"]
                .into_iter()
                .map(|name| Action::new(name, format!("Segment {name} calls")))
                .chain([Action::new(
                    "call",
                    "fields that are a whole call (`type`, `userId`, `traits`, …), as a RudderStack-shaped JavaScript transform returns",
                )])
                .collect(),
            max_batch_records: 500,
            max_batch_bytes: MAX_BATCH_BYTES,
            hosts: vec!["api.segment.io".to_owned()],
            // Segment asks senders to stay under 500 requests a second.
            rate: Some(Rate::requests(500.0)),
            ..Spec::new("segment", env!("CARGO_PKG_VERSION"))
        }
    }

    fn validate(config: &Config) -> Result<(), Vec<String>> {
        match http::url_problem("endpoint", &config.endpoint) {
            None => Ok(()),
            Some(problem) => Err(vec![problem]),
        }
    }

    fn write(config: &Config, action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        Ok(batch::packed(
            &batch,
            MAX_BATCH_BYTES,
            |event| call(config, action, event),
            |calls, outcomes| send(config, calls, outcomes),
        ))
    }
}

/// The call an event becomes, as JSON; `None` when nothing is sent.
fn call(config: &Config, action: &str, event: &Event) -> Result<Option<String>, Error> {
    if event.op == Op::Deleted && config.on_delete == OnDelete::Skip {
        return Ok(None);
    }
    if let Some(kind) = whole_call(&event.fields) {
        let mut call = event.fields.clone();
        call.entry("messageId")
            .or_insert_with(|| event.delivery_id.clone().into());
        return checked(kind, call).map(Some);
    }
    if action == "call" {
        return Err(Error::rejected(format!(
            "the `call` action sends fields that are a whole Segment call, with `type` one of {} and a `context` object; these fields are not (a JavaScript transform with shape = \"rudderstack\" returns one)",
            CALL_TYPES.join(", ")
        )));
    }
    let (kind, fields) = match (event.op, config.on_delete) {
        (Op::Deleted, OnDelete::Track) => {
            let mut fields = event
                .previous
                .clone()
                .unwrap_or_else(|| event.fields.clone());
            fields.insert("event".into(), config.delete_event.clone().into());
            ("track", fields)
        }
        _ => (action, event.fields.clone()),
    };
    let mut call = Map::new();
    let mut rest = Record::new();
    for (name, value) in fields {
        if RESERVED.contains(&name.as_str()) {
            call.insert(name, value);
        } else {
            rest.insert(name, value);
        }
    }
    call.entry("userId")
        .or_insert_with(|| event.id.clone().into());
    let bag = match kind {
        "identify" | "group" => "traits",
        _ => "properties",
    };
    call.insert(bag.into(), Value::Object(rest));
    call.insert("type".into(), kind.into());
    call.insert("messageId".into(), event.delivery_id.clone().into());
    checked(kind, call).map(Some)
}

/// The call type of fields that already are a whole call.
fn whole_call(fields: &Record) -> Option<&str> {
    let kind = fields.get("type")?.as_str()?;
    (CALL_TYPES.contains(&kind) && fields.get("context").is_some_and(Value::is_object))
        .then_some(kind)
}

/// The call as JSON, once it has what its type needs and fits Segment's
/// limit.
fn checked(kind: &str, call: Map<String, Value>) -> Result<String, Error> {
    let needs: &[&str] = match kind {
        "track" => &["event"],
        "group" => &["groupId"],
        "alias" => &["previousId"],
        _ => &[],
    };
    if let Some(field) = needs
        .iter()
        .find(|f| call.get(**f).is_none_or(Value::is_null))
    {
        return Err(Error::rejected(format!(
            "a {kind} call needs `{field}`; map a column to it (mapping = {{ \"{field}\" = \"…\" }}) or set it in the transform"
        )));
    }
    let text = Value::Object(call).to_string();
    if text.len() > MAX_CALL_BYTES {
        return Err(Error::rejected(format!(
            "the {kind} call is {} bytes, over Segment's limit of 32 KB; send fewer or shorter fields",
            text.len()
        )));
    }
    Ok(text)
}

/// Sends the calls in one request, writing their outcome if it failed.
fn send(config: &Config, calls: Entries, outcomes: &mut [Outcome]) {
    let body = format!("{{\"batch\":{}}}", calls.json_array());
    let url = format!("{}/v1/batch", config.endpoint.trim_end_matches('/'));
    let sent = http::post(url)
        .basic_auth(&config.write_key, "")
        .header("content-type", "application/json")
        .body(body)
        .send();
    let failure = match sent {
        Ok(response) => response.error(),
        Err(error) => Some(error),
    };
    if let Some(error) = failure {
        calls.fail(error, outcomes);
    }
}

ebb_sdk::export_destination!(Segment);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::testing::{self, MockHttp, Reply};

    fn config() -> Value {
        json!({ "write_key": "wk", "endpoint": "https://seg.example" })
    }

    fn sent(mock: &MockHttp) -> Vec<Value> {
        mock.requests()
            .iter()
            .flat_map(|r| {
                r.body_json::<Value>().unwrap()["batch"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .collect()
    }

    #[test]
    fn identify_puts_reserved_fields_on_top_and_the_rest_in_traits() {
        let mock = MockHttp::new().respond(200, r#"{"success":true}"#);
        let mut event = testing::event(
            Op::Added,
            "42",
            json!({"email": "ada@example.com", "context": {"ip": "0.0.0.0"}, "plan": "pro"}),
        );
        event.delivery_id = "d-42".into();
        let outcomes = testing::write::<Segment>(config(), "identify", vec![event]);
        assert_eq!(outcomes, Ok(vec![Outcome::Ok]));
        let request = &mock.requests()[0];
        assert_eq!(request.url(), "https://seg.example/v1/batch");
        assert_eq!(request.header("authorization"), Some("Basic d2s6"));
        assert_eq!(
            sent(&mock),
            [json!({
                "type": "identify",
                "userId": "42",
                "messageId": "d-42",
                "context": {"ip": "0.0.0.0"},
                "traits": {"email": "ada@example.com", "plan": "pro"}
            })]
        );
    }

    #[test]
    fn track_needs_an_event_name_and_puts_the_rest_in_properties() {
        let mock = MockHttp::new().respond(200, "{}");
        let batch = vec![
            testing::event(
                Op::Added,
                "1",
                json!({"event": "Signed Up", "userId": "u1", "n": 1}),
            ),
            testing::event(Op::Added, "2", json!({"n": 2})),
        ];
        let outcomes = testing::write::<Segment>(config(), "track", batch).unwrap();
        assert_eq!(outcomes[0], Outcome::Ok);
        assert!(matches!(&outcomes[1], Outcome::Reject(e) if e.message.contains("needs `event`")));
        assert_eq!(
            sent(&mock),
            [
                json!({"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "test-1", "properties": {"n": 1}})
            ]
        );
    }

    #[test]
    fn whole_calls_are_sent_as_they_are_whatever_the_action() {
        let mock = MockHttp::new().respond(200, "{}").respond(200, "{}");
        let group = json!({
            "type": "group", "groupId": "acme", "userId": "7",
            "traits": {"plan": "pro"},
            "context": {"externalId": [{"id": "7", "type": "ACCOUNT"}]},
            "integrations": {"All": false},
        });
        let mut event = testing::event(Op::Updated, "7", group.clone());
        event.delivery_id = "d-7".into();
        let no_group_id = testing::event(
            Op::Added,
            "8",
            json!({"type": "group", "context": {}, "traits": {}}),
        );
        let plain = testing::event(Op::Added, "9", json!({"type": "customer"}));
        let outcomes =
            testing::write::<Segment>(config(), "identify", vec![event.clone()]).unwrap();
        assert_eq!(outcomes, [Outcome::Ok]);
        let outcomes =
            testing::write::<Segment>(config(), "call", vec![event, no_group_id, plain]).unwrap();
        assert_eq!(outcomes[0], Outcome::Ok);
        assert!(
            matches!(&outcomes[1], Outcome::Reject(e) if e.message.contains("needs `groupId`"))
        );
        assert!(
            matches!(&outcomes[2], Outcome::Reject(e) if e.message.contains("whole Segment call"))
        );
        let mut expected = group;
        expected["messageId"] = json!("d-7");
        assert_eq!(sent(&mock), [expected.clone(), expected]);
    }

    #[test]
    fn deletions_are_skipped_or_tracked() {
        let gone = || vec![testing::deleted("7", json!({"email": "x@example.com"}))];
        let mock = MockHttp::new().respond(200, "{}");
        assert_eq!(
            testing::write::<Segment>(config(), "identify", gone()),
            Ok(vec![Outcome::Ok])
        );
        assert!(mock.requests().is_empty());

        let mut tracked = config();
        tracked["on_delete"] = "track".into();
        testing::write::<Segment>(tracked, "identify", gone()).unwrap();
        assert_eq!(
            sent(&mock),
            [
                json!({"type": "track", "event": "Record Deleted", "userId": "7", "messageId": "test-7", "properties": {"email": "x@example.com"}})
            ]
        );
    }

    #[test]
    fn oversize_calls_are_refused_alone_and_batches_stay_under_500_kb() {
        let mock = MockHttp::new().route(http::Method::POST, "/v1/batch", Reply::status(200));
        let mut batch = vec![testing::event(
            Op::Added,
            "big",
            json!({"x": "x".repeat(40_000)}),
        )];
        for i in 0..40 {
            batch.push(testing::event(
                Op::Added,
                i.to_string(),
                json!({"x": "y".repeat(30_000)}),
            ));
        }
        let outcomes = testing::write::<Segment>(config(), "identify", batch).unwrap();
        assert!(matches!(&outcomes[0], Outcome::Reject(e) if e.message.contains("32 KB")));
        assert!(outcomes[1..].iter().all(|o| *o == Outcome::Ok));
        let requests = mock.requests();
        assert!(requests.len() >= 3, "{} requests", requests.len());
        assert!(requests.iter().all(|r| r.body().len() < MAX_BATCH_BYTES));
        assert_eq!(sent(&mock).len(), 40);
    }

    #[test]
    fn failures_answer_for_the_batch() {
        let _mock = MockHttp::new()
            .respond(429, "slow down")
            .respond(401, "bad key");
        let batch = vec![testing::event(Op::Added, "1", json!({}))];
        let outcomes = testing::write::<Segment>(config(), "identify", batch).unwrap();
        assert!(matches!(&outcomes[0], Outcome::Retry(_)), "{outcomes:?}");

        let batch = vec![testing::event(Op::Added, "1", json!({}))];
        let outcomes = testing::write::<Segment>(config(), "identify", batch).unwrap();
        assert!(
            matches!(&outcomes[0], Outcome::Reject(e) | Outcome::Retry(e) if e.message.contains("401")),
            "{outcomes:?}"
        );
    }
}
