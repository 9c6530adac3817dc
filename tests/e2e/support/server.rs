//! A local HTTP destination endpoint for the `ebb:http` plugin: it records
//! every request and answers as the test scripts it (accept, refuse given
//! ids, 503/429 with or without Retry-After, answer late, hang, or hold the
//! answer until the test lets it go). It listens on loopback only and talks
//! to nothing else.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::loopback::Loopback;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::events::without_delivery_id;

/// How the server answers a request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200, refusing the events whose ids were given to [`Server::reject`].
    Accept,
    /// This status (e.g. 503, 429) with an optional `Retry-After` in seconds.
    Status { code: u16, retry_after: Option<u32> },
    /// Never answers (sleeps far longer than any test).
    Hang,
    /// Accepts with an answer padded to this many bytes.
    Huge(usize),
    /// Answers like [`Reply::Accept`], but only after this long.
    Delay(Duration),
    /// Answers like [`Reply::Accept`] once [`Server::release`] lets it go,
    /// so a test can act while the sender waits; logged as answered 200.
    Hold,
}

/// One request the server saw and what it answered.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    /// The request's JSON body (null if it was not JSON), as sent.
    pub body: Value,
    /// Its events, without their delivery ids (see `without_delivery_id`).
    pub events: Vec<Value>,
    pub status: u16,
    /// Ids refused in a 200 answer's `rejected` list.
    pub rejected: Vec<String>,
}

impl Received {
    pub fn carries(&self, id: &str) -> bool {
        self.events.iter().any(|event| event_id(event) == id)
    }

    /// Events this request delivered: answered 200 and not refused.
    pub fn accepted(&self) -> impl Iterator<Item = &Value> {
        self.events.iter().filter(move |event| {
            self.status == 200 && !self.rejected.iter().any(|id| *id == event_id(event))
        })
    }
}

/// A scripted answer for the next `remaining` requests that match.
struct Script {
    /// Only requests carrying an event with this id match; `None` matches all.
    when_id: Option<String>,
    reply: Reply,
    remaining: usize,
}

#[derive(Default)]
struct Inner {
    log: Vec<Received>,
    rejects: BTreeMap<String, String>,
    scripts: Vec<Script>,
    /// Lets one [`Reply::Hold`] answer.
    release: Arc<Notify>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct Server {
    http: Loopback,
    inner: Shared,
}

impl Server {
    pub fn start() -> Server {
        let inner = Shared::default();
        let app = Router::new()
            .route("/ingest", post(ingest))
            .with_state(inner.clone());
        Server {
            http: Loopback::serve(app),
            inner,
        }
    }

    /// `127.0.0.1:<port>`, as `allow_hosts` wants it.
    pub fn host(&self) -> String {
        self.http.host()
    }

    pub fn url(&self) -> String {
        format!("http://{}/ingest", self.http.addr)
    }

    /// From now on, 200 answers refuse events with this id.
    pub fn reject(&self, id: &str, error: &str) {
        self.lock().rejects.insert(id.to_owned(), error.to_owned());
    }

    /// The next `times` requests (carrying an event with id `when_id`, if
    /// given) get `reply`. Scripts are matched in the order they were added.
    pub fn script(&self, when_id: Option<&str>, reply: Reply, times: usize) {
        self.lock().scripts.push(Script {
            when_id: when_id.map(str::to_owned),
            reply,
            remaining: times,
        });
    }

    /// Lets the request held by [`Reply::Hold`] (or the next one) answer.
    pub fn release(&self) {
        self.lock().release.notify_one();
    }

    /// Back to accepting everything.
    pub fn accept_all(&self) {
        let mut inner = self.lock();
        inner.rejects.clear();
        inner.scripts.clear();
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.lock().log.clone()
    }

    /// Every event delivered so far (200 and not refused), in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        self.lock()
            .log
            .iter()
            .flat_map(|r| r.accepted().cloned().collect::<Vec<_>>())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("server state poisoned")
    }
}

/// The envelope's `id`.
pub fn event_id(event: &Value) -> String {
    event["id"]
        .as_str()
        .unwrap_or_else(|| panic!("event without a string id: {event}"))
        .to_owned()
}

async fn ingest(State(inner): State<Shared>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let events: Vec<Value> = body
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(without_delivery_id)
        .collect();
    let reply = {
        let mut inner = inner.lock().expect("server state poisoned");
        let ids: HashSet<String> = events.iter().map(event_id).collect();
        let reply = inner
            .scripts
            .iter_mut()
            .find(|s| s.remaining > 0 && s.when_id.as_ref().is_none_or(|id| ids.contains(id)))
            .map(|s| {
                s.remaining -= 1;
                s.reply.clone()
            })
            .unwrap_or(Reply::Accept);
        let (status, rejected) = match &reply {
            Reply::Accept | Reply::Delay(_) | Reply::Hold | Reply::Huge(_) => (
                200,
                events
                    .iter()
                    .map(event_id)
                    .filter(|id| inner.rejects.contains_key(id))
                    .collect(),
            ),
            Reply::Status { code, .. } => (*code, Vec::new()),
            Reply::Hang => (0, Vec::new()),
        };
        let answer = json!({
            "rejected": rejected
                .iter()
                .map(|id| json!({ "id": id, "error": inner.rejects[id] }))
                .collect::<Vec<_>>()
        });
        inner.log.push(Received {
            at: Instant::now(),
            body,
            events,
            status,
            rejected,
        });
        (reply, answer, inner.release.clone())
    };
    match reply {
        (Reply::Delay(pause), body, _) => {
            tokio::time::sleep(pause).await;
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        (Reply::Hold, body, release) => {
            release.notified().await;
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        (Reply::Accept, body, _) => (StatusCode::OK, axum::Json(body)).into_response(),
        (Reply::Huge(bytes), mut body, _) => {
            body["padding"] = "x".repeat(bytes).into();
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        (Reply::Status { code, retry_after }, _, _) => {
            let mut response = StatusCode::from_u16(code)
                .expect("valid status")
                .into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        (Reply::Hang, _, _) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}
