//! BigQuery's REST API and Google's token endpoint: the service account's
//! JWT-bearer grant at `/token` (the JWT must verify with the test's public
//! key and name the account, the scope and the endpoint), `jobs.query` at
//! `POST /bigquery/v2/projects/{p}/queries` and `jobs.getQueryResults` at
//! `GET …/queries/{job}` for a running job and each further page.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde_json::{Value, json};

use super::{Fake, Script, Shared, Table, bearer, keys, page, verify_jwt};

pub const PROJECT: &str = "acme-analytics";
pub const LOCATION: &str = "EU";
const CLIENT_EMAIL: &str = "ebb-reader@acme-analytics.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef";
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
pub const STATEMENT_TIMEOUT: u64 = 120;

pub fn start(script: Script) -> Fake {
    Fake::start(script, |shared| {
        Router::new()
            .route("/token", post(token))
            .route("/bigquery/v2/projects/{project}/queries", post(submit))
            .route(
                "/bigquery/v2/projects/{project}/queries/{job}",
                get(results),
            )
            .with_state(shared)
    })
}

fn token_uri(fake: &Fake) -> String {
    format!("{}/token", fake.url())
}

/// The `[sources.wh]` block for this fake, with a service-account key
/// file whose `token_uri` is the fake's.
pub fn source_toml(fake: &Fake) -> String {
    let credentials = json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": KEY_ID,
        "private_key": keys().private_pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1234567890",
        "token_uri": token_uri(fake),
    });
    format!(
        r#"[sources.wh]
kind = "bigquery"
url = "{url}"
project = "{PROJECT}"
location = "{LOCATION}"
credentials = '''{credentials}'''
statement_timeout_secs = {STATEMENT_TIMEOUT}
"#,
        url = fake.url()
    )
}

async fn token(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut script = shared.lock().expect("fake state");
    if script.deny_auth {
        let body = json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let uri = format!("http://{host}/token");
    let checked = (|| {
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Err(format!("grant_type is {:?}", form.get("grant_type")));
        }
        let assertion = form.get("assertion").ok_or("no assertion")?;
        let header = jsonwebtoken::decode_header(assertion).map_err(|e| e.to_string())?;
        if header.kid.as_deref() != Some(KEY_ID) {
            return Err(format!("JWT kid is {:?}, not the key file's", header.kid));
        }
        let claims = verify_jwt(assertion, Some(&uri))?;
        if claims["iss"] != json!(CLIENT_EMAIL) || claims["scope"] != json!(SCOPE) {
            return Err(format!(
                "JWT claims {claims} do not name {CLIENT_EMAIL} and {SCOPE}"
            ));
        }
        Ok(())
    })();
    if let Err(e) = checked {
        return script.breach(e);
    }
    let token = format!("ya29.test-token-{}", script.tokens.len() + 1);
    script.tokens.push(token.clone());
    axum::Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

fn check_auth(script: &mut Script, headers: &HeaderMap, project: &str) -> Option<Response> {
    let token = bearer(headers).unwrap_or_default();
    if !script.tokens.contains(&token) {
        return Some(script.breach(format!("bearer token {token:?} was not issued by /token")));
    }
    (project != PROJECT).then(|| script.breach(format!("project {project}, expected {PROJECT}")))
}

async fn submit(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(project): Path<String>,
    body: Bytes,
) -> Response {
    let mut script = shared.lock().expect("fake state");
    if let Some(refused) = check_auth(&mut script, &headers, &project) {
        return refused;
    }
    if let Some(limited) = script.rate_limit() {
        return limited;
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return script.breach(format!("query body is not JSON: {e}")),
    };
    for (field, want) in [
        ("useLegacySql", json!(false)),
        ("parameterMode", json!("POSITIONAL")),
        ("location", json!(LOCATION)),
        (
            "jobTimeoutMs",
            json!((STATEMENT_TIMEOUT * 1000).to_string()),
        ),
    ] {
        if body[field] != want {
            return script.breach(format!("{field} is {}, expected {want}", body[field]));
        }
    }
    if !body["timeoutMs"].is_u64() || !body["maxResults"].is_u64() || !body["requestId"].is_string()
    {
        return script.breach(format!(
            "timeoutMs, maxResults or requestId missing in {body}"
        ));
    }
    let statement = match script.statement(body["query"].as_str().unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return script.breach(e),
    };
    let params = match &body["queryParameters"] {
        Value::Array(a) if a.is_empty() => Value::Null,
        other => other.clone(),
    };
    let want = script.expected_params(&statement);
    if params != want {
        return script.breach(format!("queryParameters {params}, expected {want}"));
    }
    let result = script.result(
        &statement,
        ("f0_".into(), json!({"type": "INTEGER", "mode": "NULLABLE"})),
        json!("1"),
    );
    let job = script.submit(statement, result);
    answer(&mut script, &job, 0)
}

async fn results(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path((project, job)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut script = shared.lock().expect("fake state");
    if let Some(refused) = check_auth(&mut script, &headers, &project) {
        return refused;
    }
    if query.get("location").map(String::as_str) != Some(LOCATION) {
        return script.breach(format!(
            "getQueryResults without location={LOCATION}: {query:?}"
        ));
    }
    let n = match query.get("pageToken") {
        None => 0,
        Some(t) => match t.strip_prefix("page-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return script.breach(format!("unknown pageToken {t}")),
        },
    };
    answer(&mut script, &job, n)
}

fn answer(script: &mut Script, job: &str, n: usize) -> Response {
    let reference = json!({"projectId": PROJECT, "jobId": job, "location": LOCATION});
    let result: Table = match script.poll(job) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return axum::Json(json!({
                "kind": "bigquery#getQueryResultsResponse",
                "jobReference": reference,
                "jobComplete": false,
            }))
            .into_response();
        }
        Err(e) => return script.breach(e),
    };
    let fields: Vec<Value> = result
        .columns
        .iter()
        .map(|(name, t)| {
            let mut t = t.clone();
            t["name"] = json!(name);
            t
        })
        .collect();
    let (rows, more) = page(&result.rows, script.page_rows, n);
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({"f": r.into_iter().map(|v| json!({"v": v})).collect::<Vec<_>>()}))
        .collect();
    let mut body = json!({
        "kind": "bigquery#queryResponse",
        "schema": {"fields": fields},
        "jobReference": reference,
        "totalRows": result.rows.len().to_string(),
        "rows": rows,
        "jobComplete": true,
        "cacheHit": false,
    });
    if more {
        body["pageToken"] = json!(format!("page-{}", n + 1));
    }
    axum::Json(body).into_response()
}
