//! Local stand-ins for the warehouse SQL APIs (Snowflake, BigQuery,
//! Databricks): axum servers on loopback that answer in each vendor's
//! documented shapes and check what Ebb sends them (credentials, typed
//! bindings, session fields). A request that breaks the protocol is
//! answered 400 and recorded in [`Script::problems`], which every test
//! asserts is empty.
//!
//! What the servers share lives here: the scripted behaviour (data, page
//! size, how long a statement stays running, rate limiting, refused
//! credentials), the test's RSA key pair and the recognition of the
//! statements Ebb runs (its `SELECT 1` ping, its `LIMIT 0` column probe and
//! the model query itself).

pub mod bigquery;
pub mod databricks;
pub mod snowflake;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use super::loopback::Loopback;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Result columns as the vendor describes them, and rows of cells already
/// in the vendor's wire encoding.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub columns: Vec<(String, Value)>,
    pub rows: Vec<Vec<Value>>,
}

/// How a fake behaves, and what it saw.
#[derive(Default)]
pub struct Script {
    pub table: Table,
    /// Rows per page, partition or chunk.
    pub page_rows: usize,
    /// "Still running" answers before a statement is done.
    pub running_polls: usize,
    /// The next this many statement submissions get 429 with this
    /// `Retry-After` (seconds).
    pub rate_limited: usize,
    pub retry_after: u64,
    /// Refuse every credential.
    pub deny_auth: bool,
    /// Fail the model query (not the ping) with this compilation error
    /// (Snowflake's fake).
    pub sql_error: Option<String>,
    /// The model query Ebb is expected to run, and the vendor's encoding
    /// of the parameters expected with it (`Value::Null`: none).
    pub query: String,
    pub params: Value,
    /// Protocol breaches seen.
    pub problems: Vec<String>,
    /// Statement submissions: when, and the status answered.
    pub submissions: Vec<(Instant, u16)>,
    /// Statements run to completion, by what they were.
    pub ran: Vec<Statement>,
    /// Access tokens the fake issued (BigQuery's token endpoint).
    pub tokens: Vec<String>,
    /// Statements submitted, by the id the fake gave them.
    pub jobs: std::collections::HashMap<String, Job>,
}

/// A submitted statement: its result, and how many more times it answers
/// "still running".
#[derive(Clone, Debug)]
pub struct Job {
    pub statement: Statement,
    pub result: Table,
    pub polls_left: usize,
    /// Whether it has been reported done (and counted in `ran`).
    pub done: bool,
}

impl Script {
    /// Registers a statement; returns its id.
    pub fn submit(&mut self, statement: Statement, result: Table) -> String {
        let id = format!("01b2c3d4-0000-4000-8000-{:012}", self.jobs.len() + 1);
        self.jobs.insert(
            id.clone(),
            Job {
                statement,
                result,
                polls_left: self.running_polls,
                done: false,
            },
        );
        id
    }

    /// One status poll of job `id`: `Some(result)` once it is done.
    pub fn poll(&mut self, id: &str) -> Result<Option<Table>, String> {
        let job = self
            .jobs
            .get_mut(id)
            .ok_or_else(|| format!("poll of unknown statement {id}"))?;
        if job.polls_left > 0 {
            job.polls_left -= 1;
            return Ok(None);
        }
        let result = job.result.clone();
        if !job.done {
            job.done = true;
            let statement = job.statement.clone();
            self.ran.push(statement);
        }
        Ok(Some(result))
    }
}

/// What Ebb asked a warehouse to run.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// `SELECT 1`: the connection check.
    Ping,
    /// The model wrapped in `LIMIT 0`: describing its columns.
    Describe,
    Model,
}

impl Script {
    /// Which statement `sql` is, or why it is not one Ebb should send.
    pub fn statement(&self, sql: &str) -> Result<Statement, String> {
        if sql == "SELECT 1" {
            return Ok(Statement::Ping);
        }
        let (inner, kind) = match sql
            .strip_prefix("SELECT * FROM (\n")
            .and_then(|s| s.strip_suffix("\n) AS ebb_columns LIMIT 0"))
        {
            Some(inner) => (inner, Statement::Describe),
            None => (sql, Statement::Model),
        };
        if inner != self.query {
            return Err(format!(
                "unexpected statement {sql:?}; expected the model query {:?}",
                self.query
            ));
        }
        Ok(kind)
    }

    /// The rows a statement returns.
    pub fn result(&self, statement: &Statement, ping: (String, Value), one: Value) -> Table {
        match statement {
            Statement::Ping => Table {
                columns: vec![ping],
                rows: vec![vec![one]],
            },
            Statement::Describe => Table {
                columns: self.table.columns.clone(),
                rows: Vec::new(),
            },
            Statement::Model => self.table.clone(),
        }
    }

    /// The parameters a statement must carry.
    pub fn expected_params(&self, statement: &Statement) -> Value {
        match statement {
            Statement::Ping => Value::Null,
            _ => self.params.clone(),
        }
    }

    /// Answers 429 when the script says so, recording the submission.
    pub fn rate_limit(&mut self) -> Option<Response> {
        let limited = self.rate_limited > 0;
        self.submissions
            .push((Instant::now(), if limited { 429 } else { 200 }));
        if !limited {
            return None;
        }
        self.rate_limited -= 1;
        let mut response = (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after));
        Some(response)
    }

    /// Records a breach and answers 400 with it.
    pub fn breach(&mut self, message: String) -> Response {
        self.problems.push(message.clone());
        (StatusCode::BAD_REQUEST, message).into_response()
    }
}

/// The rows of page `n` (0-based), and whether more follow.
pub fn page(rows: &[Vec<Value>], size: usize, n: usize) -> (Vec<Vec<Value>>, bool) {
    let size = size.max(1);
    let start = (n * size).min(rows.len());
    let end = (start + size).min(rows.len());
    (rows[start..end].to_vec(), end < rows.len())
}

/// How many pages `rows` make.
pub fn pages(rows: &[Vec<Value>], size: usize) -> usize {
    rows.len().div_ceil(size.max(1)).max(1)
}

pub type Shared = Arc<Mutex<Script>>;

/// A fake API listening on loopback.
pub struct Fake {
    http: Loopback,
    script: Shared,
}

impl Fake {
    fn start(script: Script, app: impl FnOnce(Shared) -> Router) -> Fake {
        let script = Arc::new(Mutex::new(script));
        Fake {
            http: Loopback::serve(app(script.clone())),
            script,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http.addr)
    }

    pub fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().expect("fake state poisoned")
    }

    /// Fails the test if any request broke the protocol.
    pub fn assert_no_problems(&self) {
        let problems = &self.script().problems;
        assert!(
            problems.is_empty(),
            "the fake saw bad requests:\n{}",
            problems.join("\n")
        );
    }
}

/// The test's RSA key pair, made once per test process with the `openssl`
/// command (nothing secret is committed).
pub struct Keys {
    pub private_pem: String,
    pub public_pem: String,
    /// `SHA256:` + base64 of the public key's DER, as Snowflake prints it.
    pub fingerprint: String,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("e2e-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the key folder");
        let key = dir.join("key.pem");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("these tests need the `openssl` command: {e}"));
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let key_path = key.to_str().expect("utf-8 temp path");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key_path,
        ]);
        let public_pem =
            String::from_utf8(openssl(&["pkey", "-in", key_path, "-pubout"])).expect("PEM is text");
        let der = openssl(&["pkey", "-in", key_path, "-pubout", "-outform", "DER"]);
        let private_pem = std::fs::read_to_string(&key).expect("reading the key");
        let _ = std::fs::remove_dir_all(&dir);
        use base64::Engine as _;
        use sha2::Digest as _;
        Keys {
            private_pem,
            public_pem,
            fingerprint: format!(
                "SHA256:{}",
                base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&der))
            ),
        }
    })
}

/// The claims of an RS256 JWT signed by the test's key, or why it is not
/// one. `audience` is checked when given.
pub fn verify_jwt(token: &str, audience: Option<&str>) -> Result<Value, String> {
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(keys().public_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    match audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| format!("JWT does not verify with the test's public key: {e}"))
}

/// The bearer token of a request.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}
