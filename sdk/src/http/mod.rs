//! Outgoing HTTP for destinations.
//!
//! Start a request with [`get`], [`post`], [`put`], [`patch`], [`delete`] or
//! [`request`] (any [`Method`]), add query parameters, headers, credentials,
//! a body and a timeout, and [`send`](RequestBuilder::send) it:
//!
//! ```no_run
//! use ebb_sdk::http;
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), ebb_sdk::Error> {
//! let response = http::get("https://api.example.com/v1/contacts")
//!     .query("email", "ada+test@example.com")
//!     .bearer("secret-token")
//!     .timeout(Duration::from_secs(10))
//!     .send()?;
//! if let Some(error) = response.error() {
//!     return Err(error);
//! }
//! let contacts: serde_json::Value = response.json()?;
//! # Ok(()) }
//! ```
//!
//! Inside a component the request goes out over `wasi:http` through `wstd`.
//! The host only lets requests through to hosts the operator granted; a
//! refused request comes back as an [`ErrorKind::InvalidConfig`] error that
//! says so, and network failures as transient errors that carry the
//! underlying cause. Built for anything but `wasm32` (a plugin's own
//! `cargo test`), [`RequestBuilder::send`] answers from the
//! [`MockHttp`](crate::testing::MockHttp) installed on the thread, which
//! records the very [`Request`] a component would have sent.
//!
//! No error message quotes a URL's query string or user info, where APIs
//! keep keys and passwords: see [`redact_url`].
//!
//! [`ErrorKind::InvalidConfig`]: crate::ErrorKind::InvalidConfig

#[cfg(target_arch = "wasm32")]
mod wasi;

// Inside a component requests go out over wasi:http; anywhere else (a
// plugin's unit tests) the thread's mock answers them.
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::answer as transport;
#[cfg(target_arch = "wasm32")]
use wasi::send as transport;

use crate::Error;
use ::http::{HeaderName, HeaderValue, Uri};
use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::{Duration, SystemTime};

/// An HTTP method: the usual constants (`Method::GET`, `Method::PATCH`, …)
/// or any other with `Method::from_bytes`.
pub use ::http::Method;

/// How much of a response body an error message quotes.
const SNIPPET_BYTES: usize = 1024;

/// What a query parameter keeps as it is: RFC 3986's unreserved
/// characters. Everything else is percent-encoded, spaces as `%20`.
const QUERY_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Starts a request with any method.
pub fn request(method: Method, url: impl Into<String>) -> RequestBuilder {
    RequestBuilder {
        method,
        url: url.into(),
        query: Vec::new(),
        headers: Vec::new(),
        body: Body::Empty,
        timeout: None,
        error: None,
    }
}

/// Starts a `GET` request.
pub fn get(url: impl Into<String>) -> RequestBuilder {
    request(Method::GET, url)
}

/// Starts a `POST` request.
pub fn post(url: impl Into<String>) -> RequestBuilder {
    request(Method::POST, url)
}

/// Starts a `PUT` request.
pub fn put(url: impl Into<String>) -> RequestBuilder {
    request(Method::PUT, url)
}

/// Starts a `PATCH` request.
pub fn patch(url: impl Into<String>) -> RequestBuilder {
    request(Method::PATCH, url)
}

/// Starts a `DELETE` request.
pub fn delete(url: impl Into<String>) -> RequestBuilder {
    request(Method::DELETE, url)
}

/// POSTs `body` as JSON to `url` with extra `headers` (which may replace
/// the default `content-type: application/json`), and reads the whole
/// response. `timeout` bounds connecting and each wait for response bytes;
/// without it the host's limits apply. Shorthand for
/// `post(url).headers(headers).json(body)`, with the timeout if any.
pub fn post_json<K, V>(
    url: &str,
    headers: impl IntoIterator<Item = (K, V)>,
    body: &impl Serialize,
    timeout: Option<Duration>,
) -> Result<Response, Error>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let request = post(url).headers(headers).json(body);
    match timeout {
        Some(timeout) => request.timeout(timeout),
        None => request,
    }
    .send()
}

/// A request being put together. Nothing is checked or sent until
/// [`build`](Self::build) or [`send`](Self::send), which report the first
/// problem (a bad URL or header, a body that is not JSON) as an error.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    method: Method,
    url: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Body,
    timeout: Option<Duration>,
    error: Option<Error>,
}

enum Body {
    Empty,
    /// Sent as it is, with whatever `content-type` the plugin set.
    Raw(Vec<u8>),
    /// Sent with this `content-type` unless the plugin set one.
    Typed(&'static str, Vec<u8>),
}

impl RequestBuilder {
    /// Adds a query parameter, percent-encoded, after any the URL has.
    pub fn query(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.query
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Adds query parameters, in order.
    pub fn query_pairs<K, V>(self, pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        pairs
            .into_iter()
            .fold(self, |request, (key, value)| request.query(key, value))
    }

    /// Sets a header; a later value for the same name (in any case)
    /// replaces an earlier one.
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.headers
            .push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets several headers, such as the `headers` map of a plugin's config.
    pub fn headers<K, V>(self, headers: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        headers
            .into_iter()
            .fold(self, |request, (name, value)| request.header(name, value))
    }

    /// Sets `authorization: Basic …` for `user` and `password`.
    pub fn basic_auth(self, user: impl AsRef<str>, password: impl AsRef<str>) -> Self {
        let value = basic_credentials(user.as_ref(), password.as_ref());
        self.header("authorization", value)
    }

    /// Sets `authorization: Bearer <token>`.
    pub fn bearer(self, token: impl AsRef<str>) -> Self {
        let value = format!("Bearer {}", token.as_ref());
        self.header("authorization", value)
    }

    /// Sends `body` as JSON, with `content-type: application/json` unless a
    /// header sets another.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body = Body::Typed("application/json", bytes),
            Err(e) => {
                self.error.get_or_insert_with(|| {
                    Error::internal(format!("cannot encode the request body as JSON: {e}"))
                });
            }
        }
        self
    }

    /// Sends `pairs` as an HTML form (`application/x-www-form-urlencoded`),
    /// as OAuth token endpoints want.
    pub fn form<K, V>(mut self, pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (key, value) in pairs {
            form.append_pair(key.as_ref(), value.as_ref());
        }
        let body = form.finish().into_bytes();
        self.body = Body::Typed("application/x-www-form-urlencoded", body);
        self
    }

    /// Sends `bytes` as they are; set `content-type` with
    /// [`header`](Self::header).
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Raw(bytes.into());
        self
    }

    /// Bounds connecting and each wait for response bytes; without it the
    /// host's limits apply.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Checks the request and puts it in the form it is sent in: the query
    /// encoded into the URL, user info in the URL moved to basic
    /// credentials, header names in lower case, `content-type` and
    /// `content-length` set.
    pub fn build(self) -> Result<Request, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let parts = UrlParts::of(&self.url);
        let mut url = format!("{}{}{}", parts.scheme, parts.host, parts.path);
        let mut query = parts.query.unwrap_or_default().to_owned();
        for (key, value) in &self.query {
            if !query.is_empty() && !query.ends_with('&') {
                query.push('&');
            }
            query.push_str(&format!(
                "{}={}",
                utf8_percent_encode(key, QUERY_KEEPS),
                utf8_percent_encode(value, QUERY_KEEPS)
            ));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        check_url(&url)?;

        let mut headers = Vec::with_capacity(self.headers.len() + 3);
        for (name, value) in &self.headers {
            let name = HeaderName::try_from(name.as_str()).map_err(|_| {
                Error::invalid_config(format!("{name:?} is not a valid header name"))
            })?;
            HeaderValue::try_from(value.as_str()).map_err(|_| {
                Error::invalid_config(format!("the value of header {name} is not valid in HTTP"))
            })?;
            set_header(&mut headers, name.as_str(), value.clone());
        }
        if let Some(user_info) = parts.user_info
            && find_header(&headers, "authorization").is_none()
        {
            let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
            let decode = |part: &str| percent_decode_str(part).decode_utf8_lossy().into_owned();
            let value = basic_credentials(&decode(user), &decode(password));
            set_header(&mut headers, "authorization", value);
        }
        let body = match self.body {
            Body::Empty => Vec::new(),
            Body::Raw(bytes) => bytes,
            Body::Typed(content_type, bytes) => {
                if find_header(&headers, "content-type").is_none() {
                    set_header(&mut headers, "content-type", content_type.to_owned());
                }
                bytes
            }
        };
        let sends_body = matches!(self.method, Method::POST | Method::PUT | Method::PATCH);
        if !body.is_empty() || sends_body {
            set_header(&mut headers, "content-length", body.len().to_string());
        }
        Ok(Request {
            method: self.method,
            url,
            headers,
            body,
            timeout: self.timeout,
        })
    }

    /// Sends the request and reads the whole response. Any status is a
    /// response; see [`Response::error`] for what a non-2xx one means.
    pub fn send(self) -> Result<Response, Error> {
        self.build()?.send()
    }
}

/// A request as it is sent: what [`RequestBuilder::build`] makes, and what
/// [`MockHttp`](crate::testing::MockHttp) records in test mode.
///
/// Its `Debug` form leaves out header values and the body, and redacts the
/// URL, as they may hold credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl Request {
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The whole URL, query included.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL's path, without the query: `/v1/contacts`.
    pub fn path(&self) -> &str {
        match UrlParts::of(&self.url).path {
            "" => "/",
            path => path,
        }
    }

    /// The query parameters, decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let query = UrlParts::of(&self.url).query.unwrap_or_default();
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    /// The first value of query parameter `key`, decoded.
    pub fn query(&self, key: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }

    /// The headers sent, names in lower case, one value each.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body parsed as JSON.
    pub fn body_json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body parsed as a form, decoded, in order.
    pub fn form_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, Error> {
        transport(self)
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &redact_url(&self.url))
            .field("headers", &names)
            .field("body_bytes", &self.body.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A complete HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names are lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// `Retry-After` in milliseconds, given in seconds (`120`) or as an
    /// HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`, 0 once past). `None`
    /// when absent or unreadable: the host's own backoff applies.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.retry_after_ms_at(SystemTime::now())
    }

    fn retry_after_ms_at(&self, now: SystemTime) -> Option<u64> {
        let value = self.header("retry-after")?.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(seconds.saturating_mul(1000));
        }
        let date = httpdate::parse_http_date(value).ok()?;
        let wait = date.duration_since(now).unwrap_or_default();
        // Rounded up, so a retry never comes before the date.
        let millis = wait.as_nanos().div_ceil(1_000_000);
        Some(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    /// The body parsed as JSON; a body of another shape is an internal
    /// error quoting its start.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::internal(format!(
                "HTTP {}: the response is not the JSON expected ({e}): {}",
                self.status,
                self.body_snippet()
            ))
        })
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The start of the body as text, for error messages.
    pub fn body_snippet(&self) -> String {
        let end = self.body.len().min(SNIPPET_BYTES);
        let text = String::from_utf8_lossy(&self.body[..end]);
        let text = text.trim();
        if end < self.body.len() {
            format!("{text}…")
        } else {
            text.to_owned()
        }
    }

    /// The error a non-2xx status stands for, `None` on success: 429 is
    /// rate-limited and 408 or 5xx transient (both with `Retry-After`),
    /// 401 and 403 are auth errors, any other status rejects the request
    /// and quotes the body.
    pub fn error(&self) -> Option<Error> {
        let status = self.status;
        let said = || match self.body_snippet() {
            snippet if snippet.is_empty() => format!("HTTP {status}"),
            snippet => format!("HTTP {status}: {snippet}"),
        };
        let retry_after = self.retry_after_ms();
        Some(match status {
            200..=299 => return None,
            429 => Error::rate_limited(said(), retry_after),
            408 | 500..=599 => Error::transient(said()).with_retry_after_ms(retry_after),
            401 | 403 => Error::auth(format!("credentials refused: {}", said())),
            _ => Error::rejected(said()),
        })
    }
}

/// Why `url`, the value of config key `key`, cannot be a base URL, if it
/// cannot: it must start with `http://` or `https://`. For a plugin's
/// `validate`; the URL is quoted without its secrets.
pub fn url_problem(key: &str, url: &str) -> Option<String> {
    (!(url.starts_with("http://") || url.starts_with("https://"))).then(|| {
        format!(
            "{key} must start with http:// or https://, got {:?}",
            redact_url(url)
        )
    })
}

/// `url` fit to quote in a message: without user info, query string (shown
/// as `?…`) or fragment, which is where keys and passwords sit.
/// `https://user:pass@api.example.com/v1?api_key=k` becomes
/// `https://api.example.com/v1?…`.
pub fn redact_url(url: &str) -> String {
    let parts = UrlParts::of(url);
    let query = match parts.query {
        Some(query) if !query.is_empty() => "?…",
        _ => "",
    };
    format!("{}{}{}{query}", parts.scheme, parts.host, parts.path)
}

/// The error for a request the host refused to send: its host was not
/// granted.
pub(crate) fn denied_error(url: &str) -> Error {
    Error::invalid_config(format!(
        "request to {} denied by the host (HttpRequestDenied)",
        redact_url(url)
    ))
}

/// The error for a request that failed on the way (connection, TLS,
/// timeout); `cause` is scrubbed of the URL's secrets too, as the client's
/// messages may quote the path and query.
pub(crate) fn failed_error(url: &str, cause: &str) -> Error {
    let parts = UrlParts::of(url);
    let mut cause = cause.replace(url, &redact_url(url));
    if let Some(query) = parts.query.filter(|query| !query.is_empty()) {
        cause = cause.replace(query, "…");
    }
    Error::transient(format!("request to {} failed: {cause}", redact_url(url)))
}

/// Checks a URL before it is sent: it must parse, be http or https and
/// name a host.
fn check_url(url: &str) -> Result<(), Error> {
    let refuse = |why: String| {
        Error::invalid_config(format!(
            "cannot send a request to {}: {why}",
            redact_url(url)
        ))
    };
    let uri: Uri = url.parse().map_err(|e| refuse(format!("{e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(refuse("the URL must start with http:// or https://".into())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(refuse("the URL names no host".into()));
    }
    Ok(())
}

fn basic_credentials(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Sets `name` (lower case) to `value`, replacing any earlier value.
fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    match headers.iter_mut().find(|(key, _)| key == name) {
        Some((_, old)) => *old = value,
        None => headers.push((name.to_owned(), value)),
    }
}

/// A URL cut into the pieces redaction and the builder need, without
/// validating it: `scheme://user_info@host/path?query#fragment`.
struct UrlParts<'a> {
    /// `https://`, or empty when the URL has no scheme.
    scheme: &'a str,
    user_info: Option<&'a str>,
    /// Host and port.
    host: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    fn of(url: &'a str) -> Self {
        let url = url.split_once('#').map_or(url, |(before, _)| before);
        let (rest, query) = match url.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (url, None),
        };
        let (scheme, rest) = match rest.find("://") {
            Some(at)
                if rest[..at]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                rest.split_at(at + 3)
            }
            _ => ("", rest),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (user_info, host) = match authority.rsplit_once('@') {
            Some((user_info, host)) => (Some(user_info), host),
            None => (None, authority),
        };
        UrlParts {
            scheme,
            user_info,
            host,
            path,
            query,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::json;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_map_to_error_kinds() {
        assert_eq!(response(204, &[], "").error(), None);
        let limited = response(429, &[("retry-after", "3")], "").error().unwrap();
        assert_eq!(
            (limited.kind, limited.retry_after_ms),
            (ErrorKind::RateLimited, Some(3000))
        );
        assert_eq!(limited.message, "HTTP 429");
        let down = response(503, &[("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")], "")
            .error()
            .unwrap();
        assert_eq!(
            (down.kind, down.retry_after_ms),
            (ErrorKind::Transient, Some(0))
        );
        assert_eq!(
            response(401, &[], "").error().unwrap().kind,
            ErrorKind::Auth
        );
        assert_eq!(
            response(403, &[], "").error().unwrap().kind,
            ErrorKind::Auth
        );
        let bad = response(422, &[], " email is invalid \n").error().unwrap();
        assert_eq!(
            (bad.kind, bad.message.as_str()),
            (ErrorKind::Rejected, "HTTP 422: email is invalid")
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let at = |value: &str, now: SystemTime| {
            response(429, &[("Retry-After", value)], "").retry_after_ms_at(now)
        };
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(at(" 120 ", now), Some(120_000));
        assert_eq!(at("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(30_000));
        // The two obsolete forms HTTP still allows.
        assert_eq!(at("Wednesday, 21-Oct-15 07:29:00 GMT", now), Some(60_000));
        assert_eq!(at("Wed Oct 21 07:28:01 2015", now), Some(1_000));
        assert_eq!(at("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(0));
        let later = now + Duration::from_micros(1500);
        assert_eq!(at("Wed, 21 Oct 2015 07:28:01 GMT", later), Some(999));
        assert_eq!(at("soon", now), None);
        assert_eq!(at("-5", now), None);
        assert_eq!(response(429, &[], "").retry_after_ms_at(now), None);
    }

    #[test]
    fn long_bodies_are_cut_in_messages() {
        let body = "é".repeat(1000);
        let snippet = response(400, &[], &body).body_snippet();
        assert!(snippet.ends_with('…'));
        assert!(snippet.len() <= SNIPPET_BYTES + '…'.len_utf8() + 3);
    }

    #[test]
    fn response_json_names_what_came_instead() {
        let value: serde_json::Value = response(200, &[], r#"{"id": 7}"#).json().unwrap();
        assert_eq!(value, json!({"id": 7}));
        let error = response(200, &[], "<html>oops</html>")
            .json::<serde_json::Value>()
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(
            error
                .message
                .starts_with("HTTP 200: the response is not the JSON expected")
        );
        assert!(
            error.message.ends_with(": <html>oops</html>"),
            "{}",
            error.message
        );
    }

    #[test]
    fn the_builder_encodes_queries_and_bodies() {
        let request = put("https://api.example.com/v1/contacts?existing=1#top")
            .query("email", "ada+1@example.com")
            .query_pairs([("q", "a b&c=d/é"), ("empty", "")])
            .json(&json!({"a": 1}))
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(request.method(), Method::PUT);
        assert_eq!(
            request.url(),
            "https://api.example.com/v1/contacts?existing=1&email=ada%2B1%40example.com\
             &q=a%20b%26c%3Dd%2F%C3%A9&empty="
        );
        assert_eq!(request.path(), "/v1/contacts");
        assert_eq!(request.query("q").as_deref(), Some("a b&c=d/é"));
        assert_eq!(request.query("email").as_deref(), Some("ada+1@example.com"));
        assert_eq!(
            request.headers(),
            [
                ("content-type".to_owned(), "application/json".to_owned()),
                ("content-length".to_owned(), "7".to_owned())
            ]
        );
        assert_eq!(
            request.body_json::<serde_json::Value>().unwrap(),
            json!({"a": 1})
        );
        assert_eq!(request.timeout(), Some(Duration::from_secs(3)));

        let request = post("http://localhost:8080/oauth/token")
            .form([
                ("grant_type", "client_credentials"),
                ("scope", "read write"),
            ])
            .header(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .build()
            .unwrap();
        assert_eq!(
            request.body(),
            b"grant_type=client_credentials&scope=read+write"
        );
        assert_eq!(
            request.form_pairs()[1],
            ("scope".to_owned(), "read write".to_owned())
        );
        assert_eq!(
            request.header("content-type"),
            Some("application/x-www-form-urlencoded; charset=utf-8")
        );
        assert_eq!(request.path(), "/oauth/token");

        let request = get("https://api.example.com").build().unwrap();
        assert_eq!((request.path(), request.headers()), ("/", &[][..]));
        let empty_post = post("https://api.example.com/ping").build().unwrap();
        assert_eq!(empty_post.header("content-length"), Some("0"));
        let other = super::request(
            Method::from_bytes(b"PROPFIND").unwrap(),
            "https://dav.example.com/",
        )
        .build()
        .unwrap();
        assert_eq!(other.method().as_str(), "PROPFIND");
    }

    #[test]
    fn headers_and_credentials() {
        let request = delete("https://api.example.com/v1/contacts/7")
            .header("X-Api-Key", "one")
            .headers([("x-api-key", "two"), ("Accept", "application/json")])
            .basic_auth("ada", "pa:ss")
            .build()
            .unwrap();
        assert_eq!(request.header("X-API-KEY"), Some("two"));
        assert_eq!(request.header("accept"), Some("application/json"));
        // base64("ada:pa:ss")
        assert_eq!(request.header("authorization"), Some("Basic YWRhOnBhOnNz"));
        assert_eq!(request.header("content-length"), None);
        assert_eq!(request.headers().len(), 3);

        let bearer = get("https://api.example.com/")
            .bearer("t0k")
            .build()
            .unwrap();
        assert_eq!(bearer.header("Authorization"), Some("Bearer t0k"));

        // User info in the URL becomes basic credentials and leaves the URL;
        // an explicit authorization header wins.
        let from_url = get("https://ada%40corp:p%C3%A4ss@api.example.com/x")
            .build()
            .unwrap();
        assert_eq!(from_url.url(), "https://api.example.com/x");
        assert_eq!(
            from_url.header("authorization"),
            Some(basic_credentials("ada@corp", "päss").as_str())
        );
        let explicit = get("https://ada:pass@api.example.com/x")
            .bearer("t")
            .build()
            .unwrap();
        assert_eq!(explicit.header("authorization"), Some("Bearer t"));
    }

    #[test]
    fn bad_requests_are_refused_before_sending() {
        let error = get("https://api.example.com/")
            .header("bad name", "x")
            .build()
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidConfig);
        assert_eq!(error.message, r#""bad name" is not a valid header name"#);

        let error = get("https://api.example.com/")
            .header("X-Api-Key", "line\nbreak-secret")
            .build()
            .unwrap_err();
        assert_eq!(
            error.message,
            "the value of header x-api-key is not valid in HTTP"
        );

        for url in [
            "ftp://files.example.com/a?k=secret",
            "/relative?k=secret",
            "https://?k=secret",
            "http://exa mple.com/?k=secret",
        ] {
            let error = get(url).build().unwrap_err();
            assert_eq!(error.kind, ErrorKind::InvalidConfig, "{url}");
            assert!(
                error.message.starts_with("cannot send a request to "),
                "{url}: {}",
                error.message
            );
            assert!(
                !error.message.contains("secret"),
                "{url}: {}",
                error.message
            );
        }

        let mut not_json = std::collections::HashMap::new();
        not_json.insert(vec![1u8], 1);
        let error = post("https://api.example.com/")
            .json(&not_json)
            .build()
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(
            error
                .message
                .starts_with("cannot encode the request body as JSON")
        );
    }

    #[test]
    fn urls_are_quoted_without_secrets() {
        for (url, quoted) in [
            (
                "https://user:pass@api.example.com:8443/v1/x?api_key=k&b=2#frag",
                "https://api.example.com:8443/v1/x?…",
            ),
            (
                "https://api.example.com/v1/x?",
                "https://api.example.com/v1/x",
            ),
            ("https://api.example.com", "https://api.example.com"),
            ("http://token@host/p@th", "http://host/p@th"),
            ("user:pw@host/path?k=v", "host/path?…"),
            ("https://a@b@host/?x", "https://host/?…"),
        ] {
            assert_eq!(redact_url(url), quoted, "{url}");
        }
    }

    #[test]
    fn transport_errors_never_quote_secrets() {
        let url = "https://api.example.com/v1/x?api_key=s3cret&b=2";
        let error = denied_error(url);
        assert_eq!(error.kind, ErrorKind::InvalidConfig);
        assert_eq!(
            error.message,
            "request to https://api.example.com/v1/x?… denied by the host (HttpRequestDenied)"
        );
        let cause = format!(
            "path and query rejected by wasi-http \"/v1/x?api_key=s3cret&b=2\"; sending {url}"
        );
        let error = failed_error(url, &cause);
        assert_eq!(error.kind, ErrorKind::Transient);
        assert!(!error.message.contains("s3cret"), "{}", error.message);
        assert_eq!(
            error.message,
            "request to https://api.example.com/v1/x?… failed: path and query rejected by \
             wasi-http \"/v1/x?…\"; sending https://api.example.com/v1/x?…"
        );
    }

    #[test]
    fn debug_leaves_out_credentials() {
        let request = get("https://api.example.com/x?api_key=s3cret")
            .bearer("t0ken")
            .build()
            .unwrap();
        let debug = format!("{request:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("t0ken"),
            "{debug}"
        );
        assert!(debug.contains("authorization"), "{debug}");
    }
}
