//! Databricks' Statement Execution API 2.0: `POST /api/2.0/sql/statements`
//! (PENDING, then RUNNING while polled at `GET …/statements/{id}`, then
//! SUCCEEDED with the manifest and the first inline chunk) and
//! `GET …/statements/{id}/result/chunks/{i}` for the rest, linked from each
//! chunk by `next_chunk_internal_link`. Requests must carry the token.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Fake, Script, Shared, Table, bearer, page, pages};

const TOKEN: &str = "dapi-test-0123456789";
const WAREHOUSE_ID: &str = "abc123def456";

pub fn start(script: Script) -> Fake {
    Fake::start(script, |shared| {
        Router::new()
            .route("/api/2.0/sql/statements", post(submit))
            .route("/api/2.0/sql/statements/{id}", get(status))
            .route("/api/2.0/sql/statements/{id}/cancel", post(cancel))
            .route("/api/2.0/sql/statements/{id}/result/chunks/{i}", get(chunk))
            .with_state(shared)
    })
}

/// The `[sources.wh]` block for this fake.
pub fn source_toml(fake: &Fake) -> String {
    format!(
        r#"[sources.wh]
kind = "databricks"
url = "{url}"
token = "{TOKEN}"
warehouse_id = "{WAREHOUSE_ID}"
catalog = "main"
schema = "crm"
"#,
        url = fake.url()
    )
}

fn refuse(script: &mut Script, headers: &HeaderMap) -> Option<Response> {
    if script.deny_auth {
        let body = json!({"error_code": "UNAUTHENTICATED", "message": "Invalid access token."});
        return Some((StatusCode::UNAUTHORIZED, axum::Json(body)).into_response());
    }
    let token = bearer(headers);
    (token.as_deref() != Some(TOKEN)).then(|| {
        script.breach(format!(
            "bearer token {token:?}, expected the configured one"
        ))
    })
}

async fn submit(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut script = shared.lock().expect("fake state");
    if let Some(refused) = refuse(&mut script, &headers) {
        return refused;
    }
    if let Some(limited) = script.rate_limit() {
        return limited;
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return script.breach(format!("statement body is not JSON: {e}")),
    };
    for (field, want) in [
        ("warehouse_id", WAREHOUSE_ID),
        ("catalog", "main"),
        ("schema", "crm"),
        ("wait_timeout", "10s"),
        ("on_wait_timeout", "CONTINUE"),
        ("disposition", "INLINE"),
        ("format", "JSON_ARRAY"),
    ] {
        if body[field] != json!(want) {
            return script.breach(format!("{field} is {}, expected {want:?}", body[field]));
        }
    }
    let statement = match script.statement(body["statement"].as_str().unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return script.breach(e),
    };
    let params = body.get("parameters").cloned().unwrap_or(Value::Null);
    let want = script.expected_params(&statement);
    if params != want {
        return script.breach(format!("parameters {params}, expected {want}"));
    }
    let result = script.result(
        &statement,
        ("1".into(), json!({"type_name": "INT", "type_text": "INT"})),
        json!("1"),
    );
    let id = script.submit(statement, result);
    answer(&mut script, &id, "PENDING")
}

async fn status(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut script = shared.lock().expect("fake state");
    if let Some(refused) = refuse(&mut script, &headers) {
        return refused;
    }
    answer(&mut script, &id, "RUNNING")
}

async fn cancel(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let mut script = shared.lock().expect("fake state");
    refuse(&mut script, &headers).unwrap_or_else(|| axum::Json(json!({})).into_response())
}

async fn chunk(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path((id, i)): Path<(String, usize)>,
) -> Response {
    let mut script = shared.lock().expect("fake state");
    if let Some(refused) = refuse(&mut script, &headers) {
        return refused;
    }
    let Some(job) = script.jobs.get(&id).filter(|j| j.done) else {
        return script.breach(format!("chunk of unknown or unfinished statement {id}"));
    };
    let result = job.result.clone();
    if i == 0 || i >= pages(&result.rows, script.page_rows) {
        return script.breach(format!("chunk {i} does not exist"));
    }
    axum::Json(result_chunk(&result, script.page_rows, &id, i)).into_response()
}

fn result_chunk(result: &Table, size: usize, id: &str, i: usize) -> Value {
    let (rows, more) = page(&result.rows, size, i);
    let mut chunk = json!({
        "chunk_index": i,
        "row_offset": i * size,
        "row_count": rows.len(),
        "data_array": rows,
    });
    if more {
        chunk["next_chunk_index"] = json!(i + 1);
        chunk["next_chunk_internal_link"] = json!(format!(
            "/api/2.0/sql/statements/{id}/result/chunks/{}?row_offset={}",
            i + 1,
            (i + 1) * size
        ));
    }
    chunk
}

/// `running` while the statement runs, then SUCCEEDED with the manifest and
/// the first chunk.
fn answer(script: &mut Script, id: &str, running: &str) -> Response {
    let result = match script.poll(id) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return axum::Json(json!({"statement_id": id, "status": {"state": running}}))
                .into_response();
        }
        Err(e) => return script.breach(e),
    };
    let size = script.page_rows;
    let columns: Vec<Value> = result
        .columns
        .iter()
        .enumerate()
        .map(|(position, (name, t))| {
            let mut t = t.clone();
            t["name"] = json!(name);
            t["position"] = json!(position);
            t
        })
        .collect();
    let chunks: Vec<Value> = (0..pages(&result.rows, size))
        .map(|i| {
            json!({"chunk_index": i, "row_offset": i * size, "row_count": page(&result.rows, size, i).0.len()})
        })
        .collect();
    axum::Json(json!({
        "statement_id": id,
        "status": {"state": "SUCCEEDED"},
        "manifest": {
            "format": "JSON_ARRAY",
            "schema": {"column_count": columns.len(), "columns": columns},
            "total_chunk_count": chunks.len(),
            "chunks": chunks,
            "total_row_count": result.rows.len(),
            "truncated": false,
        },
        "result": result_chunk(&result, size, id, 0),
    }))
    .into_response()
}
