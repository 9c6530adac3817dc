//! `track`: each record becomes one event, imported with
//! `POST /import?strict=1&project_id=…` as a service account.
//!
//! The record's `event` field names the event and the other fields are its
//! properties. `time` is required (Mixpanel has no default for an import)
//! and is sent in milliseconds. `distinct_id` is the record's key unless a
//! field gives it, and `$insert_id` is derived from the delivery id, so an
//! event Ebb sends again is de-duplicated by Mixpanel: it counts events
//! alike in (event, time, distinct_id, $insert_id) once.
//!
//! With `strict=1`, a 400 lists the events Mixpanel refused by their index
//! in the request (`failed_records`) and the others are ingested: only
//! those records are rejected. A deleted record sends nothing.

use crate::{
    Config, Item, MAX_IMPORT_BYTES, MAX_RECORDS, TIMEOUT, body, check_size, fail, needs, requests,
    take_text, time,
};
use ebb_sdk::{Error, Event, Op, Outcome, http};
use serde::Deserialize;
use serde_json::json;

/// Values Mixpanel refuses as an `$insert_id` (and as a `distinct_id`)
/// that are otherwise made of the characters it allows.
const PLACEHOLDERS: [&str; 13] = [
    "00000000-0000-0000-0000-000000000000",
    "anon",
    "anonymous",
    "nil",
    "none",
    "null",
    "na",
    "undefined",
    "unknown",
    "0",
    "-1",
    "true",
    "false",
];

/// Where and as whom events are imported.
struct Import<'a> {
    url: String,
    project_id: &'a str,
    service_account: &'a str,
    secret: &'a str,
}

/// One entry of a 400's `failed_records`.
#[derive(Deserialize)]
struct FailedRecord {
    index: usize,
    #[serde(default)]
    field: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct Refusal {
    failed_records: Vec<FailedRecord>,
}

pub fn write(config: &Config, batch: &[Event]) -> Result<Vec<Outcome>, Error> {
    let import = Import {
        url: config.url("/import"),
        project_id: needs(&config.project_id, "project_id", "track")?,
        service_account: needs(&config.service_account, "service_account", "track")?,
        secret: needs(&config.secret, "secret", "track")?,
    };
    let mut outcomes = vec![Outcome::Ok; batch.len()];
    let mut items = Vec::new();
    for (index, event) in batch.iter().enumerate() {
        if event.op == Op::Deleted {
            continue;
        }
        match encode(event) {
            Ok(json) => items.push(Item {
                index,
                json,
                objects: 1,
            }),
            Err(error) => outcomes[index] = Outcome::Reject(error),
        }
    }
    for request in requests(items, MAX_RECORDS, MAX_IMPORT_BYTES) {
        send(&import, &request, &mut outcomes);
    }
    Ok(outcomes)
}

/// The event a record becomes, as JSON.
fn encode(event: &Event) -> Result<String, Error> {
    let mut properties = event.fields.clone();
    let Some(name) = take_text(&mut properties, "event").filter(|name| !name.is_empty()) else {
        return Err(Error::rejected(
            "an event needs a name in `event`; map a column to it (mapping = { \"event\" = \"…\" }) \
             or select one in the model (`'Signed Up' AS event`)",
        ));
    };
    let time = match properties.get("time").filter(|time| !time.is_null()) {
        Some(time) => time::millis(time).map_err(Error::rejected)?,
        None => {
            return Err(Error::rejected(
                "an event needs `time`; map a timestamp column to it (mapping = { \"time\" = \"…\" })",
            ));
        }
    };
    properties.insert("time".into(), time.into());
    let distinct_id = take_text(&mut properties, "distinct_id").unwrap_or_else(|| event.id.clone());
    properties.insert("distinct_id".into(), distinct_id.into());
    properties
        .entry("$insert_id")
        .or_insert_with(|| insert_id(&event.delivery_id).into());
    let json = json!({ "event": name, "properties": properties }).to_string();
    check_size("event", &json)?;
    Ok(json)
}

/// The `$insert_id` of an event sent with `delivery_id`: at most 36 of
/// `[A-Za-z0-9-]` and no placeholder. Ebb's delivery ids (32 hex digits,
/// `-N` for the events a transform splits a change into) fit as they are;
/// any other is replaced by a digest of it, the same each time.
fn insert_id(delivery_id: &str) -> String {
    let fits = (1..=36).contains(&delivery_id.len())
        && delivery_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !PLACEHOLDERS.contains(&delivery_id.to_ascii_lowercase().as_str());
    if fits {
        return delivery_id.to_owned();
    }
    // 64-bit FNV-1a, forwards and backwards: 32 hex digits.
    let fnv = |bytes: &mut dyn Iterator<Item = u8>| {
        bytes.fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let forwards = fnv(&mut delivery_id.bytes());
    let backwards = fnv(&mut delivery_id.bytes().rev().chain([0xff]));
    format!("{forwards:016x}{backwards:016x}")
}

/// Imports one request's events, writing each one's outcome.
fn send(import: &Import, request: &[Item], outcomes: &mut [Outcome]) {
    let sent = http::post(&import.url)
        .query("strict", "1")
        .query("project_id", import.project_id)
        .basic_auth(import.service_account, import.secret)
        .header("content-type", "application/json")
        .body(body(request))
        .timeout(TIMEOUT)
        .send();
    let response = match sent {
        Ok(response) => response,
        Err(error) => return fail(request, error, outcomes),
    };
    let refused = (response.status == 400)
        .then(|| response.json::<Refusal>().ok())
        .flatten()
        .filter(|refusal| !refusal.failed_records.is_empty());
    if let Some(refusal) = refused {
        for record in refusal.failed_records {
            if let Some(item) = request.get(record.index) {
                let why = format!(
                    "Mixpanel refused the event ({}): {}",
                    record.field, record.message
                );
                outcomes[item.index] = Outcome::Reject(Error::rejected(why));
            }
        }
    } else if let Some(error) = response.error() {
        fail(request, error, outcomes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mixpanel;
    use ebb_sdk::ErrorKind;
    use ebb_sdk::testing::{self, MockHttp, Reply};
    use serde_json::Value;

    fn config() -> Value {
        json!({
            "project_id": 42,
            "service_account": "sa.ebb",
            "secret": "s3cret",
            "endpoint": "https://mp.example/",
        })
    }

    fn signed_up(id: u32) -> Event {
        testing::event(
            Op::Added,
            id.to_string(),
            json!({"event": "Signed Up", "time": "2024-05-01T10:00:00Z", "plan": "pro"}),
        )
    }

    fn sent(mock: &MockHttp) -> Vec<Value> {
        mock.requests()
            .iter()
            .flat_map(|r| r.body_json::<Vec<Value>>().unwrap())
            .collect()
    }

    #[test]
    fn events_are_imported_as_the_service_account() {
        let mock = MockHttp::new().reply(
            Reply::status(200)
                .json(&json!({"code": 200, "num_records_imported": 1, "status": "OK"})),
        );
        let outcomes = testing::write::<Mixpanel>(config(), "track", vec![signed_up(7)]);
        assert_eq!(outcomes, Ok(vec![Outcome::Ok]));
        let request = &mock.requests()[0];
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.url(),
            "https://mp.example/import?strict=1&project_id=42"
        );
        // base64("sa.ebb:s3cret")
        assert_eq!(
            request.header("authorization"),
            Some("Basic c2EuZWJiOnMzY3JldA==")
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            sent(&mock),
            [json!({"event": "Signed Up", "properties": {
                "time": 1_714_557_600_000_i64,
                "distinct_id": "7",
                "$insert_id": "test-7",
                "plan": "pro",
            }})]
        );
    }

    #[test]
    fn fields_may_give_the_distinct_id_and_insert_id() {
        let mock = MockHttp::new().respond(200, "{}");
        let event = testing::event(
            Op::Updated,
            "7",
            json!({"event": "Upgraded", "time": 1_714_557_600, "distinct_id": 99, "$insert_id": "mine"}),
        );
        testing::write::<Mixpanel>(config(), "track", vec![event]).unwrap();
        let properties = &sent(&mock)[0]["properties"];
        assert_eq!(properties["distinct_id"], "99");
        assert_eq!(properties["$insert_id"], "mine");
        assert_eq!(properties["time"], 1_714_557_600_000_i64);
    }

    #[test]
    fn records_without_a_name_or_time_are_rejected_alone() {
        let mock = MockHttp::new().respond(200, "{}");
        let batch = vec![
            testing::event(Op::Added, "1", json!({"time": 1_714_557_600})),
            testing::event(Op::Added, "2", json!({"event": "Signed Up"})),
            testing::event(
                Op::Added,
                "3",
                json!({"event": "Signed Up", "time": "soon"}),
            ),
            signed_up(4),
        ];
        let outcomes = testing::write::<Mixpanel>(config(), "track", batch).unwrap();
        let reason = |i: usize| match &outcomes[i] {
            Outcome::Reject(e) => e.message.clone(),
            other => panic!("{i}: {other:?}"),
        };
        assert!(
            reason(0).contains("needs a name in `event`"),
            "{}",
            reason(0)
        );
        assert!(reason(1).contains("needs `time`"), "{}", reason(1));
        assert!(reason(2).contains(r#"`time` is "soon""#), "{}", reason(2));
        assert_eq!(outcomes[3], Outcome::Ok);
        assert_eq!(sent(&mock).len(), 1);
    }

    #[test]
    fn insert_ids_conform_and_stay_the_same() {
        let ebb = "0123456789abcdef0123456789abcdef-12";
        assert_eq!(insert_id(ebb), ebb);
        for odd in [
            "",
            "null",
            "a/b",
            &"x".repeat(37),
            "0123456789abcdef0123456789abcdef-1234",
        ] {
            let id = insert_id(odd);
            assert_eq!(id.len(), 32, "{odd:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{odd:?}");
            assert_eq!(id, insert_id(odd));
        }
        assert_ne!(insert_id("a/b"), insert_id("b/a"));
    }

    #[test]
    fn requests_hold_at_most_2000_events_and_10_mb() {
        let mock = MockHttp::new().route(http::Method::POST, "/import", Reply::status(200));
        let batch: Vec<Event> = (0..2500).map(signed_up).collect();
        let outcomes = testing::write::<Mixpanel>(config(), "track", batch).unwrap();
        assert!(outcomes.iter().all(|o| *o == Outcome::Ok));
        let counts: Vec<usize> = mock
            .requests()
            .iter()
            .map(|r| r.body_json::<Vec<Value>>().unwrap().len())
            .collect();
        assert_eq!(counts, [2000, 500]);

        let mock_big = {
            drop(mock);
            MockHttp::new().route(http::Method::POST, "/import", Reply::status(200))
        };
        let big = |id: u32| {
            let mut event = signed_up(id);
            event
                .fields
                .insert("blob".into(), "x".repeat(900_000).into());
            event
        };
        let mut batch: Vec<Event> = (0..25).map(big).collect();
        batch[3]
            .fields
            .insert("blob".into(), "x".repeat(1_100_000).into());
        let outcomes = testing::write::<Mixpanel>(config(), "track", batch).unwrap();
        assert!(
            matches!(&outcomes[3], Outcome::Reject(e) if e.message.contains("over Mixpanel's limit of 1 MB"))
        );
        assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Ok).count(), 24);
        let requests = mock_big.requests();
        assert_eq!(requests.len(), 3);
        assert!(requests.iter().all(|r| r.body().len() <= MAX_IMPORT_BYTES));
    }

    #[test]
    fn failed_records_reject_exactly_those_events() {
        let _mock = MockHttp::new().reply(Reply::status(400).json(&json!({
            "code": 400,
            "error": "some data points in the request failed validation",
            "num_records_imported": 2,
            "status": "Bad Request",
            "failed_records": [{
                "index": 1,
                "$insert_id": "test-2",
                "field": "properties.time",
                "message": "'properties.time' is invalid: must be specified as seconds since epoch"
            }]
        })));
        let batch = vec![signed_up(1), signed_up(2), signed_up(3)];
        let outcomes = testing::write::<Mixpanel>(config(), "track", batch).unwrap();
        assert_eq!(outcomes[0], Outcome::Ok);
        assert_eq!(outcomes[2], Outcome::Ok);
        assert_eq!(
            outcomes[1],
            Outcome::Reject(Error::rejected(
                "Mixpanel refused the event (properties.time): 'properties.time' is invalid: \
                 must be specified as seconds since epoch"
            ))
        );
    }

    #[test]
    fn refusals_of_the_request_answer_for_every_event() {
        let _mock = MockHttp::new()
            .reply(Reply::status(401).json(
                &json!({"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}),
            ))
            .reply(Reply::status(429).json(&json!({
                "code": 429,
                "error": "Project exceeded rate limits. Please retry the request with exponential backoff.",
                "status": "Too Many Requests"
            })))
            .reply(Reply::status(429).header("Retry-After", "3"))
            .respond(502, "Bad Gateway")
            .respond(400, r#"{"code":400,"error":"unable to parse body","status":"Bad Request"}"#);
        let write = || {
            testing::write::<Mixpanel>(config(), "track", vec![signed_up(1), signed_up(2)]).unwrap()
        };

        let auth = write();
        assert!(
            matches!(&auth[1], Outcome::Reject(e) if e.kind == ErrorKind::Auth && e.message.contains("Invalid credentials")),
            "{auth:?}"
        );
        let limited = write();
        assert!(
            matches!(&limited[0], Outcome::Retry(e) if e.kind == ErrorKind::RateLimited && e.retry_after_ms.is_none()),
            "{limited:?}"
        );
        let waited = write();
        assert!(
            matches!(&waited[1], Outcome::Retry(e) if e.retry_after_ms == Some(3000)),
            "{waited:?}"
        );
        let down = write();
        assert!(
            matches!(&down[0], Outcome::Retry(e) if e.kind == ErrorKind::Transient),
            "{down:?}"
        );
        let malformed = write();
        assert!(
            matches!(&malformed[1], Outcome::Reject(e) if e.message.contains("unable to parse body")),
            "{malformed:?}"
        );
    }

    #[test]
    fn deletions_send_nothing_and_credentials_are_required() {
        let mock = MockHttp::new();
        let gone = testing::event(Op::Deleted, "1", json!({}));
        let outcomes = testing::write::<Mixpanel>(config(), "track", vec![gone.clone()]);
        assert_eq!(outcomes, Ok(vec![Outcome::Ok]));
        assert!(mock.requests().is_empty());

        let error = testing::write::<Mixpanel>(json!({"project_token": "t"}), "track", vec![gone])
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidConfig);
        assert_eq!(
            error.message,
            "the track action needs `project_id` in the destination's config"
        );
    }
}
