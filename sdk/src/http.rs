//! Outgoing HTTP for destinations, over `wasi:http` through `wstd`. The host
//! only lets requests through to hosts the operator granted; a refused
//! request comes back as an [`ErrorKind::InvalidConfig`](crate::ErrorKind)
//! error that says so, and network failures as transient errors that carry
//! the underlying cause.

use crate::Error;
use serde::Serialize;
use std::time::Duration;
use wstd::http::{Client, ErrorCode, HeaderName, HeaderValue, Request};

/// How much of a response body an error message quotes.
const SNIPPET_BYTES: usize = 1024;

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
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `Retry-After` in milliseconds when given in seconds; an HTTP date is
    /// ignored and the host's own backoff applies.
    pub fn retry_after_ms(&self) -> Option<u64> {
        let seconds: u64 = self.header("retry-after")?.trim().parse().ok()?;
        Some(seconds.saturating_mul(1000))
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

/// POSTs `body` as JSON to `url` with extra `headers` (which may replace
/// the default `content-type: application/json`), and reads the whole
/// response. `timeout` bounds connecting and each wait for response bytes;
/// without it the host's limits apply.
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
    let body = serde_json::to_vec(body)
        .map_err(|e| Error::internal(format!("cannot encode the request body as JSON: {e}")))?;
    let length = HeaderValue::from(body.len());
    let mut request = Request::post(url)
        .body(body)
        .map_err(|e| Error::invalid_config(format!("cannot send a request to {url:?}: {e}")))?;
    let fields = request.headers_mut();
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        let name = HeaderName::try_from(name)
            .map_err(|_| Error::invalid_config(format!("{name:?} is not a valid header name")))?;
        let value = HeaderValue::try_from(value).map_err(|_| {
            Error::invalid_config(format!("the value of header {name} is not valid in HTTP"))
        })?;
        fields.insert(name, value);
    }
    fields
        .entry(HeaderName::from_static("content-type"))
        .or_insert(HeaderValue::from_static("application/json"));
    fields.insert(HeaderName::from_static("content-length"), length);
    let mut client = Client::new();
    if let Some(timeout) = timeout {
        client.set_connect_timeout(timeout);
        client.set_first_byte_timeout(timeout);
        client.set_between_bytes_timeout(timeout);
    }
    wstd::runtime::block_on(async move {
        let response = client
            .send(request)
            .await
            .map_err(|e| transport_error(url, e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let body = response
            .into_body()
            .contents()
            .await
            .map_err(|e| transport_error(url, e))?
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    })
}

fn transport_error(url: &str, error: wstd::http::Error) -> Error {
    match error.downcast_ref::<ErrorCode>() {
        Some(ErrorCode::HttpRequestDenied) => Error::invalid_config(format!(
            "request to {url} denied by the host (HttpRequestDenied)"
        )),
        _ => Error::transient(format!("request to {url} failed: {error:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

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
            (ErrorKind::Transient, None)
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
    fn long_bodies_are_cut_in_messages() {
        let body = "é".repeat(1000);
        let snippet = response(400, &[], &body).body_snippet();
        assert!(snippet.ends_with('…'));
        assert!(snippet.len() <= SNIPPET_BYTES + '…'.len_utf8() + 3);
    }
}
