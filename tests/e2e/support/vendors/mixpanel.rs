//! Mixpanel's ingestion API, from its reference
//! (docs.mixpanel.com/reference/ingestion-api):
//!
//! - `POST /import?strict=1&project_id=N`, Basic auth as a service account
//!   (`username:secret`), `Content-Type: application/json`: an array of
//!   1 to 2,000 events, at most 10 MB, each
//!   `{"event": "…", "properties": {"time", "distinct_id", "$insert_id", …}}`
//!   under 1 MB with fewer than 255 properties; `time` in seconds or
//!   milliseconds since the epoch, after 1971-01-01 and at most an hour
//!   ahead; `$insert_id` at most 36 of `[A-Za-z0-9-]`. Answers 200
//!   `{"code": 200, "num_records_imported": n, "status": "OK"}`; 400
//!   `{"code": 400, "error": "some data points in the request failed
//!   validation", "num_records_imported": k, "status": "Bad Request",
//!   "failed_records": [{"index", "insert_id", "field", "message"}]}`
//!   having ingested the other events; 401 `{"code": 401, "error":
//!   "Invalid credentials", "status": "Unauthorized"}`; 413 over 10 MB.
//! - `POST /engage` (user profiles) and `POST /groups` (group profiles),
//!   `verbose=1`: an array of at most 2,000 updates, each with the project
//!   token as `$token`, the profile's names (`$distinct_id`; `$group_key`
//!   and `$group_id`) and one operation (`$set` an object, `$unset` a list
//!   of names, `$delete`). Answers 200 `{"status": 1, "error": null}`, or
//!   `{"status": 0, "error": "…"}` taking nothing of the request when an
//!   update is invalid; 401 `{"error": …, "status": "error"}` for a token
//!   it does not know.
//! - Throttled (by [`Gate`]), any of them answers 429 `{"code": 429,
//!   "error": "Project exceeded rate limits. Please retry the request with
//!   exponential backoff.", "status": "Too Many Requests"}`; the reference
//!   documents no `Retry-After`, so none is sent.
//!
//! The published limit is per project: 2 GB of uncompressed JSON a minute,
//! about 30,000 events a second, over a rolling minute.
//!
//! A test picks the records Mixpanel refuses ([`Mixpanel::refuse`]): events
//! by `distinct_id`, profiles by `$distinct_id` or `$group_id`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};

use super::Gate;
use crate::support::loopback::Loopback;

const MAX_RECORDS: usize = 2000;
const MAX_IMPORT_BYTES: usize = 10 * 1024 * 1024;
const MAX_RECORD_BYTES: usize = 1024 * 1024;
const MAX_PROPERTIES: usize = 255;
/// 1971-01-01, in seconds: Mixpanel refuses events before it.
const EARLIEST: i64 = 31_536_000;
/// Operations a profile update may carry, one per update.
const OPERATIONS: [&str; 8] = [
    "$set",
    "$set_once",
    "$add",
    "$union",
    "$append",
    "$remove",
    "$unset",
    "$delete",
];
/// Keys an update may carry besides its names and its operation.
const MODIFIERS: [&str; 5] = ["$token", "$ignore_time", "$ignore_alias", "$ip", "$time"];

#[derive(Default)]
struct Inner {
    project_id: String,
    service_account: String,
    secret: String,
    token: String,
    gate: Gate,
    /// Ids whose records are refused as invalid.
    refuse: HashSet<String>,
    events: Vec<Value>,
    profiles: Vec<Value>,
    /// Requests that broke the protocol, and why.
    problems: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct Mixpanel {
    /// Where it listens.
    pub http: Loopback,
    inner: Shared,
    /// When it answers 429.
    pub gate: Gate,
}

/// Which profiles an endpoint updates.
#[derive(Clone, Copy)]
enum Profiles {
    Users,
    Groups,
}

impl Profiles {
    /// The field holding a profile's id.
    fn id(self) -> &'static str {
        match self {
            Profiles::Users => "$distinct_id",
            Profiles::Groups => "$group_id",
        }
    }

    /// The fields naming a profile.
    fn names(self) -> &'static [&'static str] {
        match self {
            Profiles::Users => &["$distinct_id"],
            Profiles::Groups => &["$group_key", "$group_id"],
        }
    }
}

impl Mixpanel {
    /// A fake project `project_id` with the service account
    /// `service_account:secret` and the project token `token`.
    pub fn start(project_id: &str, service_account: &str, secret: &str, token: &str) -> Mixpanel {
        let inner = Shared::new(Mutex::new(Inner {
            project_id: project_id.to_owned(),
            service_account: service_account.to_owned(),
            secret: secret.to_owned(),
            token: token.to_owned(),
            ..Inner::default()
        }));
        let gate = inner.lock().unwrap().gate.clone();
        let app = Router::new()
            .route("/import", post(import))
            .route("/engage", post(users))
            .route("/groups", post(groups))
            .with_state(inner.clone());
        Mixpanel {
            http: Loopback::serve(app),
            inner,
            gate,
        }
    }

    /// From now on, refuses the events and profile updates of these ids
    /// (none: accept everything again).
    pub fn refuse(&self, ids: &[&str]) {
        self.inner.lock().unwrap().refuse = ids.iter().map(|id| id.to_string()).collect();
    }

    /// Every event imported so far.
    pub fn events(&self) -> Vec<Value> {
        self.inner.lock().unwrap().events.clone()
    }

    /// Every profile update (users and groups) taken so far.
    pub fn profiles(&self) -> Vec<Value> {
        self.inner.lock().unwrap().profiles.clone()
    }

    /// Protocol breaches seen (none is the only right answer).
    pub fn problems(&self) -> Vec<String> {
        self.inner.lock().unwrap().problems.clone()
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn too_many_requests() -> Response {
    reply(
        StatusCode::TOO_MANY_REQUESTS,
        json!({
            "code": 429,
            "error": "Project exceeded rate limits. Please retry the request with exponential backoff.",
            "status": "Too Many Requests"
        }),
    )
}

impl Inner {
    /// Notes a breach and answers it as Mixpanel would.
    fn breach(&mut self, why: String, status: StatusCode, body: Value) -> Response {
        self.problems.push(why);
        reply(status, body)
    }

    /// Whether the request says it sends JSON, noting it if not.
    fn is_json(&mut self, headers: &HeaderMap) -> bool {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let json = content_type.starts_with("application/json");
        if !json {
            self.problems.push(format!(
                "content-type {content_type:?}, not application/json"
            ));
        }
        json
    }
}

async fn import(
    State(inner): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let bad_request = |error: &str| json!({"code": 400, "error": error, "status": "Bad Request"});
    if query.get("strict").map(String::as_str) != Some("1") {
        inner.problems.push("/import without strict=1".into());
    }
    let credentials = format!("{}:{}", inner.service_account, inner.secret);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    );
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if authorization != Some(&expected) || query.get("project_id") != Some(&inner.project_id) {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}),
        );
    }
    if inner.gate.refuses() {
        return too_many_requests();
    }
    if !inner.is_json(&headers) {
        return reply(
            StatusCode::BAD_REQUEST,
            bad_request("unsupported content type"),
        );
    }
    if body.len() > MAX_IMPORT_BYTES {
        let why = format!("/import request of {} bytes is over 10 MB", body.len());
        let body = json!({"code": 413, "error": "request exceeds max limit of 10485760 bytes",
                          "status": "Request Entity Too Large"});
        return inner.breach(why, StatusCode::PAYLOAD_TOO_LARGE, body);
    }
    let events = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(events)) if (1..=MAX_RECORDS).contains(&events.len()) => events,
        Ok(Value::Array(events)) => {
            let why = format!("/import request of {} events", events.len());
            return inner.breach(why, StatusCode::BAD_REQUEST, bad_request("batch size"));
        }
        _ => {
            let why = "/import body is not a JSON array".to_owned();
            return inner.breach(
                why,
                StatusCode::BAD_REQUEST,
                bad_request("unable to parse body"),
            );
        }
    };
    let mut failed = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let properties = &event["properties"];
        let refusal = match invalid_event(event) {
            Some((field, message)) => {
                inner
                    .problems
                    .push(format!("event {index}: {field}: {message}"));
                Some((field, message))
            }
            None => properties["distinct_id"]
                .as_str()
                .filter(|id| inner.refuse.contains(*id))
                .map(|id| {
                    let message = format!("'properties.distinct_id' {id:?} is invalid");
                    ("properties.distinct_id", message)
                }),
        };
        match refusal {
            Some((field, message)) => failed.push(json!({
                "index": index,
                "insert_id": properties["$insert_id"],
                "field": field,
                "message": message,
            })),
            None => inner.events.push(event.clone()),
        }
    }
    let imported = events.len() - failed.len();
    if failed.is_empty() {
        reply(
            StatusCode::OK,
            json!({"code": 200, "num_records_imported": imported, "status": "OK"}),
        )
    } else {
        reply(
            StatusCode::BAD_REQUEST,
            json!({
                "code": 400,
                "error": "some data points in the request failed validation",
                "num_records_imported": imported,
                "status": "Bad Request",
                "failed_records": failed,
            }),
        )
    }
}

/// The field Mixpanel would refuse this event for, and why.
fn invalid_event(event: &Value) -> Option<(&'static str, String)> {
    let properties = event["properties"].as_object();
    let property = |name: &str| properties.and_then(|p| p.get(name));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let seconds = property("time")
        .and_then(Value::as_i64)
        .map(|t| if t >= 100_000_000_000 { t / 1000 } else { t });
    let insert_id = property("$insert_id").and_then(Value::as_str);
    [
        (
            "event",
            event["event"]
                .as_str()
                .is_none_or(str::is_empty)
                .then(|| "an event needs a name".to_owned()),
        ),
        (
            "properties",
            properties
                .is_none_or(|p| p.len() >= MAX_PROPERTIES)
                .then(|| format!("must be an object of fewer than {MAX_PROPERTIES} properties")),
        ),
        (
            "properties.time",
            (!seconds.is_some_and(|s| (EARLIEST..=now + 3600).contains(&s))).then(|| {
                format!(
                    "{:?} is not a time since 1971 in seconds or milliseconds",
                    property("time")
                )
            }),
        ),
        (
            "properties.distinct_id",
            (!property("distinct_id").is_some_and(Value::is_string))
                .then(|| "must be a string".to_owned()),
        ),
        (
            "properties.$insert_id",
            (!insert_id.is_some_and(|id| {
                (1..=36).contains(&id.len())
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
            .then(|| format!("{insert_id:?} is not 1 to 36 of [A-Za-z0-9-]")),
        ),
        (
            "event",
            (event.to_string().len() > MAX_RECORD_BYTES).then(|| "over 1 MB".to_owned()),
        ),
    ]
    .into_iter()
    .find_map(|(field, why)| why.map(|why| (field, why)))
}

async fn users(
    State(inner): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    profiles(&inner, Profiles::Users, &query, &headers, &body)
}

async fn groups(
    State(inner): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    profiles(&inner, Profiles::Groups, &query, &headers, &body)
}

fn profiles(
    inner: &Shared,
    kind: Profiles,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let mut inner = inner.lock().unwrap();
    let refused = |error: String| reply(StatusCode::OK, json!({"status": 0, "error": error}));
    if query.get("verbose").map(String::as_str) != Some("1") {
        inner
            .problems
            .push("profile update without verbose=1: its answer says nothing".into());
    }
    if !inner.is_json(headers) {
        return refused("unsupported content type".into());
    }
    let updates = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(updates)) if (1..=MAX_RECORDS).contains(&updates.len()) => updates,
        _ => {
            let why = "profile updates are not an array of 1 to 2,000".to_owned();
            inner.problems.push(why.clone());
            return refused(why);
        }
    };
    if updates.iter().any(|u| u["$token"] != inner.token.as_str()) {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "Invalid token", "status": "error"}),
        );
    }
    if inner.gate.refuses() {
        return too_many_requests();
    }
    for update in &updates {
        if let Some(why) = invalid_update(kind, update) {
            inner.problems.push(format!("{why}: {update}"));
            return refused(why);
        }
    }
    let id = kind.id();
    if let Some(bad) = updates
        .iter()
        .filter_map(|u| u[id].as_str())
        .find(|id| inner.refuse.contains(*id))
    {
        return refused(format!("{id} {bad:?} is invalid"));
    }
    inner.profiles.extend(updates);
    reply(StatusCode::OK, json!({"status": 1, "error": null}))
}

/// Why Mixpanel would refuse this profile update, if it would.
fn invalid_update(kind: Profiles, update: &Value) -> Option<String> {
    let Some(update) = update.as_object() else {
        return Some("an update is not an object".into());
    };
    if let Some(name) = kind
        .names()
        .iter()
        .find(|name| update[**name].as_str().is_none_or(str::is_empty))
    {
        return Some(format!("{name} is missing or empty"));
    }
    let operations: Vec<&String> = update
        .keys()
        .filter(|k| OPERATIONS.contains(&k.as_str()))
        .collect();
    let unknown = update.keys().find(|k| {
        !OPERATIONS.contains(&k.as_str())
            && !MODIFIERS.contains(&k.as_str())
            && !kind.names().contains(&k.as_str())
    });
    let unset_names = |value: &Value| {
        value
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
    };
    match (operations.as_slice(), unknown) {
        (_, Some(key)) => Some(format!("unknown key {key}")),
        ([op], _) if *op == "$set" && !update["$set"].is_object() => {
            Some("$set is not a JSON object".into())
        }
        ([op], _) if *op == "$unset" && !unset_names(&update["$unset"]) => {
            Some("$unset is not a list of property names".into())
        }
        ([_], _) => {
            let size = serde_json::to_vec(update).map_or(0, |bytes| bytes.len());
            (size > MAX_RECORD_BYTES).then(|| "update over 1 MB".into())
        }
        _ => Some(format!("{} operations in one update", operations.len())),
    }
}
