//! Braze's REST API as its reference documents it, for the two endpoints
//! `ebb:braze` calls. Both take `Authorization: Bearer <REST API key>` and
//! `Content-Type: application/json`, answer an unknown key 401
//! `{"message": "Invalid API key: …"}` and, over the rate limit, 429 with
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
//! (UTC epoch seconds when the window resets).
//!
//! - `POST /users/track`: `{"attributes": […], "events": […], "purchases":
//!   […]}`, at most 75 objects to a request (75 of each kind for workspaces
//!   on the legacy limits, 75 in all on the newer ones; this fake holds the
//!   stricter). Every object names its user (`external_id`); an event needs
//!   `name` and an ISO 8601 `time`, a purchase `product_id`, a three-letter
//!   `currency`, a numeric `price` and `time`; `properties` is an object.
//!   Answers 201 `{"message": "success", "attributes_processed": n, …}`,
//!   with `"errors": [{"type": why, "input_array": "attributes", "index":
//!   i}]` for the objects it refused while taking the rest, and 400
//!   `{"message": why}` for a request it cannot take at all.
//! - `POST /users/delete`: `{"external_ids": [...]}`, 1 to 50 ids and no
//!   other kind of identifier beside them; answers 201 `{"deleted": n,
//!   "message": "success"}`.
//!
//! One [`Gate`] throttles both endpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use super::Gate;
use crate::support::loopback::Loopback;

const MAX_TRACK_OBJECTS: usize = 75;
const MAX_DELETE_IDS: usize = 50;
const ARRAYS: [&str; 3] = ["attributes", "events", "purchases"];
/// Identifiers `/users/delete` takes, one kind to a request.
const DELETE_IDENTIFIERS: [&str; 4] = [
    "external_ids",
    "user_aliases",
    "braze_ids",
    "email_addresses",
];
/// `/users/track`'s default limit: 3,000 requests per 3 seconds.
const TRACK_LIMIT: &str = "3000";

#[derive(Default)]
struct Inner {
    api_key: String,
    gate: Gate,
    /// Users whose objects are refused, with the error's `type`.
    failing: HashMap<String, String>,
    /// Objects taken, with the array each came in.
    objects: Vec<(String, Value)>,
    deleted: Vec<String>,
    /// Requests that broke the protocol, and why.
    problems: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct Braze {
    /// Where it listens.
    pub http: Loopback,
    inner: Shared,
    /// When it answers 429.
    pub gate: Gate,
}

impl Braze {
    /// A fake accepting the REST API key `api_key`.
    pub fn start(api_key: &str) -> Braze {
        let inner = Shared::default();
        inner.lock().unwrap().api_key = api_key.to_owned();
        let gate = inner.lock().unwrap().gate.clone();
        let app = Router::new()
            .route("/users/track", post(track))
            .route("/users/delete", post(delete))
            .with_state(inner.clone());
        Braze {
            http: Loopback::serve(app),
            inner,
            gate,
        }
    }

    /// Refuses every object for user `external_id` from now on, as Braze
    /// refuses an invalid one: listed in the answer's `errors` with `why`.
    pub fn fail(&self, external_id: &str, why: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.failing.insert(external_id.to_owned(), why.to_owned());
    }

    /// Every object taken so far from `array` (`attributes`, `events` or
    /// `purchases`).
    pub fn objects(&self, array: &str) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        let taken = inner.objects.iter().filter(|(name, _)| name == array);
        taken.map(|(_, object)| object.clone()).collect()
    }

    /// The external ids of the users deleted so far.
    pub fn deleted(&self) -> Vec<String> {
        self.inner.lock().unwrap().deleted.clone()
    }

    /// Protocol breaches seen (none is the only right answer).
    pub fn problems(&self) -> Vec<String> {
        self.inner.lock().unwrap().problems.clone()
    }
}

async fn track(
    State(inner): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let request = match admit(&mut inner, &headers, &body) {
        Ok(request) => request,
        Err(answer) => return *answer,
    };
    if let Some(why) = invalid_track(&request) {
        return refuse(&mut inner, why);
    }
    let mut answer = Map::from_iter([("message".to_owned(), json!("success"))]);
    let mut errors = Vec::new();
    for array in ARRAYS {
        let Some(objects) = request[array].as_array() else {
            continue;
        };
        let before = inner.objects.len();
        for (index, object) in objects.iter().enumerate() {
            let why = invalid_object(array, object);
            if let Some(why) = &why {
                inner.problems.push(format!("{array}[{index}]: {why}"));
            }
            let failing = object["external_id"]
                .as_str()
                .and_then(|id| inner.failing.get(id));
            match why.or_else(|| failing.cloned()) {
                Some(why) => {
                    errors.push(json!({"type": why, "input_array": array, "index": index}))
                }
                None => inner.objects.push((array.to_owned(), object.clone())),
            }
        }
        let taken = inner.objects.len() - before;
        answer.insert(format!("{array}_processed"), json!(taken));
    }
    if !errors.is_empty() {
        answer.insert("errors".to_owned(), Value::Array(errors));
    }
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

async fn delete(
    State(inner): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let request = match admit(&mut inner, &headers, &body) {
        Ok(request) => request,
        Err(answer) => return *answer,
    };
    let kinds: Vec<&str> = DELETE_IDENTIFIERS
        .into_iter()
        .filter(|kind| request.get(kind).is_some())
        .collect();
    let ids: Option<Vec<String>> = request["external_ids"].as_array().and_then(|ids| {
        ids.iter()
            .map(|id| id.as_str().filter(|id| !id.is_empty()).map(str::to_owned))
            .collect()
    });
    let why = match (kinds.as_slice(), ids) {
        (["external_ids"], Some(ids)) if (1..=MAX_DELETE_IDS).contains(&ids.len()) => {
            let deleted = ids.len();
            inner.deleted.extend(ids);
            let answer = json!({"deleted": deleted, "message": "success"});
            return (StatusCode::CREATED, axum::Json(answer)).into_response();
        }
        (["external_ids"], Some(ids)) => {
            format!("{} external_ids, not 1 to {MAX_DELETE_IDS}", ids.len())
        }
        (["external_ids"], None) => "external_ids must be an array of non-empty strings".to_owned(),
        _ => format!("expected external_ids alone, got {kinds:?}"),
    };
    refuse(&mut inner, why)
}

/// What both endpoints check first, in this order: the key, the rate
/// limit, then a JSON object body.
fn admit(inner: &mut Inner, headers: &HeaderMap, body: &[u8]) -> Result<Value, Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if given != format!("Bearer {}", inner.api_key) {
        let key = given.strip_prefix("Bearer ").unwrap_or(given);
        let answer = json!({"message": format!("Invalid API key: {key}")});
        return Err(Box::new(
            (StatusCode::UNAUTHORIZED, axum::Json(answer)).into_response(),
        ));
    }
    if inner.gate.refuses() {
        return Err(Box::new(throttled(&inner.gate)));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        let why = "Content-Type must be application/json".to_owned();
        return Err(Box::new(refuse(inner, why)));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(request) if request.is_object() => Ok(request),
        _ => Err(Box::new(refuse(
            inner,
            "the body is not a JSON object".into(),
        ))),
    }
}

/// A 429 as Braze sends it: its rate-limit headers, the reset rounded up
/// to the second after the gate's wait.
fn throttled(gate: &Gate) -> Response {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let reset = (now + gate.retry_after()).as_secs_f64().ceil() as u64;
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            ("X-RateLimit-Limit", TRACK_LIMIT.to_owned()),
            ("X-RateLimit-Remaining", "0".to_owned()),
            ("X-RateLimit-Reset", reset.to_string()),
        ],
        axum::Json(json!({"message": "API rate limit exceeded"})),
    )
        .into_response()
}

/// Records a breach and answers 400 as Braze does a request it cannot take.
fn refuse(inner: &mut Inner, why: String) -> Response {
    inner.problems.push(why.clone());
    (StatusCode::BAD_REQUEST, axum::Json(json!({"message": why}))).into_response()
}

/// Why Braze would refuse the whole `/users/track` request, if it would.
fn invalid_track(request: &Value) -> Option<String> {
    let fields = request.as_object()?;
    if let Some(other) = fields.keys().find(|k| !ARRAYS.contains(&k.as_str())) {
        return Some(format!("unknown field {other:?}"));
    }
    let mut count = 0;
    for (name, value) in fields {
        match value.as_array() {
            Some(objects) => count += objects.len(),
            None => return Some(format!("{name} is not an array")),
        }
    }
    match count {
        0 => Some("no attributes, events or purchases".to_owned()),
        n if n > MAX_TRACK_OBJECTS => Some(format!("{n} objects, over {MAX_TRACK_OBJECTS}")),
        _ => None,
    }
}

/// Why Braze would refuse this object of `array`, if it would.
fn invalid_object(array: &str, object: &Value) -> Option<String> {
    let text = |field: &str| object[field].as_str().is_some_and(|s| !s.is_empty());
    let iso8601 = || {
        object["time"].as_str().is_some_and(|t| {
            let b = t.as_bytes();
            b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && t[..4].parse::<u16>().is_ok()
        })
    };
    let currency = || {
        object["currency"]
            .as_str()
            .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()))
    };
    let properties = object.get("properties").is_none_or(Value::is_object);
    let needs: &[(bool, &str)] = match array {
        "events" => &[
            (text("name"), "'name' is required"),
            (iso8601(), "'time' must be an ISO 8601 time"),
            (properties, "'properties' must be an object"),
        ],
        "purchases" => &[
            (text("product_id"), "'product_id' is required"),
            (
                currency(),
                "'currency' must be a three-letter ISO 4217 code",
            ),
            (object["price"].is_number(), "'price' must be a number"),
            (iso8601(), "'time' must be an ISO 8601 time"),
            (properties, "'properties' must be an object"),
        ],
        _ => &[],
    };
    if !object.is_object() || !text("external_id") {
        return Some("'external_id' is required".to_owned());
    }
    needs
        .iter()
        .find(|(ok, _)| !ok)
        .map(|(_, why)| (*why).to_owned())
}
