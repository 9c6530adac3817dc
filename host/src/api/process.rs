//! The process itself: whether it serves, and what it has counted.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::worker::Worker;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    status: String,
}

#[utoipa::path(get, path = "/health", security(()), tag = "server",
    responses((status = 200, description = "The process serves", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/metrics", tag = "server",
    responses(
        (status = 200, description = "Runs, records, stage times, destination latency and retries, plugin call times and traps, in the OpenMetrics text format Prometheus scrapes",
            body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "No or a wrong token", body = super::error::ErrorBody)))]
pub async fn metrics(State(w): State<Arc<Worker>>) -> impl IntoResponse {
    match w.state.owed_counts().await {
        Ok(owed) => crate::metrics::rows_owed(w.cfg.syncs.keys().map(String::as_str), &owed),
        // The other metrics are still worth a scrape.
        Err(e) => tracing::warn!("cannot count the rows owed for /metrics: {e}"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::encode(),
    )
}
