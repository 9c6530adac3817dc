//! The API's endpoints: syncs, their runs and owed rows, and the dry runs
//! (plan, preview) people use before switching a sync on.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, Params, PathOf};
use crate::run::{self, Plan, Replayed, Summary};
use crate::schedule::Schedule;
use crate::state::{
    ErrorGroup, ErrorGroups, OwedFilter, OwedPage, OwedRow, Page, RunRecord, SyncControl,
};
use crate::status::Status;
use crate::worker::{Triggered, Worker, on_own_thread};

type App = State<Arc<Worker>>;

/// The most runs one page of `GET /syncs/{sync}/runs` returns.
const MAX_RUNS: i64 = 1000;

/// The most owed rows or error groups one page returns.
const MAX_PAGE: i64 = 1000;

/// The header that says how many items a listing has on all its pages.
const TOTAL_COUNT: HeaderName = HeaderName::from_static("x-total-count");

/// A sync as configured, with where it stands.
#[derive(Serialize, ToSchema)]
pub struct SyncView {
    name: String,
    model: String,
    destination: String,
    /// `manual`, `every 15m`, `cron 0 9 * * MON-FRI (Europe/Berlin)`, `at …`.
    schedule: String,
    /// Whether runs may start (scheduled or asked for).
    enabled: bool,
    /// Why not: `config` (`enabled = false`) or `api` (`POST …/disable`).
    disabled_by: Option<String>,
    /// When the next scheduled run is due (RFC 3339), if one is.
    next_run_at: Option<String>,
    /// The latest run, running or finished.
    last_run: Option<RunRecord>,
}

/// A run that was asked for and started.
#[derive(Serialize, ToSchema)]
pub struct RunStarted {
    run_id: i64,
    status: Status,
}

#[derive(Serialize, ToSchema)]
pub struct Message {
    message: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// How many of the latest runs (1 to 1000, default 20).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ErrorsQuery {
    /// Only rows that last failed in this run.
    run: Option<i64>,
    /// Only rows that last failed with exactly this error (an `error` of
    /// `/errors/groups`).
    error: Option<String>,
    /// How many rows one page holds (1 to 1000, default 100); `csv` has
    /// every row.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// How many rows to pass over (default 0).
    #[param(minimum = 0)]
    offset: Option<i64>,
    /// `json` (default), one page, or `csv`, every row as a download.
    #[param(inline)]
    format: Option<ExportFormat>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GroupsQuery {
    /// Only rows that last failed in this run.
    run: Option<i64>,
    /// How many groups one page holds (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// How many groups to pass over (default 0).
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// One page of owed rows, in natural key order ("2" before "10").
#[derive(Serialize, ToSchema)]
pub struct OwedRows {
    /// How many rows match, on all pages.
    total: i64,
    limit: i64,
    offset: i64,
    rows: Vec<OwedRow>,
}

/// The owed rows grouped by their error, the largest group first.
#[derive(Serialize, ToSchema)]
pub struct OwedGroups {
    /// How many rows match, in all groups.
    total: i64,
    /// How many groups there are, on all pages.
    groups_total: i64,
    limit: i64,
    offset: i64,
    groups: Vec<ErrorGroup>,
}

#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Json,
    Csv,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// How many to return (1 to 1000, default 10 rows for a preview and
    /// 100 events for a plan).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// A model's columns and first rows.
#[derive(Serialize, ToSchema)]
pub struct Preview {
    columns: Vec<PreviewColumn>,
    #[schema(value_type = Vec<Object>)]
    rows: Vec<crate::event::Record>,
}

#[derive(Serialize, ToSchema)]
pub struct PreviewColumn {
    name: String,
    /// The database's name for the column's type.
    r#type: String,
}

#[utoipa::path(get, path = "/syncs", tag = "syncs",
    responses(
        (status = 200, description = "Every sync in the config", body = Vec<SyncView>),
        (status = 401, description = "No or a wrong token", body = ErrorBody)))]
pub async fn list(State(w): App) -> Result<Json<Vec<SyncView>>, ApiError> {
    let controls = w.state.schedules().await?;
    let latest = w.state.latest_runs().await?;
    let views = w
        .cfg
        .syncs
        .keys()
        .map(|name| view(&w, name, &controls, &latest))
        .collect();
    Ok(Json(views))
}

#[utoipa::path(get, path = "/syncs/{sync}", tag = "syncs",
    params(("sync" = String, Path, description = "The sync's name")),
    responses(
        (status = 200, description = "The sync", body = SyncView),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such sync", body = ErrorBody)))]
pub async fn get(State(w): App, PathOf(sync): PathOf<String>) -> Result<Json<SyncView>, ApiError> {
    known(&w, &sync)?;
    sync_view(&w, &sync).await.map(Json)
}

#[utoipa::path(post, path = "/syncs/{sync}/runs", tag = "runs",
    params(("sync" = String, Path, description = "The sync's name")),
    responses(
        (status = 202, description = "The run started; follow it at /syncs/{sync}/runs/{run_id}", body = RunStarted),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such sync", body = ErrorBody),
        (status = 409, description = "A run is in progress (this one is recorded as skipped), or the sync is disabled", body = ErrorBody),
        (status = 422, description = "The sync cannot run as configured", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody)))]
pub async fn trigger(
    State(w): App,
    PathOf(sync): PathOf<String>,
) -> Result<(StatusCode, Json<RunStarted>), ApiError> {
    known(&w, &sync)?;
    if let Some(by) = disabled_by(&w, &sync, &w.state.schedules().await?) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "disabled",
            format!("sync `{sync}` is disabled (by {by}); enable it first"),
        ));
    }
    if w.stop.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; no new run starts",
        ));
    }
    match w.trigger(&sync).await {
        Ok(Triggered::Started(run_id)) => Ok((
            StatusCode::ACCEPTED,
            Json(RunStarted {
                run_id,
                status: Status::Running,
            }),
        )),
        Ok(Triggered::Skipped(Summary { run_id, error, .. })) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            format!(
                "{}; recorded as skipped run {run_id}",
                error.unwrap_or_default()
            ),
        )),
        Err(e) => Err(cannot_run(e)),
    }
}

#[utoipa::path(get, path = "/syncs/{sync}/runs", tag = "runs",
    params(("sync" = String, Path, description = "The sync's name"), RunsQuery),
    responses(
        (status = 200, description = "The latest runs, newest first", body = Vec<RunRecord>),
        (status = 400, description = "A bad limit", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such sync", body = ErrorBody)))]
pub async fn runs(
    State(w): App,
    PathOf(sync): PathOf<String>,
    Params(q): Params<RunsQuery>,
) -> Result<Json<Vec<RunRecord>>, ApiError> {
    known(&w, &sync)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=MAX_RUNS).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_RUNS}, not {limit}"
        )));
    }
    Ok(Json(w.state.history(&sync, limit).await?))
}

#[utoipa::path(get, path = "/syncs/{sync}/runs/{run}", tag = "runs",
    params(("sync" = String, Path, description = "The sync's name"),
           ("run" = i64, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run: status, counts, timings per stage", body = RunRecord),
        (status = 400, description = "A run id that is not a number", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such sync or run", body = ErrorBody)))]
pub async fn run(
    State(w): App,
    PathOf((sync, run_id)): PathOf<(String, i64)>,
) -> Result<Json<RunRecord>, ApiError> {
    known(&w, &sync)?;
    w.state
        .run(&sync, run_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("sync `{sync}` has no run {run_id}")))
}

#[utoipa::path(get, path = "/syncs/{sync}/errors", tag = "errors",
    params(("sync" = String, Path, description = "The sync's name"), ErrorsQuery),
    responses(
        (status = 200, description = "The rows still owed, with their last error and payload, in natural key order: one page as JSON, or every row as CSV",
            headers(("X-Total-Count" = i64, description = "How many rows match, on all pages")),
            content((OwedRows = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A bad format, run, limit or offset", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such sync", body = ErrorBody)))]
pub async fn errors(
    State(w): App,
    PathOf(sync): PathOf<String>,
    Params(q): Params<ErrorsQuery>,
) -> Result<Response, ApiError> {
    known(&w, &sync)?;
    let page = page(q.limit, q.offset)?;
    let filter = OwedFilter {
        run: q.run,
        error: q.error.as_deref(),
    };
    if q.format != Some(ExportFormat::Csv) {
        let OwedPage { total, rows } = w.state.owed_page(&sync, filter, page).await?;
        let body = OwedRows {
            total,
            limit: page.limit,
            offset: page.offset,
            rows,
        };
        return Ok(([(TOTAL_COUNT, total)], Json(body)).into_response());
    }
    let every = Page {
        limit: i64::MAX,
        offset: 0,
    };
    let OwedPage { total, rows } = w.state.owed_page(&sync, filter, every).await?;
    let mut csv = Vec::new();
    crate::output::owed_csv(&rows, &mut csv)?;
    let disposition = format!("attachment; filename=\"{sync}-errors.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (TOTAL_COUNT, total.to_string()),
        ],
        csv,
    )
        .into_response())
}

#[utoipa::path(get, path = "/syncs/{sync}/errors/groups", tag = "errors",
    params(("sync" = String, Path, description = "The sync's name"), GroupsQuery),
    responses(
        (status = 200, description = "The rows still owed grouped by their last error, the largest group first, each with its first keys in natural order; GET /syncs/{sync}/errors?error=… pages through one",
            body = OwedGroups),
        (status = 400, description = "A bad run, limit or offset", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such sync", body = ErrorBody)))]
pub async fn error_groups(
    State(w): App,
    PathOf(sync): PathOf<String>,
    Params(q): Params<GroupsQuery>,
) -> Result<Json<OwedGroups>, ApiError> {
    known(&w, &sync)?;
    let page = page(q.limit, q.offset)?;
    let ErrorGroups {
        rows,
        groups_total,
        groups,
    } = w.state.error_groups(&sync, q.run, page).await?;
    Ok(Json(OwedGroups {
        total: rows,
        groups_total,
        limit: page.limit,
        offset: page.offset,
        groups,
    }))
}

#[utoipa::path(post, path = "/syncs/{sync}/reset", tag = "syncs",
    params(("sync" = String, Path, description = "The sync's name")),
    responses(
        (status = 200, description = "Forgotten: the next run sends every record as added", body = Message),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such sync", body = ErrorBody),
        (status = 409, description = "A run is in progress", body = ErrorBody)))]
pub async fn reset(State(w): App, PathOf(sync): PathOf<String>) -> Result<Json<Message>, ApiError> {
    known(&w, &sync)?;
    let worker = Arc::clone(&w);
    let name = sync.clone();
    on_own_thread(move || async move { run::reset(&worker.cfg, &name).await })
        .await
        .map_err(|e| refused(e, ApiError::from))?;
    Ok(Json(Message {
        message: format!("sync `{sync}` reset: its next run sends every record as added"),
    }))
}

#[utoipa::path(post, path = "/syncs/{sync}/runs/{run}/replay", tag = "runs",
    params(("sync" = String, Path, description = "The sync's name"),
           ("run" = i64, Path, description = "The run whose deliveries to send again")),
    responses(
        (status = 200, description = "Sent again, each event under a new delivery id: how the destination answered", body = Replayed),
        (status = 400, description = "A run id that is not a number", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such sync, or nothing is kept of that run (see [state] keep_runs)", body = ErrorBody),
        (status = 409, description = "A run, reset or replay of the sync is in progress", body = ErrorBody),
        (status = 422, description = "The destination cannot be loaded", body = ErrorBody)))]
pub async fn replay(
    State(w): App,
    PathOf((sync, run_id)): PathOf<(String, i64)>,
) -> Result<Json<Replayed>, ApiError> {
    known(&w, &sync)?;
    on_own_thread(move || async move { run::replay(&w.cfg, &w.engine, &sync, run_id).await })
        .await
        .map(Json)
        .map_err(|e| refused(e, cannot_run))
}

/// A reset or replay refused because something of the sync is in progress
/// is a 409, and a replay of a run of which nothing is kept a 404; any
/// other error is `otherwise`'s.
fn refused(e: anyhow::Error, otherwise: fn(anyhow::Error) -> ApiError) -> ApiError {
    match e.downcast_ref::<run::RunError>() {
        Some(busy @ run::RunError::Busy(_)) => {
            ApiError::new(StatusCode::CONFLICT, "busy", busy.to_string())
        }
        Some(missing @ run::RunError::Missing(_)) => ApiError::not_found(missing.to_string()),
        _ => otherwise(e),
    }
}

#[utoipa::path(post, path = "/syncs/{sync}/enable", tag = "syncs",
    params(("sync" = String, Path, description = "The sync's name")),
    responses(
        (status = 200, description = "Enabled: runs start again, and the next one sends every change since the last committed run", body = SyncView),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such sync", body = ErrorBody),
        (status = 409, description = "Disabled in the config, which the API does not override", body = ErrorBody)))]
pub async fn enable(
    State(w): App,
    PathOf(sync): PathOf<String>,
) -> Result<Json<SyncView>, ApiError> {
    known(&w, &sync)?;
    if !w.cfg.syncs[&sync].enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "disabled",
            format!(
                "sync `{sync}` is disabled in {} (enabled = false); remove that line and restart ebb serve",
                w.cfg.file.display()
            ),
        ));
    }
    w.state.set_disabled(&sync, false).await?;
    sync_view(&w, &sync).await.map(Json)
}

#[utoipa::path(post, path = "/syncs/{sync}/disable", tag = "syncs",
    params(("sync" = String, Path, description = "The sync's name")),
    responses(
        (status = 200, description = "Disabled: no run starts until it is enabled; a run in progress finishes", body = SyncView),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such sync", body = ErrorBody)))]
pub async fn disable(
    State(w): App,
    PathOf(sync): PathOf<String>,
) -> Result<Json<SyncView>, ApiError> {
    known(&w, &sync)?;
    w.state.set_disabled(&sync, true).await?;
    sync_view(&w, &sync).await.map(Json)
}

#[utoipa::path(get, path = "/syncs/{sync}/plan", tag = "syncs",
    params(("sync" = String, Path, description = "The sync's name"), LimitQuery),
    responses(
        (status = 200, description = "What a run would send now (nothing is sent or written): counts per op, and the first `limit` events, each update with the fields it changes", body = Plan),
        (status = 400, description = "A bad limit", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such sync", body = ErrorBody),
        (status = 422, description = "The sync cannot run as configured", body = ErrorBody)))]
pub async fn plan(
    State(w): App,
    PathOf(sync): PathOf<String>,
    Params(q): Params<LimitQuery>,
) -> Result<Json<Plan>, ApiError> {
    known(&w, &sync)?;
    let limit = limit(q.limit, 100)?;
    let plan = on_own_thread(move || async move {
        let progress = indicatif::ProgressBar::hidden();
        run::plan(&w.cfg, &w.engine, &sync, Some(limit), &progress).await
    })
    .await
    .map_err(cannot_run)?;
    Ok(Json(plan))
}

#[utoipa::path(get, path = "/models/{model}/preview", tag = "models",
    params(("model" = String, Path, description = "The model's name"), LimitQuery),
    responses(
        (status = 200, description = "The model's columns and first rows", body = Preview),
        (status = 400, description = "A bad limit", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 422, description = "The model's query failed", body = ErrorBody)))]
pub async fn preview(
    State(w): App,
    PathOf(model): PathOf<String>,
    Params(q): Params<LimitQuery>,
) -> Result<Json<Preview>, ApiError> {
    if !w.cfg.models.contains_key(&model) {
        return Err(ApiError::not_found(format!("no model named `{model}`")));
    }
    let limit = limit(q.limit, 10)?;
    let (columns, rows) =
        on_own_thread(move || async move { crate::preview::rows(&w.cfg, &model, limit).await })
            .await
            .map_err(cannot_run)?;
    Ok(Json(Preview {
        columns: columns
            .into_iter()
            .map(|c| PreviewColumn {
                name: c.name,
                r#type: c.type_name,
            })
            .collect(),
        rows,
    }))
}

/// The stretch of a listing its `limit` and `offset` ask for.
fn page(limit: Option<i64>, offset: Option<i64>) -> Result<Page, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}, not {limit}"
        )));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request(format!(
            "offset must be 0 or more, not {offset}"
        )));
    }
    Ok(Page { limit, offset })
}

fn limit(given: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match given.unwrap_or(default) {
        n @ 1..=1000 => Ok(n),
        n => Err(ApiError::bad_request(format!(
            "limit must be between 1 and 1000, not {n}"
        ))),
    }
}

fn cannot_run(e: anyhow::Error) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "cannot_run",
        format!("{e:#}"),
    )
}

fn known(w: &Worker, sync: &str) -> Result<(), ApiError> {
    match w.cfg.syncs.contains_key(sync) {
        true => Ok(()),
        false => Err(ApiError::not_found(format!("no sync named `{sync}`"))),
    }
}

fn disabled_by(
    w: &Worker,
    sync: &str,
    controls: &HashMap<String, SyncControl>,
) -> Option<&'static str> {
    if !w.cfg.syncs[sync].enabled {
        Some("config")
    } else if controls.get(sync).is_some_and(|c| c.disabled) {
        Some("api")
    } else {
        None
    }
}

async fn sync_view(w: &Worker, sync: &str) -> Result<SyncView, ApiError> {
    let controls = w.state.schedules().await?;
    let latest = w.state.latest_runs().await?;
    Ok(view(w, sync, &controls, &latest))
}

fn view(
    w: &Worker,
    name: &str,
    controls: &HashMap<String, SyncControl>,
    latest: &HashMap<String, RunRecord>,
) -> SyncView {
    let sync = &w.cfg.syncs[name];
    let disabled_by = disabled_by(w, name, controls);
    let next_run_at = match (&sync.schedule, disabled_by) {
        (Schedule::Manual, _) | (_, Some(_)) => None,
        _ => controls
            .get(name)
            .and_then(|c| c.due_at)
            .map(crate::state::time),
    };
    SyncView {
        name: name.to_owned(),
        model: sync.model.clone(),
        destination: sync.destination.clone(),
        schedule: sync.schedule.describe(),
        enabled: disabled_by.is_none(),
        disabled_by: disabled_by.map(str::to_owned),
        next_run_at,
        last_run: latest.get(name).cloned(),
    }
}
