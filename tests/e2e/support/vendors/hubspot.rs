//! HubSpot's CRM v3 batch API for objects, as its reference documents it
//! (developers.hubspot.com, "Objects" › batch upsert, read and archive, and
//! "API usage guidelines and limits"). Every call is
//! `POST /crm/v3/objects/{objectType}/batch/{operation}` with
//! `Authorization: Bearer <private app token>`, a JSON body of at most 100
//! `inputs`, and answers in HubSpot's shapes:
//!
//! - `upsert`: inputs `{"idProperty", "id", "properties": {name: string}}`,
//!   no id twice. 200 `{"status": "COMPLETE", "results": [object…],
//!   "startedAt", "completedAt"}`; 207 when some inputs failed, adding
//!   `"numErrors"` and `"errors": [{"status": "error", "category":
//!   "VALIDATION_ERROR", "message", "context": {"id": [id…]}}]`.
//! - `read`: `{"idProperty", "properties": [name…], "inputs": [{"id"}]}`.
//!   200 with the objects found; 207 adding one `OBJECT_NOT_FOUND` error
//!   whose `context.ids` lists the rest.
//! - `archive`: `{"inputs": [{"id": <HubSpot object id>}]}`, 204 with no
//!   body.
//! - 400 `{"status": "error", "category": "VALIDATION_ERROR", "message"}`
//!   for a malformed batch (recorded as a problem: a destination must never
//!   send one).
//! - 401 `{"status": "error", "category": "INVALID_AUTHENTICATION", …}` for
//!   a token it does not know.
//! - 429 `{"status": "error", "message": "You have reached your
//!   ten_secondly_rolling limit.", "errorType": "RATE_LIMIT",
//!   "policyName": "TEN_SECONDLY_ROLLING"}` with
//!   `X-HubSpot-RateLimit-Interval-Milliseconds`, `-Max` and
//!   `-Remaining: 0` and no `Retry-After`: the published window (190
//!   requests per 10 s for private apps on Professional and Enterprise).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use super::Gate;
use crate::support::loopback::Loopback;

const MAX_INPUTS: usize = 100;
const OPERATIONS: [&str; 3] = ["upsert", "read", "archive"];
/// The window a 429 names: private apps on Professional and Enterprise
/// get 190 requests per 10 seconds.
const WINDOW: (u64, u64) = (190, 10_000);
const TIMESTAMP: &str = "2024-01-01T00:00:00.000Z";

#[derive(Default)]
struct Inner {
    token: String,
    gate: Gate,
    objects: Vec<Stored>,
    /// Where each object is by type, property and value (lower case), so a
    /// lookup does not scan them all.
    by_property: HashMap<(String, String, String), usize>,
    /// Every upsert input accepted, in order.
    upserted: Vec<Value>,
    /// `id_property` values whose upsert is refused.
    failing: Vec<String>,
    /// Requests that broke the protocol, and why.
    problems: Vec<String>,
}

struct Stored {
    object_type: String,
    id: String,
    properties: Map<String, Value>,
    archived: bool,
}

type Shared = Arc<Mutex<Inner>>;

pub struct Hubspot {
    /// Where it listens.
    pub http: Loopback,
    inner: Shared,
    /// When it answers 429.
    pub gate: Gate,
}

impl Hubspot {
    /// A fake accepting the private app token `token`.
    pub fn start(token: &str) -> Hubspot {
        let inner = Shared::default();
        inner.lock().unwrap().token = token.to_owned();
        let gate = inner.lock().unwrap().gate.clone();
        let app = Router::new()
            .route("/crm/v3/objects/{object}/batch/{operation}", post(batch))
            .with_state(inner.clone());
        Hubspot {
            http: Loopback::serve(app),
            inner,
            gate,
        }
    }

    /// Refuses the upsert of the record whose `id_property` value is `id`,
    /// as HubSpot refuses an invalid property value.
    pub fn fail(&self, id: &str) {
        self.inner.lock().unwrap().failing.push(id.to_owned());
    }

    /// Every upsert input accepted so far, in order.
    pub fn upserted(&self) -> Vec<Value> {
        self.inner.lock().unwrap().upserted.clone()
    }

    /// The properties of every archived object.
    pub fn archived(&self) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        let archived = inner.objects.iter().filter(|o| o.archived);
        archived
            .map(|o| Value::Object(o.properties.clone()))
            .collect()
    }

    /// Protocol breaches seen (none is the only right answer).
    pub fn problems(&self) -> Vec<String> {
        self.inner.lock().unwrap().problems.clone()
    }
}

async fn batch(
    State(inner): State<Shared>,
    Path((object, operation)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let bearer = format!("Bearer {}", inner.token);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&bearer)
    {
        return unauthorized();
    }
    if inner.gate.refuses() {
        return too_many_requests();
    }
    let request = match checked(&headers, &operation, &body) {
        Ok(request) => request,
        Err(why) => return inner.refuse(why),
    };
    let inputs = request["inputs"].as_array().map_or(&[][..], Vec::as_slice);
    match operation.as_str() {
        "upsert" => inner.upsert(&object, inputs),
        "read" => inner.read(&object, &request, inputs),
        _ => inner.archive(&object, inputs),
    }
}

/// The request's body, or why HubSpot would refuse the whole request.
fn checked(headers: &HeaderMap, operation: &str, body: &[u8]) -> Result<Value, String> {
    if !OPERATIONS.contains(&operation) {
        return Err(format!("unknown batch operation {operation:?}"));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !json.is_some_and(|v| v.starts_with("application/json")) {
        return Err(format!("content-type {json:?} is not application/json"));
    }
    let parsed: Value = serde_json::from_slice(body).map_err(|_| "body is not JSON".to_owned())?;
    let Some(inputs) = parsed["inputs"].as_array() else {
        return Err("body has no `inputs` array".into());
    };
    if inputs.len() > MAX_INPUTS {
        return Err(format!(
            "{} inputs; the maximum number of inputs supported in a batch request is {MAX_INPUTS}",
            inputs.len()
        ));
    }
    let mut ids = Vec::new();
    for input in inputs {
        let Some(id) = input["id"].as_str().filter(|id| !id.is_empty()) else {
            return Err(format!("input without an `id`: {input}"));
        };
        if ids.contains(&id.to_lowercase()) {
            return Err(format!("Duplicate IDs found in batch input: [{id}]"));
        }
        ids.push(id.to_lowercase());
        if operation == "upsert" {
            upsert_input_problem(input)?;
        }
    }
    if operation == "read" && !parsed["idProperty"].is_string() {
        return Err("read by unique property without `idProperty`".into());
    }
    Ok(parsed)
}

/// Why an upsert input is not of the documented shape, if it is not.
fn upsert_input_problem(input: &Value) -> Result<(), String> {
    if input["idProperty"].as_str().is_none_or(str::is_empty) {
        return Err(format!("upsert input without an `idProperty`: {input}"));
    }
    let Some(properties) = input["properties"].as_object() else {
        return Err(format!("upsert input without `properties`: {input}"));
    };
    match properties.iter().find(|(_, value)| !value.is_string()) {
        Some((name, value)) => Err(format!("property {name} is {value}, not a string")),
        None => Ok(()),
    }
}

impl Inner {
    fn refuse(&mut self, why: String) -> Response {
        self.problems.push(why.clone());
        let body = json!({"status": "error", "category": "VALIDATION_ERROR", "message": why,
                          "correlationId": "00000000-0000-0000-0000-000000000000"});
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    }

    /// Where the live `object` whose `property` is `value` is kept.
    fn find(&self, object: &str, property: &str, value: &str) -> Option<usize> {
        let key = (object.to_owned(), property.to_owned(), value.to_lowercase());
        let at = *self.by_property.get(&key)?;
        let live = &self.objects[at];
        let still = live.properties[property]
            .as_str()
            .is_some_and(|v| v.eq_ignore_ascii_case(value));
        (!live.archived && still).then_some(at)
    }

    /// Makes object `at` findable by each of its properties.
    fn index(&mut self, at: usize) {
        let stored = &self.objects[at];
        for (name, value) in &stored.properties {
            if let Some(value) = value.as_str() {
                let key = (
                    stored.object_type.clone(),
                    name.clone(),
                    value.to_lowercase(),
                );
                self.by_property.insert(key, at);
            }
        }
    }

    fn upsert(&mut self, object: &str, inputs: &[Value]) -> Response {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for input in inputs {
            // `checked` made sure of the shape.
            let property = input["idProperty"].as_str().unwrap_or_default();
            let id = input["id"].as_str().unwrap_or_default();
            if self.failing.iter().any(|f| f.eq_ignore_ascii_case(id)) {
                errors.push(json!({"status": "error", "category": "VALIDATION_ERROR",
                    "message": format!("Property values were not valid for {id}"),
                    "context": {"id": [id]}}));
                continue;
            }
            let found = self.find(object, property, id);
            let new = found.is_none();
            let at = found.unwrap_or_else(|| {
                self.objects.push(Stored {
                    object_type: object.to_owned(),
                    id: (self.objects.len() + 1001).to_string(),
                    properties: Map::from_iter([(property.to_owned(), Value::from(id))]),
                    archived: false,
                });
                self.objects.len() - 1
            });
            if let Some(properties) = input["properties"].as_object() {
                self.objects[at].properties.extend(properties.clone());
            }
            self.index(at);
            let stored = &self.objects[at];
            results.push(
                json!({"id": stored.id, "properties": stored.properties, "new": new,
                "archived": false, "createdAt": TIMESTAMP, "updatedAt": TIMESTAMP}),
            );
            self.upserted.push(input.clone());
        }
        answer(results, errors)
    }

    fn read(&mut self, object: &str, request: &Value, inputs: &[Value]) -> Response {
        let property = request["idProperty"].as_str().unwrap_or_default();
        let wanted: Vec<&str> = request["properties"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut results = Vec::new();
        let mut missing = Vec::new();
        for id in inputs.iter().filter_map(|input| input["id"].as_str()) {
            match self.find(object, property, id).map(|at| &self.objects[at]) {
                Some(stored) => {
                    let mut properties = Map::from_iter([(
                        "hs_object_id".to_owned(),
                        Value::from(stored.id.clone()),
                    )]);
                    for name in &wanted {
                        properties.insert(
                            name.to_string(),
                            stored.properties.get(*name).cloned().unwrap_or(Value::Null),
                        );
                    }
                    results.push(
                        json!({"id": stored.id, "properties": properties, "archived": false,
                        "createdAt": TIMESTAMP, "updatedAt": TIMESTAMP}),
                    );
                }
                None => missing.push(id),
            }
        }
        let errors = match missing.is_empty() {
            true => Vec::new(),
            false => vec![json!({"status": "error", "category": "OBJECT_NOT_FOUND",
                "message": "Could not get some objects, they may be deleted or not exist. Check that ids are valid.",
                "context": {"ids": missing}})],
        };
        answer(results, errors)
    }

    fn archive(&mut self, object: &str, inputs: &[Value]) -> Response {
        for id in inputs.iter().filter_map(|input| input["id"].as_str()) {
            let stored = self
                .objects
                .iter_mut()
                .find(|o| o.object_type == object && o.id == id);
            match stored {
                Some(stored) => stored.archived = true,
                // HubSpot answers 204 all the same; a destination archives
                // only what it read.
                None => self
                    .problems
                    .push(format!("archive of unknown object id {id}")),
            }
        }
        StatusCode::NO_CONTENT.into_response()
    }
}

/// 200 with `results`, or 207 when there are `errors` too.
fn answer(results: Vec<Value>, errors: Vec<Value>) -> Response {
    let mut body = json!({"status": "COMPLETE", "results": results,
                          "startedAt": TIMESTAMP, "completedAt": TIMESTAMP});
    if errors.is_empty() {
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    body["numErrors"] = errors.len().into();
    body["errors"] = errors.into();
    (StatusCode::MULTI_STATUS, axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    let body = json!({"status": "error",
        "message": "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
        "correlationId": "00000000-0000-0000-0000-000000000000",
        "category": "INVALID_AUTHENTICATION"});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

fn too_many_requests() -> Response {
    let (max, interval_ms) = WINDOW;
    let body = json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT", "correlationId": "00000000-0000-0000-0000-000000000000",
        "policyName": "TEN_SECONDLY_ROLLING"});
    let headers = [
        (
            "x-hubspot-ratelimit-interval-milliseconds",
            interval_ms.to_string(),
        ),
        ("x-hubspot-ratelimit-max", max.to_string()),
        ("x-hubspot-ratelimit-remaining", "0".to_owned()),
    ];
    (StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(body)).into_response()
}
