//! Salesforce's OAuth token endpoint and the REST API resources
//! `ebb:salesforce` uses, for one org holding one sObject with one external
//! id field:
//!
//! - `POST /services/oauth2/token`, a form: `grant_type=client_credentials`
//!   with `client_id` and `client_secret`, or `grant_type=refresh_token`
//!   with `refresh_token`, `client_id` (and `client_secret` if sent).
//!   Answers `{"access_token", "instance_url", "token_type": "Bearer", …}`,
//!   or 400 `{"error": "invalid_client" | "invalid_grant" |
//!   "unsupported_grant_type", "error_description"}`.
//! - `PATCH /services/data/vNN.N/composite/sobjects/{object}/{field}`
//!   (sObject Collections upsert, API 46+): `{"allOrNone": false,
//!   "records": [{"attributes": {"type": object}, field: value, …}]}`, at
//!   most 200 records, all of the URI's type, no `Id`. Answers 200 with one
//!   `{"id", "success", "created", "errors": [{"statusCode", "message",
//!   "fields"}]}` a record, in request order.
//! - `GET /services/data/vNN.N/query?q=SOQL`, for
//!   `SELECT Id, {field} FROM {object} WHERE {field} IN (…)` only: answers
//!   `{"totalSize", "done": true, "records": [{"attributes", "Id", field}]}`.
//! - `DELETE /services/data/vNN.N/composite/sobjects?ids=…&allOrNone=false`
//!   (at most 200 ids): answers one `{"id", "success", "errors"}` an id.
//!
//! Every data request needs `Authorization: Bearer` with a token this fake
//! issued, else 401 `[{"message": "Session expired or invalid",
//! "errorCode": "INVALID_SESSION_ID"}]`. Salesforce limits API requests a
//! rolling 24 hours, not a second, and answers a spent allocation 403
//! `[{"message": "TotalRequests Limit exceeded.", "errorCode":
//! "REQUEST_LIMIT_EXCEEDED"}]`, with no `Retry-After`: that is what the
//! [`Gate`] answers here. Data responses carry `Sforce-Limit-Info:
//! api-usage=n/m` as Salesforce's do. External ids match ignoring case.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Map, Value, json};

use super::Gate;
use crate::support::loopback::Loopback;

/// sObject Collections take at most 200 records or ids.
const MAX_RECORDS: usize = 200;
/// The daily allocation `Sforce-Limit-Info` reports.
const DAILY_REQUESTS: usize = 100_000;

/// The org's credentials, object and external id field.
pub struct Org {
    pub client_id: &'static str,
    pub client_secret: &'static str,
    pub refresh_token: &'static str,
    pub object: &'static str,
    pub external_id: &'static str,
}

#[derive(Default)]
struct Inner {
    org: Option<Org>,
    instance_url: String,
    gate: Gate,
    tokens: Vec<String>,
    requests: usize,
    /// Records by external id (lower case): their Salesforce id and fields.
    stored: HashMap<String, (String, Map<String, Value>)>,
    /// Every record an upsert accepted, in order.
    upserted: Vec<Value>,
    /// The external ids of the records deleted, in order.
    deleted: Vec<String>,
    /// External ids (lower case) whose upsert fails, as a missing field.
    failing: HashSet<String>,
    /// Requests that broke the protocol, and why.
    problems: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct Salesforce {
    /// Where it listens: the login URL and the instance URL alike.
    pub http: Loopback,
    inner: Shared,
    /// When it answers 429 (or Salesforce's 403 of a spent allowance).
    pub gate: Gate,
}

impl Salesforce {
    /// A fake org accepting `org`'s credentials.
    pub fn start(org: Org) -> Salesforce {
        let inner = Shared::default();
        let gate = inner.lock().unwrap().gate.clone();
        let app = Router::new()
            .route("/services/oauth2/token", post(token))
            .route(
                "/services/data/{version}/composite/sobjects/{object}/{field}",
                patch(upsert),
            )
            .route(
                "/services/data/{version}/composite/sobjects",
                axum::routing::delete(delete),
            )
            .route("/services/data/{version}/query", get(query))
            .with_state(inner.clone());
        let http = Loopback::serve(app);
        {
            let mut inner = inner.lock().unwrap();
            inner.org = Some(org);
            inner.instance_url = http.endpoint();
        }
        Salesforce { http, inner, gate }
    }

    /// Fails the upsert of the record with external id `value` from now on.
    pub fn fail(&self, value: &str) {
        self.inner
            .lock()
            .unwrap()
            .failing
            .insert(value.to_lowercase());
    }

    /// Every record an upsert accepted, in order.
    pub fn upserted(&self) -> Vec<Value> {
        self.inner.lock().unwrap().upserted.clone()
    }

    /// The external ids of the records deleted, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.inner.lock().unwrap().deleted.clone()
    }

    /// How many access tokens were issued.
    pub fn tokens(&self) -> usize {
        self.inner.lock().unwrap().tokens.len()
    }

    /// Protocol breaches seen (none is the only right answer).
    pub fn problems(&self) -> Vec<String> {
        self.inner.lock().unwrap().problems.clone()
    }
}

impl Inner {
    fn org(&self) -> &Org {
        self.org.as_ref().expect("set by start")
    }

    /// Records a breach and answers as Salesforce does a malformed request.
    fn breach(&mut self, code: &str, why: String) -> Response {
        self.problems.push(why.clone());
        api_error(StatusCode::BAD_REQUEST, code, &why)
    }

    /// What every data request goes through: the bearer token, then the
    /// request limit; the answer refusing the request, if it is refused.
    fn refusal(&mut self, headers: &HeaderMap, version: &str) -> Option<Response> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !bearer.is_some_and(|token| self.tokens.iter().any(|t| t == token)) {
            return Some(api_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            ));
        }
        if self.gate.refuses() {
            return Some(api_error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            ));
        }
        if !is_version(version) {
            let why = format!("API version {version:?} is not vNN.N");
            return Some(self.breach("NOT_FOUND", why));
        }
        self.requests += 1;
        None
    }

    /// A 200 answer with the usage header.
    fn answer(&self, body: Value) -> Response {
        let usage = format!("api-usage={}/{DAILY_REQUESTS}", self.requests);
        (
            StatusCode::OK,
            [("sforce-limit-info", usage)],
            axum::Json(body),
        )
            .into_response()
    }
}

/// `[{"message", "errorCode"}]`, the REST API's error body.
fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!([{ "message": message, "errorCode": code }]);
    (status, axum::Json(body)).into_response()
}

fn oauth_error(error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn is_version(version: &str) -> bool {
    version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
}

async fn token(
    State(inner): State<Shared>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let Ok(Form(form)) = form else {
        inner
            .problems
            .push("token request is not a form (application/x-www-form-urlencoded)".into());
        return oauth_error("invalid_request", "the body must be a form");
    };
    let field = |name: &str| form.get(name).map(String::as_str);
    let org = inner.org();
    let client_ok = field("client_id") == Some(org.client_id);
    let granted = match field("grant_type") {
        Some("client_credentials") => {
            if !client_ok || field("client_secret") != Some(org.client_secret) {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            true
        }
        Some("refresh_token") => {
            let secret_ok = field("client_secret").is_none_or(|s| s == org.client_secret);
            if !client_ok || !secret_ok {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            field("refresh_token") == Some(org.refresh_token)
        }
        other => {
            let why = format!("grant_type {other:?} is not one Ebb should send");
            inner.problems.push(why);
            return oauth_error("unsupported_grant_type", "grant type not supported");
        }
    };
    if !granted {
        return oauth_error("invalid_grant", "expired access/refresh token");
    }
    let token = format!("00Dxx0000000001!token{}", inner.tokens.len() + 1);
    inner.tokens.push(token.clone());
    axum::Json(json!({
        "access_token": token,
        "instance_url": inner.instance_url,
        "id": format!("{}/id/00Dxx0000000001/005xx0000000001", inner.instance_url),
        "token_type": "Bearer",
        "issued_at": "1700000000000",
        "signature": "c2lnbmF0dXJl",
    }))
    .into_response()
}

async fn upsert(
    State(inner): State<Shared>,
    Path((version, object, field)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(answer) = inner.refusal(&headers, &version) {
        return answer;
    }
    if object != inner.org().object || field != inner.org().external_id {
        let why = format!("upsert into {object}/{field}, which this org does not have");
        inner.problems.push(why);
        return api_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(e) => return inner.breach("JSON_PARSER_ERROR", format!("body is not JSON: {e}")),
    };
    if parsed["allOrNone"] != json!(false) {
        let why = format!("allOrNone is {}, not false", parsed["allOrNone"]);
        return inner.breach("INVALID_FIELD", why);
    }
    let Some(records) = parsed["records"].as_array() else {
        return inner.breach("INVALID_FIELD", "body has no `records` array".into());
    };
    if records.is_empty() || records.len() > MAX_RECORDS {
        let why = format!("{} records in one request (1 to 200)", records.len());
        return inner.breach("EXCEEDED_ID_LIMIT", why);
    }
    if let Some(why) = records.iter().find_map(|r| invalid(r, &object, &field)) {
        return inner.breach("INVALID_FIELD", why);
    }
    let results: Vec<Value> = records
        .iter()
        .map(|record| inner.save(record, &field))
        .collect();
    inner.answer(Value::Array(results))
}

/// Why Salesforce would refuse this record of an upsert into `object`.
fn invalid(record: &Value, object: &str, field: &str) -> Option<String> {
    let has_value = record[field]
        .as_str()
        .map_or(record[field].is_number(), |s| !s.is_empty());
    [
        (record["attributes"]["type"] != json!(object)).then(|| {
            format!(
                "record of type {} in an upsert of {object}",
                record["attributes"]["type"]
            )
        }),
        (!has_value).then(|| format!("record without its external id {field}")),
        record
            .get("Id")
            .map(|_| "record sets Id in an upsert by external id".to_owned()),
    ]
    .into_iter()
    .flatten()
    .next()
}

impl Inner {
    /// Upserts one checked record; its result as Salesforce gives it.
    fn save(&mut self, record: &Value, field: &str) -> Value {
        let value = external_text(&record[field]);
        if self.failing.contains(&value) {
            return json!({
                "success": false,
                "errors": [{
                    "statusCode": "REQUIRED_FIELD_MISSING",
                    "message": "Required fields are missing: [LastName]",
                    "fields": ["LastName"],
                }],
            });
        }
        let mut fields = record.as_object().cloned().unwrap_or_default();
        fields.remove("attributes");
        let next = self.stored.len() + self.deleted.len() + 1;
        let created = !self.stored.contains_key(&value);
        let (id, stored) = self
            .stored
            .entry(value)
            .or_insert_with(|| (format!("003xx{next:0>13}"), Map::new()));
        stored.extend(fields);
        let id = id.clone();
        self.upserted.push(record.clone());
        json!({ "id": id, "success": true, "created": created, "errors": [] })
    }
}

/// An external id as the org matches it: text, ignoring case.
fn external_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_lowercase(),
        other => other.to_string(),
    }
}

async fn query(
    State(inner): State<Shared>,
    Path(version): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(answer) = inner.refusal(&headers, &version) {
        return answer;
    }
    let soql = params.get("q").cloned().unwrap_or_default();
    let (object, field) = (inner.org().object, inner.org().external_id);
    let Some(values) = lookup_values(&soql, object, field) else {
        let why = format!("a query this fake does not understand: {soql}");
        return inner.breach("MALFORMED_QUERY", why);
    };
    let records: Vec<Value> = values
        .iter()
        .filter_map(|value| inner.stored.get(value))
        .map(|(id, fields)| {
            json!({
                "attributes": {"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{id}")},
                "Id": id,
                field: fields.get(field).cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    inner.answer(json!({ "totalSize": records.len(), "done": true, "records": records }))
}

/// The values of `SELECT Id, {field} FROM {object} WHERE {field} IN (…)`,
/// as [`external_text`] keys; `None` for any other query.
fn lookup_values(soql: &str, object: &str, field: &str) -> Option<Vec<String>> {
    let prefix = format!("SELECT Id, {field} FROM {object} WHERE {field} IN (");
    let list = soql.strip_prefix(&prefix)?.strip_suffix(')')?;
    let mut values = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        let value = match chars.next()? {
            '\'' => {
                let mut text = String::new();
                loop {
                    match chars.next()? {
                        '\\' => text.push(match chars.next()? {
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            c => c,
                        }),
                        '\'' => break,
                        c => text.push(c),
                    }
                }
                text.to_lowercase()
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut number = c.to_string();
                while let Some(d) = chars.next_if(|d| d.is_ascii_digit() || *d == '.') {
                    number.push(d);
                }
                number
            }
            _ => return None,
        };
        values.push(value);
        match chars.next() {
            None => return Some(values),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

async fn delete(
    State(inner): State<Shared>,
    Path(version): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut inner = inner.lock().unwrap();
    if let Some(answer) = inner.refusal(&headers, &version) {
        return answer;
    }
    if params.get("allOrNone").map(String::as_str) != Some("false") {
        let why = format!(
            "delete with allOrNone {:?}, not false",
            params.get("allOrNone")
        );
        return inner.breach("INVALID_FIELD", why);
    }
    let ids: Vec<&str> = params
        .get("ids")
        .map(|ids| ids.split(',').collect())
        .unwrap_or_default();
    if ids.is_empty() || ids.len() > MAX_RECORDS {
        let why = format!("{} ids in one delete (1 to 200)", ids.len());
        return inner.breach("EXCEEDED_ID_LIMIT", why);
    }
    let results: Vec<Value> = ids.iter().map(|id| inner.remove(id)).collect();
    inner.answer(Value::Array(results))
}

impl Inner {
    /// Deletes the record with Salesforce id `id`; its result.
    fn remove(&mut self, id: &str) -> Value {
        let found = self
            .stored
            .iter()
            .find(|(_, (stored_id, _))| stored_id == id)
            .map(|(value, _)| value.clone());
        match found {
            Some(value) => {
                self.stored.remove(&value);
                self.deleted.push(value);
                json!({ "id": id, "success": true, "errors": [] })
            }
            None => json!({
                "id": id,
                "success": false,
                "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}],
            }),
        }
    }
}
