//! `ebb serve`: one process that keeps every sync on its schedule and
//! answers the HTTP API ([`crate::api`]). Several such processes may share
//! one Postgres state store; they are then workers that divide the work
//! without talking to each other:
//!
//! - a scheduled slot is taken in the state store by exactly one of them
//!   ([`State::take_due`], `FOR UPDATE SKIP LOCKED`), which then runs the
//!   sync;
//! - a run holds its sync through its heartbeat (a lease): when a worker
//!   dies, its run's heartbeat goes stale, another worker closes it as
//!   failed and runs the sync again at once ([`State::take_over_stale`]),
//!   and since only acknowledged batches were committed, that run sends
//!   everything the dead one did not finish;
//! - two runs of one sync never overlap: the state store admits one running
//!   run per sync, and a trigger that finds one running is recorded as
//!   skipped.
//!
//! On SIGTERM or Ctrl-C no new run starts, running runs are interrupted
//! (no new batch goes out; those in flight are answered and committed, or
//! sent again by the next run) and the process exits once they are closed,
//! within [`SHUTDOWN_GRACE`].

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use crate::config::Config;
use crate::plugin::Engine;
use crate::run;
use crate::state::State;
use crate::worker::Worker;

/// Compiles every plugin an enabled sync uses, before anything is served:
/// a plugin that does not load stops `serve` at start, named, and no run
/// (nor the trigger that starts it) waits for Cranelift.
async fn compile_plugins(cfg: &Config, engine: &Engine) -> anyhow::Result<()> {
    let syncs = cfg.syncs.values().filter(|s| s.enabled);
    for sync in syncs {
        let context = || format!("{}: sync `{}`", cfg.file.display(), sync.name);
        let destination = &cfg.destinations[&sync.destination];
        engine
            .destination(&destination.plugin, crate::plugin::Grants::default())
            .await
            .with_context(context)?;
        for t in &sync.transforms {
            engine
                .transform(&t.plugin, t.limits)
                .await
                .with_context(context)?;
        }
    }
    Ok(())
}

/// How often the scheduler looks for due slots and dead runs, give or take
/// a random quarter: workers started together drift apart, so no one of
/// them is always first to see a slot come due.
const TICK: Duration = Duration::from_secs(1);

/// How long shutdown waits for interrupted runs to be recorded.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs `ebb serve` until SIGTERM or Ctrl-C.
pub async fn serve(cfg: Config, engine: Engine) -> anyhow::Result<ExitCode> {
    let token = cfg
        .server
        .api_token
        .clone()
        .map_err(|unset| anyhow::anyhow!("{}: {}", cfg.file.display(), unset.0))?;
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        anyhow::bail!(
            "{}: [server] api_token is not set; the HTTP API needs a bearer token, e.g. api_token = \"${{env:EBB_API_TOKEN}}\"",
            cfg.file.display()
        );
    };
    compile_plugins(&cfg, &engine).await?;
    let state = State::open(&cfg.state_url).await?;
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} ([server] listen in {})",
                cfg.server.listen,
                cfg.file.display()
            )
        })?;
    let address = listener.local_addr()?;
    let worker = Arc::new(Worker::new(cfg, engine, state));
    let now = Utc::now();
    for (name, schedule) in worker.scheduled() {
        let due = schedule.first_due(now).map(|t| t.timestamp_millis());
        worker
            .state
            .plan_schedule(name, &schedule.describe(), due)
            .await?;
    }
    // Printed, not logged: scripts starting `ebb serve` wait for this line.
    crate::say!("ebb serve: listening on http://{address}");
    tracing::info!(%address, syncs = worker.cfg.syncs.len(), "serving");

    let scheduler = tokio::spawn(schedule_loop(Arc::clone(&worker)));
    let api = crate::api::router(Arc::clone(&worker), token);
    let stop = worker.stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, api)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });

    let why = run::interrupted().await;
    tracing::info!("{why}: stopping; running runs are interrupted and recorded");
    worker.shut_down();
    let _ = scheduler.await;
    if !worker.runs_recorded(SHUTDOWN_GRACE).await {
        tracing::warn!(
            "runs did not stop within {}s; their heartbeats go stale and the next worker takes them over",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    // In-flight requests had the grace above to finish.
    server.abort();
    Ok(ExitCode::SUCCESS)
}

/// Ticks until the process stops; a failing tick (the state store away) is
/// logged and tried again next tick.
async fn schedule_loop(worker: Arc<Worker>) {
    loop {
        let pause = TICK.mul_f64(fastrand::f64() * 0.5 + 0.75);
        tokio::select! {
            _ = worker.stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        if let Err(e) = worker.tick(Utc::now()).await {
            tracing::error!("scheduler: {e:#}");
        }
    }
}
