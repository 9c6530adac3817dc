//! Test mode: a plugin's own `cargo test`, natively, with no WebAssembly
//! runtime. Built for anything but `wasm32`, the SDK answers HTTP from a
//! [`MockHttp`] installed on the current thread and keeps log lines for
//! [`logs`]; [`write`], [`validate`], [`spec`] and [`apply`] call a plugin
//! through the same glue its component exports use (config parsed and
//! checked, events encoded and decoded, results kept index-aligned).
//!
//! ```
//! use ebb_sdk::testing::{self, MockHttp, Reply};
//! use ebb_sdk::{Error, Op, Outcome};
//! use serde_json::json;
//! # use ebb_sdk::{Destination, Event, Spec, http};
//! # struct Crm;
//! # #[derive(serde::Deserialize)] struct Config { url: String }
//! # impl Destination for Crm {
//! #     type Config = Config;
//! #     fn spec() -> Spec { Spec::new("crm", "1.0.0") }
//! #     fn write(config: &Config, _: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
//! #         let response = http::post(&config.url).json(&batch).send()?;
//! #         Ok(vec![response.error().map_or(Outcome::Ok, Outcome::from); batch.len()])
//! #     }
//! # }
//!
//! // The first request is rate-limited, the next one accepted.
//! let mock = MockHttp::new()
//!     .reply(Reply::status(429).header("Retry-After", "7"))
//!     .reply(Reply::status(200).json(&json!({"ok": true})));
//! let batch = vec![testing::event(Op::Added, "1", json!({"email": "a@example.com"}))];
//! let config = json!({"url": "https://crm.example.com/contacts"});
//!
//! let outcomes = testing::write::<Crm>(config.clone(), "upsert", batch.clone()).unwrap();
//! assert_eq!(outcomes, [Outcome::Retry(Error::rate_limited("HTTP 429", Some(7000)))]);
//! let outcomes = testing::write::<Crm>(config, "upsert", batch).unwrap();
//! assert_eq!(outcomes, [Outcome::Ok]);
//!
//! let sent = mock.requests();
//! assert_eq!(sent.len(), 2);
//! assert_eq!(sent[0].path(), "/contacts");
//! assert_eq!(sent[0].header("content-type"), Some("application/json"));
//! ```
//!
//! Everything is per thread, as the test harness runs each test on its
//! own: tests do not see each other's mocks or logs.

use crate::destination::{self, Destination};
use crate::http::{Method, Request, Response, denied_error, failed_error, redact_url};
use crate::log::Level;
use crate::spec::{Spec, SpecError};
use crate::transform::{self, Item, Transform};
use crate::{Error, Event, Op, Outcome, RawEvent};
use serde::Serialize;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

thread_local! {
    static MOCK: RefCell<Option<Rc<RefCell<Script>>>> = const { RefCell::new(None) };
    static LOGS: RefCell<Vec<LogLine>> = const { RefCell::new(Vec::new()) };
}

/// Scripted answers to the HTTP requests of the current thread, and a
/// record of every request. It is installed by [`MockHttp::new`] and
/// removed when dropped; without one, a request fails with an error that
/// says to install one.
///
/// A request is answered by the first [`route`](Self::route) matching its
/// method and path, else by the next reply queued with
/// [`reply`](Self::reply) or [`respond`](Self::respond), in order; with
/// neither it fails with an error naming it.
pub struct MockHttp {
    script: Rc<RefCell<Script>>,
}

#[derive(Default)]
struct Script {
    routes: Vec<(Method, String, Reply)>,
    queue: VecDeque<Reply>,
    requests: Vec<Request>,
}

impl MockHttp {
    /// Installs an empty mock for the current thread.
    ///
    /// # Panics
    ///
    /// If the thread has one already.
    pub fn new() -> Self {
        let script = Rc::new(RefCell::new(Script::default()));
        MOCK.with(|mock| {
            let mut mock = mock.borrow_mut();
            assert!(
                mock.is_none(),
                "a MockHttp is already installed on this thread: script that one, or drop it first"
            );
            *mock = Some(Rc::clone(&script));
        });
        MockHttp { script }
    }

    /// Queues a response with `status` and `body` for the next request no
    /// route matches.
    pub fn respond(self, status: u16, body: impl Into<Vec<u8>>) -> Self {
        self.reply(Reply::status(status).body(body))
    }

    /// Queues `reply` for the next request no route matches.
    pub fn reply(self, reply: impl Into<Reply>) -> Self {
        self.script.borrow_mut().queue.push_back(reply.into());
        self
    }

    /// Answers every `method` request to `path` (the URL's path, without
    /// query: `/v1/contacts`) with `reply`.
    pub fn route(self, method: Method, path: &str, reply: impl Into<Reply>) -> Self {
        let route = (method, path.to_owned(), reply.into());
        self.script.borrow_mut().routes.push(route);
        self
    }

    /// Every request sent so far, in order, as it was sent: including those
    /// that found no reply.
    pub fn requests(&self) -> Vec<Request> {
        self.script.borrow().requests.clone()
    }

    /// How many queued replies no request has taken yet.
    pub fn replies_left(&self) -> usize {
        self.script.borrow().queue.len()
    }
}

impl Default for MockHttp {
    /// The same as [`MockHttp::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MockHttp {
    fn drop(&mut self) {
        // Never panic here: this may run while a failed test unwinds.
        let _ = MOCK.try_with(|mock| {
            if let Ok(mut mock) = mock.try_borrow_mut()
                && mock
                    .as_ref()
                    .is_some_and(|installed| Rc::ptr_eq(installed, &self.script))
            {
                *mock = None;
            }
        });
    }
}

/// What the mock answers a request with: a response, or the error a
/// component would get from the network or from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply(Answer);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Response(Response),
    NetworkError(String),
    Denied,
}

impl Reply {
    /// A response with `status`, no headers and an empty body.
    pub fn status(status: u16) -> Self {
        Reply(Answer::Response(Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }))
    }

    /// Adds a response header (its name in lower case, as the real client
    /// gives them). No effect on an error reply.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Answer::Response(response) = &mut self.0 {
            let header = (name.to_ascii_lowercase(), value.to_owned());
            response.headers.push(header);
        }
        self
    }

    /// Sets the response body. No effect on an error reply.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        if let Answer::Response(response) = &mut self.0 {
            response.body = body.into();
        }
        self
    }

    /// Sets the response body to `value` as JSON, with
    /// `content-type: application/json`.
    pub fn json(self, value: &impl Serialize) -> Self {
        let body = serde_json::to_vec(value).expect("a reply body must serialise to JSON");
        self.header("content-type", "application/json").body(body)
    }

    /// The request fails on the way (a refused connection, a reset, a
    /// timeout), as the transient error the real client gives, quoting
    /// `cause`.
    pub fn network_error(cause: impl Into<String>) -> Self {
        Reply(Answer::NetworkError(cause.into()))
    }

    /// The host refuses the request because the operator did not grant its
    /// host: the `invalid-config` error a component gets.
    pub fn denied() -> Self {
        Reply(Answer::Denied)
    }

    fn answer(self, url: &str) -> Result<Response, Error> {
        match self.0 {
            Answer::Response(response) => Ok(response),
            Answer::NetworkError(cause) => Err(failed_error(url, &cause)),
            Answer::Denied => Err(denied_error(url)),
        }
    }
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Reply(Answer::Response(response))
    }
}

/// Where [`Request::send`] goes natively.
pub(crate) fn answer(request: Request) -> Result<Response, Error> {
    let what = format!("{} {}", request.method(), redact_url(request.url()));
    let Some(script) = MOCK.with(|mock| mock.borrow().clone()) else {
        return Err(Error::internal(format!(
            "{what}: no MockHttp is installed on this thread; built natively (in unit tests) \
             ebb-sdk sends no real requests, so install ebb_sdk::testing::MockHttp to answer them"
        )));
    };
    let mut script = script.borrow_mut();
    let route = script
        .routes
        .iter()
        .find(|(method, path, _)| method == request.method() && path == request.path());
    let reply = match route {
        Some((_, _, reply)) => Some(reply.clone()),
        None => script.queue.pop_front(),
    };
    let url = request.url().to_owned();
    script.requests.push(request);
    match reply {
        Some(reply) => reply.answer(&url),
        None => Err(Error::internal(format!(
            "MockHttp has no reply for request {} ({what}): queue one with respond or reply, \
             or add a route for its method and path",
            script.requests.len()
        ))),
    }
}

/// One log line a plugin wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
}

/// The log lines written on this thread so far, in order.
pub fn logs() -> Vec<LogLine> {
    LOGS.with(|logs| logs.borrow().clone())
}

/// The log lines written on this thread so far, leaving none.
pub fn take_logs() -> Vec<LogLine> {
    LOGS.with(|logs| std::mem::take(&mut *logs.borrow_mut()))
}

/// Where [`crate::log`] goes natively: kept for [`logs`], and printed to
/// stderr, which the test harness shows for a failing test.
pub(crate) fn record_log(level: Level, message: &str) {
    eprintln!("[{level:?}] {message}");
    let line = LogLine {
        level,
        message: message.to_owned(),
    };
    // Logging from a thread-local destructor has nowhere to go.
    let _ = LOGS.try_with(|logs| logs.borrow_mut().push(line));
}

/// The destination's spec as the host reads it: serialised by the export
/// glue, then parsed and checked as the host does (`Spec::parse`).
pub fn spec<D: Destination>() -> Result<Spec, SpecError> {
    Spec::parse(&destination::spec_json::<D>())
}

/// Calls the destination's `validate` export with `config`.
pub fn validate<D: Destination>(config: Value) -> Result<(), Vec<String>> {
    destination::validate::<D>(&config.to_string())
}

/// Calls the destination's `write` export with `config`, `action` and
/// `batch`: the config is parsed and validated first (`Err` with an
/// `invalid-config` error when it fails), and each event crosses as the
/// JSON bytes the host sends.
pub fn write<D: Destination>(
    config: Value,
    action: &str,
    batch: Vec<Event>,
) -> Result<Vec<Outcome>, Error> {
    let batch = batch
        .into_iter()
        .map(|event| RawEvent::from(event).into())
        .collect();
    destination::write::<D>(&config.to_string(), action, batch)
}

/// Calls the transform's `apply` export with `config` and `batch`: one
/// item per event, in order; a bad config fails every event.
pub fn apply<T: Transform>(config: Value, batch: Vec<Event>) -> Vec<Item> {
    let batch = batch
        .into_iter()
        .map(|event| RawEvent::from(event).into())
        .collect();
    transform::apply::<T>(&config.to_string(), batch)
        .into_iter()
        .map(Item::decode)
        .collect()
}

/// The deletion of record `id`, whose last delivered fields were
/// `previous`; its `fields` are empty, as a run sends them.
///
/// # Panics
///
/// If `previous` is not a JSON object.
pub fn deleted(id: impl Into<String>, previous: Value) -> Event {
    let Value::Object(previous) = previous else {
        panic!("a deleted event's previous record must be a JSON object, got {previous}");
    };
    Event {
        previous: Some(previous),
        ..event(Op::Deleted, id, Value::Object(Default::default()))
    }
}

/// An event with `op`, `id` and `fields`, no previous record and the
/// delivery id `test-{id}`; set `previous` on the result for updates and
/// deletes.
///
/// # Panics
///
/// If `fields` is not a JSON object.
pub fn event(op: Op, id: impl Into<String>, fields: Value) -> Event {
    let Value::Object(fields) = fields else {
        panic!("an event's fields must be a JSON object, got {fields}");
    };
    let id = id.into();
    Event {
        op,
        delivery_id: format!("test-{id}"),
        id,
        fields,
        previous: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, http, log};
    use serde::Deserialize;
    use serde_json::json;

    struct Echo;

    #[derive(Deserialize)]
    struct Config {
        url: String,
    }

    impl Destination for Echo {
        type Config = Config;

        fn spec() -> Spec {
            Spec::new("echo", "1.0.0")
        }

        fn validate(config: &Config) -> Result<(), Vec<String>> {
            match config.url.is_empty() {
                true => Err(vec!["url is required".into()]),
                false => Ok(()),
            }
        }

        fn write(config: &Config, action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
            log::info(&format!("{action}: {} events", batch.len()));
            Ok(batch
                .iter()
                .map(|event| {
                    let sent = http::post(&config.url)
                        .query("id", &event.id)
                        .json(event)
                        .send();
                    match sent {
                        Ok(response) => response.error().map_or(Outcome::Ok, Outcome::from),
                        Err(error) => error.into(),
                    }
                })
                .collect())
        }
    }

    struct Upper;

    impl Transform for Upper {
        type Config = serde_json::Map<String, Value>;

        fn apply(_: &Self::Config, mut event: Event) -> Item {
            log::warn(&format!("upper {}", event.id));
            match event.fields.get("name").and_then(Value::as_str) {
                Some(name) => {
                    let name = name.to_uppercase();
                    event.fields.insert("name".into(), name.into());
                    Item::Keep(event)
                }
                None => Item::Drop,
            }
        }
    }

    fn config() -> Value {
        json!({"url": "https://api.example.com/v1/events?key=s3cret"})
    }

    #[test]
    fn replies_come_from_routes_then_the_queue_in_order() {
        let mock = MockHttp::new()
            .respond(503, "down")
            .reply(Reply::status(429).header("Retry-After", "2"))
            .reply(Reply::network_error("connection reset"))
            .reply(Reply::denied());
        let batch: Vec<Event> = (1..=5)
            .map(|i| event(Op::Added, i.to_string(), json!({"n": i})))
            .collect();
        let outcomes = write::<Echo>(config(), "send", batch).unwrap();
        assert_eq!(
            outcomes[..2],
            [
                Outcome::Retry(Error::transient("HTTP 503: down")),
                Outcome::Retry(Error::rate_limited("HTTP 429", Some(2000))),
            ]
        );
        let [
            Outcome::Retry(reset),
            Outcome::Reject(denied),
            Outcome::Reject(unscripted),
        ] = &outcomes[2..]
        else {
            panic!("{outcomes:?}");
        };
        assert_eq!(
            reset.message,
            "request to https://api.example.com/v1/events?… failed: connection reset"
        );
        assert_eq!(denied.kind, ErrorKind::InvalidConfig);
        assert!(denied.message.contains("denied by the host"));
        assert_eq!(unscripted.kind, ErrorKind::Internal);
        assert_eq!(
            unscripted.message,
            "MockHttp has no reply for request 5 (POST https://api.example.com/v1/events?…): \
             queue one with respond or reply, or add a route for its method and path"
        );
        for error in [reset, denied, unscripted] {
            assert!(!error.message.contains("s3cret"), "{}", error.message);
        }

        let requests = mock.requests();
        assert_eq!(requests.len(), 5);
        assert_eq!(requests[0].method(), Method::POST);
        assert_eq!(requests[0].path(), "/v1/events");
        assert_eq!(requests[0].query("key").as_deref(), Some("s3cret"));
        assert_eq!(requests[4].query("id").as_deref(), Some("5"));
        let sent: Event = requests[1].body_json().unwrap();
        assert_eq!(sent.fields, json!({"n": 2}).as_object().cloned().unwrap());
        assert_eq!(mock.replies_left(), 0);

        let mock = mock
            .route(Method::POST, "/v1/events", Reply::status(200))
            .respond(500, "");
        let batch = vec![event(Op::Deleted, "9", json!({}))];
        assert_eq!(
            write::<Echo>(config(), "send", batch).unwrap(),
            [Outcome::Ok]
        );
        assert_eq!(mock.replies_left(), 1, "a route answers before the queue");
    }

    #[test]
    fn without_a_mock_requests_fail_and_dropping_uninstalls() {
        let error = http::get("https://api.example.com/x?token=t")
            .send()
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(
            error.message.starts_with(
                "GET https://api.example.com/x?…: no MockHttp is installed on this thread"
            ),
            "{}",
            error.message
        );
        {
            let _mock = MockHttp::new().respond(204, "");
            assert_eq!(http::get("https://a.example/").send().unwrap().status, 204);
        }
        assert!(http::get("https://a.example/").send().is_err());
        let _again = MockHttp::new();
    }

    #[test]
    #[should_panic(expected = "a MockHttp is already installed on this thread")]
    fn one_mock_per_thread() {
        let _first = MockHttp::new();
        let _second = MockHttp::new();
    }

    #[test]
    fn replies_carry_headers_and_json() {
        let _mock = MockHttp::new().reply(Reply::status(200).json(&json!({"ok": true})));
        let response = http::get("https://api.example.com/").send().unwrap();
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        assert_eq!(response.json::<Value>().unwrap(), json!({"ok": true}));
    }

    #[test]
    fn config_problems_come_back_as_the_host_sees_them() {
        assert_eq!(validate::<Echo>(config()), Ok(()));
        assert_eq!(
            validate::<Echo>(json!({"url": ""})),
            Err(vec!["url is required".to_owned()])
        );
        let error = write::<Echo>(json!({}), "send", vec![]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidConfig);
        assert_eq!(error.message, "invalid config: missing field `url`");
        assert_eq!(spec::<Echo>().unwrap().name, "echo");
    }

    #[test]
    fn logs_are_kept_per_thread_with_levels() {
        let _mock = MockHttp::new().respond(200, "");
        write::<Echo>(config(), "send", vec![event(Op::Added, "1", json!({}))]).unwrap();
        log::error("boom");
        assert_eq!(
            take_logs(),
            [
                LogLine {
                    level: Level::Info,
                    message: "send: 1 events".into()
                },
                LogLine {
                    level: Level::Error,
                    message: "boom".into()
                },
            ]
        );
        assert!(logs().is_empty());
        std::thread::spawn(|| log::info("elsewhere"))
            .join()
            .unwrap();
        assert!(logs().is_empty());
    }

    #[test]
    fn apply_runs_the_transform_glue() {
        let batch = vec![
            event(Op::Added, "1", json!({"name": "ada"})),
            event(Op::Updated, "2", json!({"other": 1})),
        ];
        let items = apply::<Upper>(json!({}), batch);
        assert_eq!(
            items,
            [
                Item::Keep(event(Op::Added, "1", json!({"name": "ADA"}))),
                Item::Drop
            ]
        );
        assert_eq!(logs().len(), 2);
        let items = apply::<Upper>(json!([1]), vec![event(Op::Added, "1", json!({}))]);
        assert!(matches!(&items[..], [Item::Fail(e)] if e.kind == ErrorKind::InvalidConfig));
    }
}
