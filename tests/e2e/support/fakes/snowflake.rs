//! Snowflake's SQL API v2: `POST /api/v2/statements` (202 and a
//! `statementHandle` while running), `GET /api/v2/statements/{handle}` for
//! the status and `?partition=N` for the rest of a result. Every request
//! must carry a key-pair JWT that verifies with the test's public key and
//! names the account, the user and the key's fingerprint.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Fake, Script, Shared, Statement, Table, bearer, keys, page, pages, verify_jwt};

/// The account as configured (region suffix and all) and as it appears in
/// the JWT.
pub const ACCOUNT: &str = "xy12345.eu-west-1";
pub const USER: &str = "ebb_reader";
const JWT_PREFIX: &str = "XY12345.EBB_READER";
pub const STATEMENT_TIMEOUT: u64 = 120;

pub fn start(script: Script) -> Fake {
    Fake::start(script, |shared| {
        Router::new()
            .route("/api/v2/statements", post(submit))
            .route("/api/v2/statements/{handle}", get(status))
            .route("/api/v2/statements/{handle}/cancel", post(cancel))
            .with_state(shared)
    })
}

/// The `[sources.wh]` block for this fake.
pub fn source_toml(fake: &Fake) -> String {
    format!(
        r#"[sources.wh]
kind = "snowflake"
url = "{url}"
account = "{ACCOUNT}"
user = "{USER}"
private_key = '''{key}'''
warehouse = "REPORTING_WH"
database = "ANALYTICS"
schema = "PUBLIC"
role = "EBB_READER"
statement_timeout_secs = {STATEMENT_TIMEOUT}
"#,
        url = fake.url(),
        key = keys().private_pem
    )
}

/// Why the request's credentials are not the test's key-pair JWT.
fn check_auth(headers: &HeaderMap) -> Result<(), String> {
    let kind = headers
        .get("X-Snowflake-Authorization-Token-Type")
        .and_then(|v| v.to_str().ok());
    if kind != Some("KEYPAIR_JWT") {
        return Err(format!(
            "X-Snowflake-Authorization-Token-Type is {kind:?}, not KEYPAIR_JWT"
        ));
    }
    let token = bearer(headers).ok_or("no bearer token")?;
    let claims = verify_jwt(&token, None)?;
    let iss = format!("{JWT_PREFIX}.{}", keys().fingerprint);
    if claims["iss"] != json!(iss) || claims["sub"] != json!(JWT_PREFIX) {
        return Err(format!("JWT claims {claims} do not name {iss}"));
    }
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    if lifetime != 3600 {
        return Err(format!("JWT lives {lifetime} s, not one hour"));
    }
    Ok(())
}

fn refuse(script: &mut Script, headers: &HeaderMap) -> Option<Response> {
    if script.deny_auth {
        let body = json!({"code": "390144", "message": "JWT token is invalid."});
        return Some((StatusCode::UNAUTHORIZED, axum::Json(body)).into_response());
    }
    check_auth(headers).err().map(|e| script.breach(e))
}

async fn submit(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let mut script = shared.lock().expect("fake state");
    if let Some(refused) = refuse(&mut script, &headers) {
        return refused;
    }
    if let Some(limited) = script.rate_limit() {
        return limited;
    }
    if !query.contains_key("requestId") {
        return script.breach("POST /api/v2/statements without a requestId".into());
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return script.breach(format!("statement body is not JSON: {e}")),
    };
    for (field, want) in [
        ("warehouse", json!("REPORTING_WH")),
        ("database", json!("ANALYTICS")),
        ("schema", json!("PUBLIC")),
        ("role", json!("EBB_READER")),
        ("timeout", json!(STATEMENT_TIMEOUT)),
    ] {
        if body[field] != want {
            return script.breach(format!("{field} is {}, expected {want}", body[field]));
        }
    }
    let statement = match script.statement(body["statement"].as_str().unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return script.breach(e),
    };
    if let Some(message) = script
        .sql_error
        .clone()
        .filter(|_| statement != Statement::Ping)
    {
        let body = json!({"code": "002003", "message": message, "sqlState": "42S02"});
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
    }
    let bindings = body.get("bindings").cloned().unwrap_or(Value::Null);
    let want = script.expected_params(&statement);
    if bindings != want {
        return script.breach(format!("bindings {bindings}, expected {want}"));
    }
    let result = script.result(
        &statement,
        (
            "1".into(),
            json!({"type": "fixed", "precision": 1, "scale": 0, "nullable": false}),
        ),
        json!("1"),
    );
    let handle = script.submit(statement, result);
    answer(&mut script, &handle)
}

async fn status(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(handle): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut script = shared.lock().expect("fake state");
    if let Some(refused) = refuse(&mut script, &headers) {
        return refused;
    }
    match query.get("partition") {
        None => answer(&mut script, &handle),
        Some(n) => {
            let Some(job) = script.jobs.get(&handle) else {
                return script.breach(format!("partition of unknown statement {handle}"));
            };
            let n: usize = n.parse().unwrap_or(usize::MAX);
            let (rows, _) = page(&job.result.rows, script.page_rows, n);
            if n == 0 || n >= pages(&job.result.rows, script.page_rows) {
                return script.breach(format!("partition {n} does not exist"));
            }
            axum::Json(json!({ "data": rows })).into_response()
        }
    }
}

async fn cancel(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let mut script = shared.lock().expect("fake state");
    refuse(&mut script, &headers)
        .unwrap_or_else(|| axum::Json(json!({"code": "000604"})).into_response())
}

/// 202 while the statement runs, then the result's first partition.
fn answer(script: &mut Script, handle: &str) -> Response {
    let result: Table = match script.poll(handle) {
        Ok(Some(t)) => t,
        Ok(None) => {
            let body = json!({
                "code": "333334",
                "message": "Asynchronous execution in progress. Use provided query id to perform query monitoring and management.",
                "statementHandle": handle,
                "statementStatusUrl": format!("/api/v2/statements/{handle}"),
            });
            return (StatusCode::ACCEPTED, axum::Json(body)).into_response();
        }
        Err(e) => return script.breach(e),
    };
    let size = script.page_rows;
    let partition_info: Vec<Value> = (0..pages(&result.rows, size))
        .map(|n| json!({"rowCount": page(&result.rows, size, n).0.len(), "uncompressedSize": 1024}))
        .collect();
    let row_type: Vec<Value> = result
        .columns
        .iter()
        .map(|(name, t)| {
            let mut t = t.clone();
            t["name"] = json!(name);
            t
        })
        .collect();
    let body = json!({
        "resultSetMetaData": {
            "numRows": result.rows.len(),
            "format": "jsonv2",
            "partitionInfo": partition_info,
            "rowType": row_type,
        },
        "data": page(&result.rows, size, 0).0,
        "code": "090001",
        "statementStatusUrl": format!("/api/v2/statements/{handle}"),
        "sqlState": "00000",
        "statementHandle": handle,
        "message": "Statement executed successfully.",
    });
    axum::Json(body).into_response()
}
