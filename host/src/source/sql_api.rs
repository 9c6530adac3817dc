//! What the warehouses read over HTTP SQL APIs (Snowflake, BigQuery,
//! Databricks) share: one HTTP client with explicit timeouts, retries of
//! rate-limited and unavailable answers that honour `Retry-After` (up to a
//! cap), failures sorted into the [`Problem`] `ebb check` reports, and the
//! drive from "submit" to "every page streamed".
//!
//! These APIs run whatever statement they are given and have no read-only
//! transaction; like every source's, a model is refused unless it is a
//! single `SELECT`/`WITH` when its query is bound (a cheap guard against mistakes, not a security boundary: the role or token
//! the source uses should only be able to read). Each vendor module only
//! speaks its protocol through [`SqlApi`]; the statement deadline, paging
//! through [`ChunkSender`] and error wording live here once.

pub mod values;

use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::Value;

use super::chunks::{ChunkSender, ChunkTx};
use super::driver::Driver;
use super::error::{Problem, SourceError};
use super::query::{BoundQuery, Column, Placeholders, unbindable};
use crate::config::Source;
use crate::event::Record;
use crate::param::{Native, Param, ParamKind};
use values::BadValue;

/// Longest a single HTTP request may take. Each API is asked to answer
/// within seconds (long-running statements are polled), so this only
/// catches a server that stopped answering.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of one request when the API says 429 or 503.
const MAX_ATTEMPTS: u32 = 6;
/// Longest Ebb waits on a `Retry-After` before giving up on the run.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// Beyond the statement timeout the API enforces, how long Ebb keeps
/// polling before it cancels the statement itself.
const DEADLINE_GRACE: Duration = Duration::from_secs(30);
/// How long fetching one page of a finished result may take, retries
/// included.
const PAGE_DEADLINE: Duration = Duration::from_secs(300);

/// Why a call to an API failed, before it is tied to a source or a model.
#[derive(Debug)]
pub enum Failure {
    Api { problem: Problem, message: String },
    Unsupported { column: String, type_name: String },
}

impl Failure {
    pub fn new(problem: Problem, message: impl Into<String>) -> Failure {
        Failure::Api {
            problem,
            message: message.into(),
        }
    }

    /// A value the API sent that does not read as its column's type.
    pub fn value(column: &str, message: BadValue) -> Failure {
        Failure::new(Problem::Other, format!("column `{column}`: {message}"))
    }

    pub fn for_model(self, model: &str) -> SourceError {
        match self {
            Failure::Api { problem, message } => SourceError::Query {
                model: model.to_string(),
                problem,
                message,
            },
            Failure::Unsupported { column, type_name } => SourceError::UnsupportedType {
                model: model.to_string(),
                column,
                type_name,
            },
        }
    }

    pub fn for_source(self, source: &str) -> SourceError {
        let (problem, message) = match self {
            Failure::Api { problem, message } => (problem, message),
            Failure::Unsupported { column, type_name } => (
                Problem::Other,
                format!("column `{column}` has unsupported type {type_name}"),
            ),
        };
        SourceError::Connect {
            source_name: source.to_string(),
            problem,
            message,
        }
    }
}

/// A successful answer: its status (some APIs say "still running" with 202)
/// and its JSON body.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

/// How a vendor reads its error bodies: the message to show and, when the
/// body says more than the status does, the problem.
pub type Describe = fn(StatusCode, &Value) -> (Option<Problem>, String);

/// The HTTP side of one source.
pub struct Http {
    client: Client,
}

impl Http {
    pub fn new() -> Result<Http, Failure> {
        let client = Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("ebb/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::new(Problem::Other, format!("cannot set up HTTP: {e}")))?;
        Ok(Http { client })
    }

    /// Sends the request `build` makes, again after a 429 or 503 (waiting
    /// what `Retry-After` asks, or backing off), until `deadline`. Any
    /// other non-2xx answer is a failure described by `describe`.
    pub async fn send(
        &self,
        build: impl Fn(&Client) -> RequestBuilder,
        describe: Describe,
        deadline: Instant,
    ) -> Result<Reply, Failure> {
        let mut attempt = 1;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::new(
                    Problem::Timeout,
                    "the statement deadline passed; raise statement_timeout_secs or make the query faster",
                ));
            }
            let request = build(&self.client).timeout(left.min(REQUEST_TIMEOUT));
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            let url = response.url().clone();
            if matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                let asked = retry_after(response.headers());
                let wait = asked.unwrap_or(Duration::from_secs(1 << (attempt - 1).min(5)));
                let why = match status {
                    StatusCode::TOO_MANY_REQUESTS => "rate limited (HTTP 429)",
                    _ => "unavailable (HTTP 503)",
                };
                if wait > MAX_RETRY_WAIT {
                    return Err(Failure::new(
                        Problem::Other,
                        format!(
                            "{why}: the API asks to retry after {} s, longer than Ebb waits ({} s); run the sync again later",
                            wait.as_secs(),
                            MAX_RETRY_WAIT.as_secs()
                        ),
                    ));
                }
                if attempt >= MAX_ATTEMPTS || Instant::now() + wait >= deadline {
                    return Err(Failure::new(
                        Problem::Other,
                        format!("{why} after {attempt} attempts; run the sync again later"),
                    ));
                }
                tracing::info!(%url, ?wait, attempt, "{why}; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            let text = response.text().await.map_err(transport)?;
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if status.is_success() {
                if !body.is_object() {
                    return Err(Failure::new(
                        Problem::Other,
                        format!(
                            "{url} answered HTTP {status} without a JSON object; check the source's url"
                        ),
                    ));
                }
                return Ok(Reply { status, body });
            }
            let (problem, message) = describe(status, &body);
            let problem = problem.unwrap_or(match status {
                StatusCode::UNAUTHORIZED => Problem::Authentication,
                StatusCode::FORBIDDEN => Problem::Permission,
                StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => Problem::Timeout,
                _ => Problem::Other,
            });
            return Err(Failure::new(
                problem,
                format!("{message} (HTTP {} from {url})", status.as_u16()),
            ));
        }
    }
}

/// `Retry-After` in seconds (the form these APIs use).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A request that got no HTTP answer.
fn transport(e: reqwest::Error) -> Failure {
    let mut message = e.to_string();
    let mut tls = false;
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        // io::Error hides its inner error from `source()`.
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &dyn std::error::Error);
        tls |= c.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>());
        cause = c.source();
    }
    let problem = if e.is_timeout() {
        Problem::Timeout
    } else if tls {
        Problem::Tls
    } else if e.is_connect() {
        Problem::Connect
    } else {
        Problem::Other
    };
    Failure::new(problem, message)
}

/// Waits between polls of a running statement: quick at first, then
/// every two seconds.
pub struct Poll {
    next: Duration,
}

impl Poll {
    pub fn new() -> Poll {
        Poll {
            next: Duration::from_millis(50),
        }
    }

    pub async fn wait(&mut self, deadline: Instant) -> Result<(), Failure> {
        if Instant::now() + self.next >= deadline {
            return Err(Failure::new(
                Problem::Timeout,
                "the statement did not finish within statement_timeout_secs; raise it or make the query faster",
            ));
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Duration::from_secs(2));
        Ok(())
    }
}

/// One page of a result: its rows, and what to ask for the next one.
pub struct Page {
    pub rows: Vec<Record>,
    pub next: Option<String>,
}

/// One vendor's protocol.
pub trait SqlApi: Sized + Send + 'static {
    /// How the vendor's SQL writes bind placeholders.
    const PLACEHOLDERS: Placeholders;

    /// What a bare `TIMESTAMP` column holds (see [`Driver::BARE_TIMESTAMP`]).
    const BARE_TIMESTAMP: ParamKind = ParamKind::Timestamp;

    /// Connects to the source's API and checks that it answers and accepts
    /// the credentials ([`ping`]).
    fn connect(source: &Source) -> impl Future<Output = Result<Self, SourceError>> + Send;

    /// The source's `statement_timeout`.
    fn statement_timeout(&self) -> Duration;

    /// Submits `sql`, waits (polling) until it finished or `deadline`
    /// passed, and returns the result's columns and first page.
    fn execute(
        &mut self,
        sql: &str,
        params: &[Param],
        deadline: Instant,
    ) -> impl Future<Output = Result<(Vec<Column>, Page), Failure>> + Send;

    /// The page `next` (from the previous page) names.
    fn page(&mut self, next: &str) -> impl Future<Output = Result<Page, Failure>> + Send;

    /// Asks the API to stop the statement last executed (best effort, once
    /// its deadline passed).
    fn cancel(&mut self) -> impl Future<Output = ()> + Send;
}

/// A template value as the APIs' typed parameters are built from it.
pub fn native(p: &Param) -> Result<Native, Failure> {
    p.native()
        .map_err(|m| Failure::new(Problem::Other, unbindable(m)))
}

/// A fresh id for an API's idempotent-request field (random v4 UUID).
pub fn request_id() -> String {
    let mut bytes = [0u8; 16];
    // The id only has to be unlikely to repeat; a failing RNG leaves zeros.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The deadline for fetching one page of a finished result.
pub fn page_deadline() -> Instant {
    Instant::now() + PAGE_DEADLINE
}

/// Checks that the source answers and accepts the credentials.
pub async fn ping(api: &mut impl SqlApi, source: &Source) -> Result<(), SourceError> {
    execute(api, "SELECT 1", &[])
        .await
        .map(drop)
        .map_err(|f| f.for_source(&source.name))
}

/// A vendor's protocol as a [`Driver`]: describing a query over these
/// APIs already runs it as `LIMIT 0`, which is all a check needs.
pub struct Api<T>(T);

impl<T: SqlApi> Driver for Api<T> {
    const PLACEHOLDERS: Placeholders = T::PLACEHOLDERS;
    const BARE_TIMESTAMP: ParamKind = T::BARE_TIMESTAMP;

    async fn connect(source: &Source) -> Result<Api<T>, SourceError> {
        T::connect(source).await.map(Api)
    }

    /// The query's columns, from running it with `LIMIT 0` around it.
    async fn columns(&mut self, query: &BoundQuery) -> Result<Vec<Column>, SourceError> {
        let sql = &query.sql;
        let wrapped = format!("SELECT * FROM (\n{sql}\n) AS ebb_columns LIMIT 0");
        let (columns, _) = execute(&mut self.0, &wrapped, &query.params)
            .await
            .map_err(|f| f.for_model(&query.model))?;
        Ok(columns)
    }

    /// Runs the query and sends its rows page by page.
    async fn stream(self, query: &BoundQuery, tx: &ChunkTx) -> Result<(), SourceError> {
        let Api(mut api) = self;
        let err = |f: Failure| f.for_model(&query.model);
        let sql = &query.sql;
        let (columns, mut page) = execute(&mut api, sql, &query.params).await.map_err(err)?;
        let names = columns.into_iter().map(|c| c.name).collect();
        let mut out = ChunkSender::new(tx, query, names)?;
        loop {
            for row in std::mem::take(&mut page.rows) {
                out.rows().push_record(&row);
                if !out.send_if_full().await {
                    return Ok(());
                }
            }
            match page.next.take() {
                Some(next) => page = api.page(&next).await.map_err(err)?,
                None => break,
            }
        }
        out.flush().await;
        Ok(())
    }
}

/// Executes with the statement's deadline (its timeout, plus a grace for
/// the API to report the timeout itself), cancelling it when that passes.
async fn execute(
    api: &mut impl SqlApi,
    sql: &str,
    params: &[Param],
) -> Result<(Vec<Column>, Page), Failure> {
    let deadline = Instant::now() + api.statement_timeout() + DEADLINE_GRACE;
    let result = api.execute(sql, params, deadline).await;
    if let Err(Failure::Api {
        problem: Problem::Timeout,
        ..
    }) = &result
    {
        api.cancel().await;
    }
    result
}
