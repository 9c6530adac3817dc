//! Sends a [`Request`] over `wasi:http` with `wstd`'s client: the real
//! path, inside a component.

use super::{Request, Response, denied_error, failed_error, redact_url};
use crate::Error;
use wstd::http::{Client, ErrorCode};

pub(super) fn send(request: Request) -> Result<Response, Error> {
    let Request {
        method,
        url,
        headers,
        body,
        timeout,
    } = request;
    let mut outgoing = wstd::http::Request::builder()
        .method(method)
        .uri(url.as_str());
    for (name, value) in &headers {
        outgoing = outgoing.header(name.as_str(), value.as_str());
    }
    // The builder checked the URL and headers already; this only fails on
    // what `http` accepts there but not here.
    let outgoing = outgoing.body(body).map_err(|e| {
        Error::invalid_config(format!(
            "cannot send a request to {}: {e}",
            redact_url(&url)
        ))
    })?;
    let mut client = Client::new();
    if let Some(timeout) = timeout {
        client.set_connect_timeout(timeout);
        client.set_first_byte_timeout(timeout);
        client.set_between_bytes_timeout(timeout);
    }
    wstd::runtime::block_on(async move {
        let response = client
            .send(outgoing)
            .await
            .map_err(|e| transport_error(&url, e))?;
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
            .map_err(|e| transport_error(&url, e))?
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
        Some(ErrorCode::HttpRequestDenied) => denied_error(url),
        _ => failed_error(url, &format!("{error:#}")),
    }
}
