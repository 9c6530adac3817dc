//! Segment's HTTP Tracking API, `POST /v1/batch`: Basic auth with the write
//! key as user and no password; a JSON body `{"batch": [call, …]}` of at
//! most 500 KB, each call at most 32 KB with a `type` of identify, track,
//! page, screen, group or alias, a `messageId`, and a `userId` or
//! `anonymousId` (track: an `event`; group: a `groupId`). Answers 200
//! `{"success": true}`, 400 naming what is wrong, 401 for a write key it
//! does not know and, when told to, 429 with `Retry-After`.

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
const MAX_CALL_BYTES: usize = 32 * 1024;

#[derive(Default)]
struct Inner {
    write_key: String,
    gate: Gate,
    calls: Vec<Value>,
    /// Requests that broke the protocol, and why.
    problems: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct Segment {
    /// Where it listens.
    pub http: Loopback,
    inner: Shared,
    /// When it answers 429.
    pub gate: Gate,
}

impl Segment {
    /// A fake accepting `write_key`.
    pub fn start(write_key: &str) -> Segment {
        let inner = Shared::default();
        inner.lock().unwrap().write_key = write_key.to_owned();
        let gate = inner.lock().unwrap().gate.clone();
        let app = Router::new()
            .route("/v1/batch", post(batch))
            .with_state(inner.clone());
        Segment {
            http: Loopback::serve(app),
            gate,
            inner,
        }
    }

    /// Every call accepted so far.
    pub fn calls(&self) -> Vec<Value> {
        self.inner.lock().unwrap().calls.clone()
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
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", inner.write_key))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return (StatusCode::UNAUTHORIZED, "Invalid write key").into_response();
    }
    if inner.gate.refuses() {
        let wait = inner.gate.retry_after().as_secs().to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait)],
            "Too Many Requests",
        )
            .into_response();
    }
    let refuse = |inner: &mut Inner, why: String| {
        inner.problems.push(why.clone());
        (StatusCode::BAD_REQUEST, why).into_response()
    };
    if body.len() > MAX_BATCH_BYTES {
        return refuse(
            &mut inner,
            format!("batch of {} bytes is over 500 KB", body.len()),
        );
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return refuse(&mut inner, "body is not JSON".into());
    };
    let Some(calls) = parsed["batch"].as_array() else {
        return refuse(&mut inner, "body has no `batch` array".into());
    };
    for call in calls {
        if let Some(why) = invalid(call) {
            return refuse(&mut inner, why);
        }
    }
    inner.calls.extend(calls.iter().cloned());
    (StatusCode::OK, axum::Json(json!({ "success": true }))).into_response()
}

/// Why Segment would refuse this call, if it would.
fn invalid(call: &Value) -> Option<String> {
    let size = call.to_string().len();
    let kind = call["type"].as_str().unwrap_or_default();
    let has = |field: &str| call[field].as_str().is_some_and(|s| !s.is_empty());
    [
        (size > MAX_CALL_BYTES).then(|| format!("call of {size} bytes is over 32 KB")),
        (!["identify", "track", "page", "screen", "group", "alias"].contains(&kind))
            .then(|| format!("unknown type {kind:?}")),
        (!has("messageId")).then(|| "call without messageId".to_owned()),
        (!has("userId") && !has("anonymousId"))
            .then(|| "call without userId or anonymousId".to_owned()),
        (kind == "track" && !has("event")).then(|| "track without event".to_owned()),
        (kind == "group" && !has("groupId")).then(|| "group without groupId".to_owned()),
    ]
    .into_iter()
    .flatten()
    .next()
}
