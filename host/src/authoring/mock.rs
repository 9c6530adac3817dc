//! The mock endpoint of `ebb plugin test`: a local HTTP server that
//! records every request a plugin makes and answers from a script, so an
//! author sees exactly what their connector sends and how it takes a 429,
//! a 500 or a refused record, without reaching the real API.
//!
//! The plugin keeps the config it ships with: the engine sends its allowed
//! requests here instead (see [`ORIGIN_HEADER`]), and each is recorded
//! under the URL it was meant for.
//!
//! A script is a TOML (or `.json`) file of rules, tried in order; the first
//! that matches a request and is not used up answers it:
//!
//! ```toml
//! [[respond]]
//! path = "/v1/batch"    # optional: only requests to this path
//! method = "POST"       # optional
//! times = 1             # optional: answers this many requests, then is used up
//! status = 429
//! headers = { "Retry-After" = "1" }
//! body = "slow down"    # or json = { … }
//! ```
//!
//! A request no rule answers gets `200` with the JSON body `{}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::plugin::{Exchange, ORIGIN_HEADER};

/// The rules of a script.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    #[serde(default)]
    respond: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    path: Option<String>,
    method: Option<String>,
    times: Option<u32>,
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    json: Option<serde_json::Value>,
}

fn ok() -> u16 {
    200
}

impl Script {
    /// Reads a script; the error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<Script, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the script {}: {e}", path.display()))?;
        let script: Script = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        }
        .map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, rule) in script.respond.iter().enumerate() {
            let problem = if StatusCode::from_u16(rule.status).is_err() {
                Some(format!("status {} is not an HTTP status", rule.status))
            } else if rule.body.is_some() && rule.json.is_some() {
                Some("give `body` or `json`, not both".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(format!("{}: respond[{i}]: {problem}", path.display()));
            }
        }
        Ok(script)
    }
}

impl Rule {
    fn matches(&self, method: &Method, path: &str) -> bool {
        self.times != Some(0)
            && self.path.as_deref().is_none_or(|p| p == path)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
    }

    fn answer(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = match (&self.json, &self.body) {
            (Some(json), _) => (status, axum::Json(json.clone())).into_response(),
            (None, Some(body)) => (status, body.clone()).into_response(),
            (None, None) => status.into_response(),
        };
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::try_from(name.as_str()),
                axum::http::HeaderValue::try_from(value.as_str()),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// The running mock: where it listens and what it has recorded.
pub struct Mock {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

struct Shared {
    rules: Mutex<Vec<Rule>>,
    recorded: Mutex<Vec<Exchange>>,
}

impl Mock {
    /// Listens on a free loopback port.
    pub async fn start(script: Script) -> std::io::Result<Mock> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            rules: Mutex::new(script.respond),
            recorded: Mutex::default(),
        });
        let state = shared.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { state.answer(method, uri, headers, body) }
            },
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Mock {
            addr,
            shared,
            server,
        })
    }

    /// Every request so far, in the order they arrived.
    pub fn recorded(&self) -> Vec<Exchange> {
        lock(&self.shared.recorded).clone()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let path = uri.path().to_owned();
        let response = {
            let mut rules = lock(&self.rules);
            match rules.iter_mut().find(|r| r.matches(&method, &path)) {
                Some(rule) => {
                    if let Some(times) = &mut rule.times {
                        *times -= 1;
                    }
                    rule.answer()
                }
                None => (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response(),
            }
        };
        let origin = headers
            .get(ORIGIN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(without_default_port)
            .unwrap_or_default();
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        lock(&self.recorded).push(Exchange {
            method: method.to_string(),
            url: format!("{}{path}{query}", origin),
            headers: headers
                .iter()
                .filter(|(name, _)| *name != ORIGIN_HEADER && *name != "host")
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
            status: Some(response.status().as_u16()),
        });
        response
    }
}

/// `https://host:443` as `https://host`, as people write it.
fn without_default_port(origin: &str) -> String {
    let default = match origin.split_once("://") {
        Some(("https", _)) => ":443",
        Some(("http", _)) => ":80",
        _ => "",
    };
    origin
        .strip_suffix(default)
        .filter(|_| !default.is_empty())
        .unwrap_or(origin)
        .to_owned()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
