//! Sending a destination's request to an address the egress policy has
//! checked.
//!
//! A granted name is resolved once, here; each address it resolves to is
//! checked ([`Policy::admits_address`]) and the connection goes to a
//! checked one. Checking a name and letting the connector resolve it again
//! would let DNS answer the check with one address and the connection with
//! another, or point a granted name at loopback or a cloud metadata
//! service. The response is read within the between-bytes timeout and up
//! to the destination's response cap; past either, reading the body fails
//! and the reason is noted for the operator.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use crate::budget::BudgetCell;
use crate::egress::{Policy, ip_literal};
use crate::record::Recorder;

/// What a request needs besides itself: the policy its addresses are held
/// to, the response cap, and where refusals are noted.
#[derive(Clone, Default)]
pub struct Sending {
    pub policy: Arc<Policy>,
    pub response_bytes: u64,
    pub budget: Arc<BudgetCell>,
    pub recorder: Recorder,
    pub notes: Notes,
}

/// Why the host refused or cut short requests in the current call, worded
/// for the operator; the guest sees only an error code.
#[derive(Clone, Default)]
pub struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    pub fn push(&self, note: String) {
        if let Ok(mut notes) = self.0.lock() {
            notes.push(note);
        }
    }

    /// The notes so far, leaving none.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut notes| std::mem::take(&mut *notes))
            .unwrap_or_default()
    }
}

/// A response, and the connection's own future that the caller drives.
pub type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Sends `request` (whose scheme and authority the policy admitted by
/// name) over a connection to a checked address, or to `mock` when set.
pub async fn send(
    request: http::Request<WasiBody>,
    options: RequestOptions,
    sending: Sending,
    mock: Option<SocketAddr>,
) -> Result<Sent, Error> {
    let (mut request, recorded) = sending.recorder.request(request).await?;
    let uri = request.uri();
    let tls = uri.scheme() == Some(&Scheme::HTTPS);
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let host = authority.host().to_owned();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let origin = format!("{}://{host}:{port}/", if tls { "https" } else { "http" });
    let connect = options.connect_timeout.unwrap_or(Duration::from_secs(10));
    let addresses = match mock {
        Some(mock) => vec![mock],
        None => checked(&host, port, connect, &sending, &origin).await?,
    };
    if let Some(budget) = sending.budget.get() {
        budget.request().await;
    }
    let stream = connect_any(&addresses, connect).await?;
    let io: Box<dyn Stream> = match tls {
        true => Box::new(tls_connect(&host, stream, connect).await?),
        false => Box::new(stream),
    };
    let (mut sender, connection) = tokio::time::timeout(
        connect,
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // The request line carries the path only; the authority went into the
    // `host` header.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let mut connection = Box::pin(connection);
    let first_byte = options
        .first_byte_timeout
        .unwrap_or(Duration::from_secs(30));
    let response = tokio::time::timeout(first_byte, async {
        tokio::select! {
            response = sender.send_request(request) => response.map_err(Error::from),
            ended = &mut connection => Err(ended.err().map_or(Error::HttpResponseIncomplete, Error::from)),
        }
    })
    .await
    .map_err(|_| Error::ConnectionReadTimeout)??;
    sending
        .recorder
        .answered(recorded, response.status().as_u16());
    if let Some(budget) = sending.budget.get()
        && response.status() == http::StatusCode::TOO_MANY_REQUESTS
    {
        budget.slow_down(retry_after(response.headers()));
    }
    let between = options
        .between_bytes_timeout
        .unwrap_or(Duration::from_secs(30))
        .max(Duration::from_nanos(1));
    let capped = |body| {
        Capped {
            body,
            between,
            idle: Box::pin(tokio::time::sleep(between)),
            read: 0,
            cap: sending.response_bytes,
            notes: sending.notes.clone(),
            origin: origin.clone(),
        }
        .boxed_unsync()
    };
    let connection = async move { connection.await.map_err(Error::from) };
    Ok((response.map(capped), Box::new(connection)))
}

/// How long a 429 asks to wait: its `Retry-After` in seconds (at most a
/// minute), else a second.
fn retry_after(headers: &http::HeaderMap) -> Duration {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), |secs| {
            Duration::from_secs(secs.min(60))
        })
}

/// The addresses `host` resolves to that the policy admits; refused ones
/// are noted, and none admitted refuses the request.
async fn checked(
    host: &str,
    port: u16,
    timeout: Duration,
    sending: &Sending,
    origin: &str,
) -> Result<Vec<SocketAddr>, Error> {
    let resolved: Vec<SocketAddr> = match ip_literal(host) {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Error::DnsTimeout)?
            .map_err(|_| Error::DestinationNotFound)?
            .collect(),
    };
    let (admitted, refused): (Vec<_>, Vec<_>) = resolved
        .into_iter()
        .partition(|addr| sending.policy.admits_address(*addr));
    if admitted.is_empty() {
        let why = refused
            .iter()
            .map(|addr| sending.policy.address_denial(host, *addr))
            .collect::<Vec<_>>()
            .join("; ");
        sending
            .notes
            .push(format!("request to {origin} denied: {why}"));
        return Err(if refused.is_empty() {
            Error::DestinationNotFound
        } else {
            Error::DestinationIpProhibited
        });
    }
    Ok(admitted)
}

/// A connection to the first of `addresses` that answers.
async fn connect_any(addresses: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = Error::DestinationUnavailable;
    for addr in addresses {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Error::ConnectionRefused
            }
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin> Stream for T {}

/// TLS over `stream`, verifying the certificate against `host` (a name or
/// an IP address) with the web's root certificates.
async fn tls_connect(
    host: &str,
    stream: TcpStream,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let name = match ip_literal(host) {
        Some(ip) => rustls::pki_types::ServerName::from(ip),
        None => rustls::pki_types::ServerName::try_from(host.to_owned())?,
    };
    let connector = tokio_rustls::TlsConnector::from(tls_config());
    tokio::time::timeout(timeout, connector.connect(name, stream))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Tls)
}

/// One client TLS configuration for the process: building it parses every
/// root certificate.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// A response body read within the between-bytes timeout and up to `cap`
/// bytes.
struct Capped {
    body: hyper::body::Incoming,
    between: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    read: u64,
    cap: u64,
    notes: Notes,
    origin: String,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if this.read > this.cap {
                    this.notes.push(format!(
                        "the response from {} was cut off after {} bytes, over limits.http_response_bytes ({}); raise it if the destination's answers are that large",
                        this.origin, this.cap, this.cap
                    ));
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.read)))));
                }
                let deadline = tokio::time::Instant::now() + this.between;
                this.idle.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.idle.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
