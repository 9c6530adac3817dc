//! `ebb:braze`: records as objects of Braze's `POST /users/track` (user
//! attributes, custom events or purchases, one kind per sync), sent to the
//! workspace's REST endpoint with the REST API key as a Bearer token.
//!
//! The action picks the array: `attributes` sends the record's fields as
//! the user's attributes; `event` and `purchase` keep the fields Braze
//! reads at the top of the object (`name`, `time`, `product_id`, …) and put
//! the rest in `properties`. `external_id` is the record's key unless a
//! field gives it, and `time` is the moment of sending unless a field gives
//! it. A request carries at most 75 objects, Braze's limit; the errors a
//! 2xx answer lists by `input_array` and `index` reject exactly those
//! objects' records. A 429 is retried when Braze's `X-RateLimit-Reset`
//! says. A deleted record is skipped, or (`on_delete = "delete"`) its user
//! is deleted through `POST /users/delete`, at most 50 to a request.

use ebb_sdk::spec::Rate;
use ebb_sdk::{Action, Destination, Error, ErrorKind, Event, FieldType, Op, Outcome, Record, Spec};
use ebb_sdk::{http, log};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// Objects in one `/users/track` request: 75 of a kind, and since late
/// 2024 75 in all for workspaces on the newer limits (a request here only
/// ever holds one kind).
const MAX_TRACK_OBJECTS: usize = 75;
/// External ids in one `/users/delete` request.
const MAX_DELETE_IDS: usize = 50;
/// Braze publishes no body limit; 75 objects whose properties may reach
/// Braze's 50 KB each.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// The US-01 instance, the one Braze's reference uses; other workspaces set
/// their own in `endpoint`.
const DEFAULT_HOST: &str = "rest.iad-01.braze.com";

struct Braze;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    api_key: String,
    #[serde(default = "default_endpoint")]
    endpoint: String,
    #[serde(default)]
    on_delete: OnDelete,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum OnDelete {
    /// Nothing is sent; the record counts as synced.
    #[default]
    Skip,
    /// The user whose `external_id` the record was is deleted in Braze.
    Delete,
}

fn default_endpoint() -> String {
    format!("https://{DEFAULT_HOST}")
}

/// What the sync's action makes of a record: an object of one of
/// `/users/track`'s arrays.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Attributes,
    Event,
    Purchase,
}

impl Kind {
    fn of(action: &str) -> Option<Kind> {
        match action {
            "attributes" => Some(Kind::Attributes),
            "event" => Some(Kind::Event),
            "purchase" => Some(Kind::Purchase),
            _ => None,
        }
    }

    /// The request's array this kind of object goes in.
    fn array(self) -> &'static str {
        match self {
            Kind::Attributes => "attributes",
            Kind::Event => "events",
            Kind::Purchase => "purchases",
        }
    }

    /// Fields Braze reads at the top of the object; an event's or a
    /// purchase's other fields are its `properties`.
    fn top_level(self) -> &'static [&'static str] {
        match self {
            Kind::Attributes => &[],
            Kind::Event => &[
                "external_id",
                "app_id",
                "name",
                "time",
                "_update_existing_only",
            ],
            Kind::Purchase => &[
                "external_id",
                "app_id",
                "product_id",
                "currency",
                "price",
                "quantity",
                "time",
                "_update_existing_only",
            ],
        }
    }

    /// Fields Braze requires besides `external_id` and `time`.
    fn required(self) -> &'static [&'static str] {
        match self {
            Kind::Attributes => &[],
            Kind::Event => &["name"],
            Kind::Purchase => &["product_id", "currency", "price"],
        }
    }
}

impl Destination for Braze {
    type Config = Config;

    fn spec() -> Spec {
        Spec {
            config_schema: json!({
                "type": "object",
                "required": ["api_key"],
                "additionalProperties": false,
                "properties": {
                    "api_key": { "type": "string", "minLength": 1, "description": "a REST API key with users.track (and users.delete for on_delete = \"delete\"); use ${env:…}" },
                    "endpoint": { "type": "string", "description": "the workspace's REST endpoint (default https://rest.iad-01.braze.com)" },
                    "on_delete": { "enum": ["skip", "delete"], "default": "skip", "description": "\"skip\" sends nothing for a deleted record; \"delete\" deletes its user through /users/delete" }
                }
            }),
            actions: actions(),
            max_batch_records: MAX_TRACK_OBJECTS,
            max_batch_bytes: MAX_BATCH_BYTES,
            hosts: vec![DEFAULT_HOST.to_owned()],
            // `/users/track`: 3,000 requests per 3 seconds per workspace.
            rate: Some(Rate::requests(1000.0)),
            ..Spec::new("braze", env!("CARGO_PKG_VERSION"))
        }
    }

    fn validate(config: &Config) -> Result<(), Vec<String>> {
        let endpoint = &config.endpoint;
        let problems: Vec<String> = [
            config.api_key.trim().is_empty().then(|| {
                "api_key is empty; set it to a REST API key (api_key = \"${env:BRAZE_API_KEY}\")"
                    .to_owned()
            }),
            http::url_problem("endpoint", endpoint).map(|problem| {
                format!("{problem}; use your workspace's REST endpoint, such as https://rest.iad-01.braze.com")
            }),
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
        let kind = Kind::of(action).ok_or_else(|| {
            Error::invalid_config(format!(
                "unknown action `{action}`; use attributes, event or purchase"
            ))
        })?;
        let now = iso8601(SystemTime::now());
        let mut outcomes = vec![Outcome::Ok; batch.len()];
        let mut tracked: Vec<(usize, Value)> = Vec::new();
        let mut deleted: Vec<(usize, String)> = Vec::new();
        for (i, event) in batch.iter().enumerate() {
            let planned = match (event.op, config.on_delete) {
                (Op::Deleted, OnDelete::Skip) => continue,
                (Op::Deleted, OnDelete::Delete) => {
                    let last = event.previous.as_ref().unwrap_or(&event.fields);
                    external_id(last, &event.id).map(|id| deleted.push((i, id)))
                }
                _ => object(kind, event, &now).map(|object| tracked.push((i, object))),
            };
            if let Err(error) = planned {
                outcomes[i] = Outcome::Reject(error);
            }
        }
        for objects in tracked.chunks(MAX_TRACK_OBJECTS) {
            track(config, kind, objects, &mut outcomes);
        }
        for ids in deleted.chunks(MAX_DELETE_IDS) {
            delete(config, ids, &mut outcomes);
        }
        Ok(outcomes)
    }
}

/// The three actions and the fields a mapping may fill.
fn actions() -> Vec<Action> {
    use FieldType::{Integer, Number, Object, String};
    vec![
        Action::new(
            "attributes",
            "user attributes: the record's fields, by external_id",
        )
        .field("external_id", String, false),
        Action::new("event", "custom events: name, time and properties")
            .field("external_id", String, false)
            .field("name", String, true)
            .field("time", String, false)
            .field("properties", Object, false),
        Action::new(
            "purchase",
            "purchases: product_id, currency, price, time and properties",
        )
        .field("external_id", String, false)
        .field("product_id", String, true)
        .field("currency", String, true)
        .field("price", Number, true)
        .field("quantity", Integer, false)
        .field("time", String, false)
        .field("properties", Object, false),
    ]
}

/// The Braze user a record stands for: its `external_id` field, else the
/// record's key.
fn external_id(fields: &Record, key: &str) -> Result<String, Error> {
    match fields.get("external_id") {
        None => Ok(key.to_owned()),
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        Some(Value::Number(id)) => Ok(id.to_string()),
        Some(other) => Err(Error::rejected(format!(
            "`external_id` must be a non-empty string or a number, got {other}; map a column that holds one, or leave it unmapped to use the record's key"
        ))),
    }
}

/// The `/users/track` object an event becomes.
fn object(kind: Kind, event: &Event, now: &str) -> Result<Value, Error> {
    let mut fields = event.fields.clone();
    let id = external_id(&fields, &event.id)?;
    fields.insert("external_id".into(), id.into());
    if kind == Kind::Attributes {
        return Ok(Value::Object(fields));
    }
    let mut properties = match fields.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(properties)) => properties,
        Some(other) => {
            return Err(Error::rejected(format!(
                "`properties` must be an object, got {other}; map columns to properties.NAME instead"
            )));
        }
    };
    let mut object = Map::new();
    for (name, value) in fields {
        if kind.top_level().contains(&name.as_str()) {
            object.insert(name, value);
        } else {
            properties.insert(name, value);
        }
    }
    let missing = kind
        .required()
        .iter()
        .find(|field| object.get(**field).is_none_or(Value::is_null));
    if let Some(field) = missing {
        return Err(Error::rejected(format!(
            "a Braze {} needs `{field}`; map a column to it (mapping = {{ \"{field}\" = \"…\" }})",
            kind.array().trim_end_matches('s')
        )));
    }
    object
        .entry("time")
        .or_insert_with(|| now.to_owned().into());
    if !properties.is_empty() {
        object.insert("properties".into(), Value::Object(properties));
    }
    Ok(Value::Object(object))
}

/// Sends one `/users/track` request and writes each object's outcome: the
/// request's failure for all, or the errors a 2xx answer ties to objects.
fn track(config: &Config, kind: Kind, objects: &[(usize, Value)], outcomes: &mut [Outcome]) {
    let array: Vec<&Value> = objects.iter().map(|(_, object)| object).collect();
    let answer = match send(config, "/users/track", &json!({ kind.array(): array })) {
        Ok(answer) => answer,
        Err(error) => return fail_all(objects.iter().map(|(i, _)| *i), error, outcomes),
    };
    for error in answer["errors"].as_array().into_iter().flatten() {
        let index = error["index"]
            .as_u64()
            .and_then(|i| usize::try_from(i).ok());
        let in_array = error["input_array"]
            .as_str()
            .is_none_or(|name| name == kind.array());
        match index.and_then(|i| objects.get(i)).filter(|_| in_array) {
            Some((record, _)) => {
                let why = error["type"].as_str().unwrap_or("no reason given");
                outcomes[*record] = Outcome::Reject(Error::rejected(format!(
                    "Braze refused the object in `{}`: {why}",
                    kind.array()
                )));
            }
            None => log::warn(&format!(
                "Braze reported an error tied to no object sent: {error}"
            )),
        }
    }
}

/// Sends one `/users/delete` request for `ids`, writing their outcomes.
fn delete(config: &Config, ids: &[(usize, String)], outcomes: &mut [Outcome]) {
    let external_ids: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    let body = json!({ "external_ids": external_ids });
    if let Err(error) = send(config, "/users/delete", &body) {
        fail_all(ids.iter().map(|(i, _)| *i), error, outcomes);
    }
}

fn fail_all(records: impl Iterator<Item = usize>, error: Error, outcomes: &mut [Outcome]) {
    for i in records {
        outcomes[i] = Outcome::from(error.clone());
    }
}

/// POSTs `body` to `path` and returns Braze's JSON answer (`null` when a
/// 2xx has none), or what a failure means for the records in it.
fn send(config: &Config, path: &str, body: &Value) -> Result<Value, Error> {
    let url = format!("{}{path}", config.endpoint.trim_end_matches('/'));
    let response = http::post(url).bearer(&config.api_key).json(body).send()?;
    match failure(&response) {
        Some(error) => Err(error),
        None => Ok(response.json().unwrap_or(Value::Null)),
    }
}

/// The SDK's reading of a failed response, with Braze's own rate-limit
/// header for when to retry and a hint for refused keys.
fn failure(response: &http::Response) -> Option<Error> {
    let error = response.error()?;
    Some(match error.kind {
        ErrorKind::RateLimited => {
            let wait = reset_wait_ms(response, SystemTime::now()).or(error.retry_after_ms);
            error.with_retry_after_ms(wait)
        }
        ErrorKind::Auth => Error::auth(format!(
            "{}; check api_key, its permissions (users.track, users.delete) and that endpoint is your workspace's REST endpoint",
            error.message
        )),
        _ => error,
    })
}

/// Milliseconds from `now` until `X-RateLimit-Reset` (UTC epoch seconds),
/// when Braze sent one.
fn reset_wait_ms(response: &http::Response, now: SystemTime) -> Option<u64> {
    let reset = response
        .header("x-ratelimit-reset")?
        .trim()
        .parse::<f64>()
        .ok()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    // Rounded up, so a retry never comes before the reset.
    Some(((reset - now).max(0.0) * 1000.0).ceil() as u64)
}

/// `at` as ISO 8601 in UTC to the second (`2024-02-29T12:00:00Z`).
fn iso8601(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, time) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        time / 3_600,
        time % 3_600 / 60,
        time % 60
    )
}

ebb_sdk::export_destination!(Braze);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::testing::{self, MockHttp, Reply};
    use std::time::Duration;

    fn config() -> Value {
        json!({ "api_key": "rk", "endpoint": "https://braze.example/" })
    }

    fn success() -> Reply {
        Reply::status(201).json(&json!({"message": "success"}))
    }

    fn users(n: usize) -> Vec<Event> {
        (1..=n)
            .map(|i| testing::event(Op::Added, i.to_string(), json!({"plan": "pro"})))
            .collect()
    }

    #[test]
    fn attributes_are_the_fields_by_external_id() {
        let mock = MockHttp::new().reply(success());
        let batch = vec![
            testing::event(
                Op::Added,
                "42",
                json!({"email": "ada@example.com", "plan": "pro"}),
            ),
            testing::event(
                Op::Updated,
                "7",
                json!({"external_id": "u-7", "plan": null}),
            ),
        ];
        let outcomes = testing::write::<Braze>(config(), "attributes", batch);
        assert_eq!(outcomes, Ok(vec![Outcome::Ok, Outcome::Ok]));
        let request = &mock.requests()[0];
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.url(), "https://braze.example/users/track");
        assert_eq!(request.header("authorization"), Some("Bearer rk"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.body_json::<Value>().unwrap(),
            json!({"attributes": [
                {"external_id": "42", "email": "ada@example.com", "plan": "pro"},
                {"external_id": "u-7", "plan": null}
            ]})
        );
    }

    #[test]
    fn events_keep_braze_fields_on_top_and_the_rest_in_properties() {
        let mock = MockHttp::new().reply(success());
        let batch = vec![
            testing::event(
                Op::Added,
                "1",
                json!({"name": "Upgraded", "time": "2024-02-29T12:00:00Z", "plan": "pro", "properties": {"seats": 3}}),
            ),
            testing::event(Op::Added, "2", json!({"name": "Upgraded"})),
            testing::event(Op::Added, "3", json!({"plan": "pro"})),
        ];
        let outcomes = testing::write::<Braze>(config(), "event", batch).unwrap();
        assert_eq!(outcomes[..2], [Outcome::Ok, Outcome::Ok]);
        assert!(
            matches!(&outcomes[2], Outcome::Reject(e) if e.message.contains("a Braze event needs `name`")),
            "{outcomes:?}"
        );
        let sent: Value = mock.requests()[0].body_json().unwrap();
        assert_eq!(
            sent["events"][0],
            json!({"external_id": "1", "name": "Upgraded", "time": "2024-02-29T12:00:00Z", "properties": {"seats": 3, "plan": "pro"}})
        );
        let stamped = sent["events"][1]["time"].as_str().unwrap();
        assert!(stamped.ends_with('Z') && stamped.len() == 20, "{stamped}");
        assert_eq!(sent["events"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn purchases_need_product_currency_and_price() {
        let mock = MockHttp::new().reply(success());
        let batch = vec![
            testing::event(
                Op::Added,
                "1",
                json!({"product_id": "pro", "currency": "USD", "price": 12.5, "quantity": 2, "coupon": "X"}),
            ),
            testing::event(Op::Added, "2", json!({"product_id": "pro", "price": 1})),
        ];
        let outcomes = testing::write::<Braze>(config(), "purchase", batch).unwrap();
        assert_eq!(outcomes[0], Outcome::Ok);
        assert!(
            matches!(&outcomes[1], Outcome::Reject(e) if e.message.contains("needs `currency`"))
        );
        let sent: Value = mock.requests()[0].body_json().unwrap();
        let purchase = &sent["purchases"][0];
        assert_eq!(purchase["price"], json!(12.5));
        assert_eq!(purchase["quantity"], json!(2));
        assert_eq!(purchase["properties"], json!({"coupon": "X"}));
    }

    #[test]
    fn requests_hold_at_most_75_objects() {
        let mock = MockHttp::new().route(http::Method::POST, "/users/track", success());
        let outcomes = testing::write::<Braze>(config(), "attributes", users(160)).unwrap();
        assert!(outcomes.iter().all(|o| *o == Outcome::Ok));
        let sizes: Vec<usize> = mock
            .requests()
            .iter()
            .map(|r| {
                r.body_json::<Value>().unwrap()["attributes"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(sizes, [75, 75, 10]);
        let spec = testing::spec::<Braze>().unwrap();
        assert_eq!(spec.max_batch_records, 75);
        assert_eq!(spec.hosts, ["rest.iad-01.braze.com"]);
    }

    #[test]
    fn object_errors_reject_exactly_their_records() {
        let _mock = MockHttp::new()
            .reply(success())
            .reply(Reply::status(201).json(&json!({
                "message": "success",
                "attributes_processed": 73,
                "errors": [
                    {"type": "'email' is not a valid email address", "input_array": "attributes", "index": 3},
                    {"type": "elsewhere", "input_array": "events", "index": 0},
                    {"type": "out of range", "input_array": "attributes", "index": 99}
                ]
            })));
        // The first 75 go through; of the next 75, the fourth (record 78) is refused.
        let outcomes = testing::write::<Braze>(config(), "attributes", users(150)).unwrap();
        for (i, outcome) in outcomes.iter().enumerate() {
            match (i, outcome) {
                (78, Outcome::Reject(e)) => assert_eq!(
                    e.message,
                    "Braze refused the object in `attributes`: 'email' is not a valid email address"
                ),
                (78, other) => panic!("record 78: {other:?}"),
                (_, other) => assert_eq!(*other, Outcome::Ok, "record {i}"),
            }
        }
        assert_eq!(testing::logs().len(), 2, "{:?}", testing::logs());
    }

    #[test]
    fn a_refused_key_fails_the_batch_as_auth() {
        let _mock = MockHttp::new().respond(401, r#"{"message":"Invalid API key: rk"}"#);
        let outcomes = testing::write::<Braze>(config(), "attributes", users(2)).unwrap();
        for outcome in outcomes {
            let Outcome::Reject(error) = outcome else {
                panic!("{outcome:?}")
            };
            assert_eq!(error.kind, ErrorKind::Auth);
            assert!(
                error.message.contains("Invalid API key"),
                "{}",
                error.message
            );
            assert!(error.message.contains("check api_key"), "{}", error.message);
        }
    }

    #[test]
    fn a_bad_request_rejects_the_batch_quoting_braze() {
        let _mock = MockHttp::new().respond(400, r#"{"message":"Invalid 'attributes' field"}"#);
        let outcomes = testing::write::<Braze>(config(), "attributes", users(1)).unwrap();
        assert!(
            matches!(&outcomes[0], Outcome::Reject(e) if e.kind == ErrorKind::Rejected && e.message.contains("Invalid 'attributes' field")),
            "{outcomes:?}"
        );
    }

    #[test]
    fn throttling_waits_for_the_rate_limit_reset() {
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 30;
        let _mock = MockHttp::new()
            .reply(
                Reply::status(429)
                    .header("X-RateLimit-Limit", "3000")
                    .header("X-RateLimit-Remaining", "0")
                    .header("X-RateLimit-Reset", &reset.to_string())
                    .json(&json!({"message": "API rate limit exceeded"})),
            )
            .reply(Reply::status(429).header("Retry-After", "5"))
            .respond(503, "unavailable");
        let outcomes = testing::write::<Braze>(config(), "attributes", users(1)).unwrap();
        let Outcome::Retry(error) = &outcomes[0] else {
            panic!("{outcomes:?}")
        };
        assert_eq!(error.kind, ErrorKind::RateLimited);
        let wait = error.retry_after_ms.unwrap();
        assert!((28_000..=30_000).contains(&wait), "{wait} ms");

        let outcomes = testing::write::<Braze>(config(), "attributes", users(1)).unwrap();
        assert!(
            matches!(&outcomes[0], Outcome::Retry(e) if e.retry_after_ms == Some(5_000)),
            "{outcomes:?}"
        );
        let outcomes = testing::write::<Braze>(config(), "attributes", users(1)).unwrap();
        assert!(
            matches!(&outcomes[0], Outcome::Retry(e) if e.kind == ErrorKind::Transient),
            "{outcomes:?}"
        );
    }

    #[test]
    fn reset_times_count_from_now_and_never_go_negative() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let answer = |reset: &str| http::Response {
            status: 429,
            headers: vec![("x-ratelimit-reset".into(), reset.into())],
            body: Vec::new(),
        };
        assert_eq!(reset_wait_ms(&answer("1700000003"), now), Some(2_750));
        assert_eq!(reset_wait_ms(&answer("1699999999"), now), Some(0));
        assert_eq!(reset_wait_ms(&answer("soon"), now), None);
    }

    #[test]
    fn times_are_iso_8601_in_utc() {
        let at = |secs| iso8601(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_827_696), "2000-02-29T12:34:56Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn deletions_are_skipped_or_delete_users_50_at_a_time() {
        let batch = || -> Vec<Event> {
            (1..=60)
                .map(|i| testing::deleted(i.to_string(), json!({"plan": "pro"})))
                .chain([testing::deleted("x", json!({"external_id": "u-x"}))])
                .collect()
        };
        let mock = MockHttp::new().route(
            http::Method::POST,
            "/users/delete",
            Reply::status(201).json(&json!({"deleted": 1, "message": "success"})),
        );
        let outcomes = testing::write::<Braze>(config(), "attributes", batch()).unwrap();
        assert!(outcomes.iter().all(|o| *o == Outcome::Ok));
        assert!(mock.requests().is_empty());

        let mut deleting = config();
        deleting["on_delete"] = "delete".into();
        let outcomes = testing::write::<Braze>(deleting, "attributes", batch()).unwrap();
        assert!(outcomes.iter().all(|o| *o == Outcome::Ok));
        let requests = mock.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].header("authorization"), Some("Bearer rk"));
        let ids: Vec<Value> = requests
            .iter()
            .map(|r| r.body_json::<Value>().unwrap()["external_ids"].clone())
            .collect();
        assert_eq!(ids[0].as_array().unwrap().len(), 50);
        assert_eq!(ids[1].as_array().unwrap().last(), Some(&json!("u-x")));
    }

    #[test]
    fn a_failed_deletion_answers_for_its_records_only() {
        let _mock = MockHttp::new()
            .route(http::Method::POST, "/users/track", success())
            .route(http::Method::POST, "/users/delete", Reply::status(500));
        let batch = vec![
            testing::event(Op::Added, "1", json!({})),
            testing::deleted("2", json!({})),
        ];
        let config = json!({"api_key": "rk", "on_delete": "delete"});
        let outcomes = testing::write::<Braze>(config, "attributes", batch).unwrap();
        assert_eq!(outcomes[0], Outcome::Ok);
        assert!(matches!(&outcomes[1], Outcome::Retry(e) if e.kind == ErrorKind::Transient));
    }

    #[test]
    fn config_problems_name_their_key() {
        assert_eq!(testing::validate::<Braze>(json!({"api_key": "rk"})), Ok(()));
        let problems = testing::validate::<Braze>(
            json!({"api_key": " ", "endpoint": "rest.iad-01.braze.com"}),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("api_key is empty"));
        assert!(problems[1].starts_with("endpoint must start with http:// or https://"));
        let unknown = testing::validate::<Braze>(json!({"api_key": "rk", "on_delete": "track"}));
        assert!(format!("{unknown:?}").contains("on_delete"), "{unknown:?}");
        let bad_id = vec![testing::event(Op::Added, "1", json!({"external_id": true}))];
        let _mock = MockHttp::new();
        let outcomes = testing::write::<Braze>(config(), "attributes", bad_id).unwrap();
        assert!(
            matches!(&outcomes[0], Outcome::Reject(e) if e.message.starts_with("`external_id` must be"))
        );
    }
}
