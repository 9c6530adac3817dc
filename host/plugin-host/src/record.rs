//! The requests a destination sends, kept when asked to (`ebb
//! test-record`), so the operator sees exactly what went out and how the
//! vendor answered. Off unless started: keeping a request means holding
//! its whole body in memory before it is sent.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::{Error, WasiBody};

use crate::call::lock;

/// The most bytes of a request body kept for showing.
const SHOWN_BODY_BYTES: usize = 64 << 10;

/// One request a destination sent, and the status it was answered with.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Exchange {
    pub method: String,
    pub url: String,
    /// Header names lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body as text, cut at 64 KiB.
    pub body: String,
    /// `None`: no answer came (refused, timed out, connection lost).
    pub status: Option<u16>,
}

/// Where a destination's requests are kept; shared by all its instances.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Option<Vec<Exchange>>>>);

impl Recorder {
    /// Keeps every request from now on.
    pub fn start(&self) {
        lock(&self.0).get_or_insert_with(Vec::new);
    }

    /// The requests kept so far, leaving none.
    pub fn take(&self) -> Vec<Exchange> {
        lock(&self.0)
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Keeps `request` if recording, its body read whole and put back; the
    /// index to give its status to.
    pub(crate) async fn request(
        &self,
        request: http::Request<WasiBody>,
    ) -> Result<(http::Request<WasiBody>, Option<usize>), Error> {
        if lock(&self.0).is_none() {
            return Ok((request, None));
        }
        let (parts, body) = request.into_parts();
        let bytes = body.collect().await?.to_bytes();
        let exchange = Exchange {
            method: parts.method.to_string(),
            url: parts.uri.to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect(),
            body: shown(&bytes),
            status: None,
        };
        let index = lock(&self.0).as_mut().map(|kept| {
            kept.push(exchange);
            kept.len() - 1
        });
        let body = Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync();
        Ok((http::Request::from_parts(parts, body), index))
    }

    /// Notes the status request `index` was answered with.
    pub(crate) fn answered(&self, index: Option<usize>, status: u16) {
        if let (Some(i), Some(kept)) = (index, lock(&self.0).as_mut())
            && let Some(exchange) = kept.get_mut(i)
        {
            exchange.status = Some(status);
        }
    }
}

/// A body as text for people, cut at [`SHOWN_BODY_BYTES`].
fn shown(bytes: &Bytes) -> String {
    let cut = &bytes[..bytes.len().min(SHOWN_BODY_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > cut.len() {
        text.push_str(&format!(" … ({} bytes in all)", bytes.len()));
    }
    text
}
