//! Customer.io's Track API v2, `POST /api/v2/batch`, as its reference
//! documents it (docs.customer.io/integrations/api/track/, "Track v2", and
//! the OpenAPI document it publishes): Basic auth with the Site ID as user
//! and the Track API key as password; a JSON body `{"batch": [entry, …]}`
//! under 500 KB, each entry 32 KB or smaller. An entry has a `type`,
//! `person` or `object`, an `action` (`identify`, `delete`, …) and
//! `identifiers`: for a person exactly one of `id`, `email`, `phone` or
//! `cio_id`; for an object `object_type_id` and `object_id` (or
//! `cio_object_id`); ids at most 150 bytes. `attributes` is an object;
//! `cio_relationships` a list of `{"identifiers": …}`, naming people for an
//! object (one of `id`, `email`, `cio_id`) and objects for a person.
//!
//! Answers 200 `{}` when all entries are accepted; 207
//! `{"errors": [{"batch_index", "reason", "field", "message"}]}` naming the
//! invalid entries by position, having accepted the others; 400
//! `{"errors": [{"reason", "field", "message"}]}` for a malformed request;
//! 401 with no body for credentials it does not know; and, when told to,
//! 429 with `Retry-After` (the reference documents no body for it).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};

use super::Gate;
use crate::support::loopback::Loopback;

const MAX_BATCH_BYTES: usize = 500 * 1024;
const MAX_ENTRY_BYTES: usize = 32 * 1024;
const MAX_ID_BYTES: usize = 150;

const PERSON_IDS: [&str; 4] = ["id", "email", "phone", "cio_id"];
const RELATED_PERSON_IDS: [&str; 3] = ["id", "email", "cio_id"];
const PERSON_ACTIONS: [&str; 12] = [
    "identify",
    "delete",
    "event",
    "screen",
    "page",
    "add_relationships",
    "delete_relationships",
    "add_device",
    "delete_device",
    "merge",
    "suppress",
    "unsuppress",
];
const OBJECT_ACTIONS: [&str; 5] = [
    "identify",
    "identify_anonymous",
    "delete",
    "add_relationships",
    "delete_relationships",
];

#[derive(Default)]
struct Inner {
    /// The `authorization` header it accepts.
    credentials: String,
    gate: Gate,
    /// Identifier values whose entries it refuses (as invalid) in a 207.
    rejects: HashSet<String>,
    entries: Vec<Value>,
    /// Requests that broke the protocol, and why.
    problems: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct CustomerIo {
    /// Where it listens.
    pub http: Loopback,
    inner: Shared,
    /// When it answers 429.
    pub gate: Gate,
}

impl CustomerIo {
    /// A fake workspace accepting `site_id` with `api_key`.
    pub fn start(site_id: &str, api_key: &str) -> CustomerIo {
        let inner = Shared::default();
        inner.lock().unwrap().credentials = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{site_id}:{api_key}"))
        );
        let gate = inner.lock().unwrap().gate.clone();
        let app = Router::new()
            .route("/api/v2/batch", post(batch))
            .with_state(inner.clone());
        CustomerIo {
            http: Loopback::serve(app),
            gate,
            inner,
        }
    }

    /// From now on refuses, in a 207, the entries identified by one of
    /// `ids` (a person's identifier or an object's `object_id`), and no
    /// others.
    pub fn reject(&self, ids: &[&str]) {
        self.inner.lock().unwrap().rejects = ids.iter().map(|id| id.to_string()).collect();
    }

    /// Every entry accepted so far.
    pub fn entries(&self) -> Vec<Value> {
        self.inner.lock().unwrap().entries.clone()
    }

    /// Protocol breaches seen (none is the only right answer).
    pub fn problems(&self) -> Vec<String> {
        self.inner.lock().unwrap().problems.clone()
    }
}

async fn batch(
    State(inner): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&inner.credentials)
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if inner.gate.refuses() {
        let wait = inner.gate.retry_after().as_secs().to_string();
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, wait)]).into_response();
    }
    let malformed = |inner: &mut Inner, why: String| {
        inner.problems.push(why.clone());
        let errors =
            json!({ "errors": [{ "reason": "invalid", "field": "batch", "message": why }] });
        (StatusCode::BAD_REQUEST, axum::Json(errors)).into_response()
    };
    if body.len() > MAX_BATCH_BYTES {
        let why = format!("batch of {} bytes is over 500 KB", body.len());
        return malformed(&mut inner, why);
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return malformed(&mut inner, "body is not JSON".into());
    };
    let Some(entries) = parsed["batch"].as_array() else {
        return malformed(&mut inner, "body has no `batch` array".into());
    };
    let mut errors = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let why = match invalid(entry) {
            Some(why) => {
                inner.problems.push(format!("entry {index}: {why}"));
                why
            }
            None if identified_by(entry).is_some_and(|id| inner.rejects.contains(id)) => {
                "refused as the test asked".to_owned()
            }
            None => {
                inner.entries.push(entry.clone());
                continue;
            }
        };
        errors.push(json!({ "batch_index": index, "reason": "invalid", "field": "identifiers", "message": why }));
    }
    if errors.is_empty() {
        (StatusCode::OK, axum::Json(json!({}))).into_response()
    } else {
        let answer = json!({ "errors": errors });
        (StatusCode::MULTI_STATUS, axum::Json(answer)).into_response()
    }
}

/// The value an entry is identified by: a person's one identifier, an
/// object's `object_id`.
fn identified_by(entry: &Value) -> Option<&str> {
    let ids = &entry["identifiers"];
    PERSON_IDS
        .iter()
        .chain(&["object_id", "cio_object_id"])
        .find_map(|name| ids[name].as_str())
}

/// Why Customer.io would refuse this entry, if it would.
fn invalid(entry: &Value) -> Option<String> {
    let size = entry.to_string().len();
    if size > MAX_ENTRY_BYTES {
        return Some(format!("entry of {size} bytes is over 32 KB"));
    }
    let action = entry["action"].as_str().unwrap_or_default();
    let (actions, ids, related): (&[&str], _, _) = match entry["type"].as_str() {
        Some("person") => (
            &PERSON_ACTIONS,
            one_id(&entry["identifiers"], &PERSON_IDS),
            object_ids as Check,
        ),
        Some("object") => (
            &OBJECT_ACTIONS,
            object_ids(&entry["identifiers"]),
            related_person_ids as Check,
        ),
        other => return Some(format!("unknown type {other:?}")),
    };
    let relationships = match &entry["cio_relationships"] {
        Value::Null => None,
        Value::Array(items) => items.iter().find_map(|item| related(&item["identifiers"])),
        other => Some(format!("cio_relationships is {other}, not a list")),
    };
    [
        (!actions.contains(&action)).then(|| format!("unknown action {action:?}")),
        ids,
        relationships.map(|why| format!("cio_relationships: {why}")),
        (!entry["attributes"].is_null() && !entry["attributes"].is_object())
            .then(|| "attributes is not an object".to_owned()),
    ]
    .into_iter()
    .flatten()
    .next()
}

/// Why `ids` does not identify what it should, if it does not.
type Check = fn(&Value) -> Option<String>;

/// Exactly one of `names`, a non-empty text of at most 150 bytes.
fn one_id(ids: &Value, names: &[&str]) -> Option<String> {
    let Some(ids) = ids.as_object() else {
        return Some("identifiers is not an object".into());
    };
    let given: Vec<&String> = ids.keys().collect();
    match given.as_slice() {
        [name] if names.contains(&name.as_str()) => id_text(name, &ids[*name]),
        _ => Some(format!(
            "identifiers must be exactly one of {names:?}, got {given:?}"
        )),
    }
}

fn related_person_ids(ids: &Value) -> Option<String> {
    one_id(ids, &RELATED_PERSON_IDS)
}

/// `object_type_id` and `object_id`, or `cio_object_id` alone.
fn object_ids(ids: &Value) -> Option<String> {
    if ids.get("cio_object_id").is_some() {
        return one_id(ids, &["cio_object_id"]);
    }
    id_text("object_type_id", &ids["object_type_id"])
        .or_else(|| id_text("object_id", &ids["object_id"]))
}

fn id_text(name: &str, value: &Value) -> Option<String> {
    match value.as_str() {
        Some(text) if !text.is_empty() && text.len() <= MAX_ID_BYTES => None,
        _ => Some(format!(
            "{name} must be a text of 1 to 150 bytes, got {value}"
        )),
    }
}
