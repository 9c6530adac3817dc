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
use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::plugin::Engine;
use crate::run::{self, Started, Summary};
use crate::schedule::Schedule;
use crate::state::State;
use crate::status::Status;

/// How often the scheduler looks for due slots and dead runs, give or take
/// a random quarter: workers started together drift apart, so no one of
/// them is always first to see a slot come due.
const TICK: Duration = Duration::from_secs(1);

/// How long shutdown waits for interrupted runs to be recorded.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// What a serve process shares between its scheduler and its API.
pub struct Worker {
    pub cfg: Arc<Config>,
    pub engine: Engine,
    pub state: State,
    /// Cancelled on shutdown: no new run starts, running ones stop.
    pub stop: CancellationToken,
    runs: TaskTracker,
}

/// What asking for a run got.
pub enum Triggered {
    /// The run started under this id and goes on in the background.
    Started(i64),
    /// Another run of the sync was in progress; this one was recorded as
    /// skipped.
    Skipped(Summary),
}

impl Worker {
    /// Starts a run of `sync` in the background, unless the process is
    /// stopping, the sync is disabled or it is already running.
    pub async fn trigger(self: &Arc<Self>, sync: &str) -> anyhow::Result<Triggered> {
        if self.stop.is_cancelled() {
            anyhow::bail!("ebb serve is shutting down; no new run starts");
        }
        let worker = Arc::clone(self);
        let sync = sync.to_owned();
        on_own_thread(move || async move { worker.start(sync).await }).await
    }

    async fn start(self: Arc<Self>, sync: String) -> anyhow::Result<Triggered> {
        let claimed =
            match run::start(&self.cfg, &self.engine, &sync, Some(self.state.clone())).await? {
                Started::Skipped(summary) => {
                    tracing::info!(
                        sync,
                        run_id = summary.run_id,
                        "skipped: {:?}",
                        summary.error
                    );
                    return Ok(Triggered::Skipped(summary));
                }
                Started::Running(claimed) => claimed,
            };
        let run_id = claimed.run_id;
        tracing::info!(sync, run_id, "run started");
        let worker = Arc::clone(&self);
        let runtime = tokio::runtime::Handle::current();
        self.runs.spawn_blocking(move || {
            runtime.block_on(async move {
                let stop = worker.stop.clone().cancelled_owned();
                let stopping = async move {
                    stop.await;
                    "ebb serve shutting down".to_owned()
                };
                let progress = ProgressBar::hidden();
                match claimed.execute(&worker.cfg, &progress, stopping).await {
                    Ok(s) if s.status == Status::Success => {
                        tracing::info!(sync, run_id, counts = ?s.counts, "run succeeded")
                    }
                    Ok(s) => tracing::warn!(
                        sync,
                        run_id,
                        status = s.status.as_str(),
                        counts = ?s.counts,
                        error = s.error.as_deref().unwrap_or(""),
                        "run did not succeed"
                    ),
                    Err(e) => tracing::error!(sync, run_id, "run could not be recorded: {e:#}"),
                }
            })
        });
        Ok(Triggered::Started(run_id))
    }

    /// One pass of the scheduler: runs again the syncs whose runs died, then
    /// the syncs whose slot is due. A worker running `[server] max_runs`
    /// runs takes nothing, leaving the work to other workers.
    async fn tick(self: &Arc<Self>, now: DateTime<Utc>) -> anyhow::Result<()> {
        if self.runs.len() >= self.cfg.server.max_runs {
            return Ok(());
        }
        for (sync, dead) in self.state.take_over_stale(self.cfg.lease).await? {
            if !self.cfg.syncs.get(&sync).is_some_and(|s| s.enabled) {
                continue;
            }
            tracing::warn!(
                sync,
                run_id = dead,
                "run {dead} stopped beating; running the sync again"
            );
            self.launch(&sync).await;
        }
        let next: Vec<(String, Option<i64>)> = self
            .scheduled()
            .map(|(name, schedule)| {
                let next = schedule.next_after(now).map(|t| t.timestamp_millis());
                (name.clone(), next)
            })
            .collect();
        for (sync, slot) in self.state.take_due(now.timestamp_millis(), &next).await? {
            tracing::info!(sync, slot = %crate::state::time(slot), "slot taken");
            self.launch(&sync).await;
        }
        Ok(())
    }

    /// Triggers a run for the scheduler, which has no one to answer to but
    /// the log.
    async fn launch(self: &Arc<Self>, sync: &str) {
        if let Err(e) = self.trigger(sync).await {
            tracing::error!(sync, "scheduled run could not start: {e:#}");
        }
    }

    /// The enabled syncs that have a schedule.
    fn scheduled(&self) -> impl Iterator<Item = (&String, &Schedule)> {
        self.cfg
            .syncs
            .iter()
            .filter(|(_, s)| s.enabled && !matches!(s.schedule, Schedule::Manual))
            .map(|(name, s)| (name, &s.schedule))
    }
}

/// Runs `ebb serve` until SIGTERM or Ctrl-C.
pub async fn serve(cfg: Config, engine: Engine) -> anyhow::Result<ExitCode> {
    let Some(token) = cfg.server.api_token.clone().filter(|t| !t.is_empty()) else {
        anyhow::bail!(
            "{}: [server] api_token is not set; the HTTP API needs a bearer token, e.g. api_token = \"${{env:EBB_API_TOKEN}}\"",
            cfg.file.display()
        );
    };
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
    let worker = Arc::new(Worker {
        cfg: Arc::new(cfg),
        engine,
        state,
        stop: CancellationToken::new(),
        runs: TaskTracker::new(),
    });
    let now = Utc::now();
    for (name, schedule) in worker.scheduled() {
        let due = schedule.first_due(now).map(|t| t.timestamp_millis());
        worker
            .state
            .plan_schedule(name, &schedule.describe(), due)
            .await?;
    }
    // Printed, not logged: scripts starting `ebb serve` wait for this line.
    println!("ebb serve: listening on http://{address}");
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
    worker.stop.cancel();
    worker.runs.close();
    let _ = scheduler.await;
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, worker.runs.wait()).await;
    if finished.is_err() {
        tracing::warn!(
            "runs did not stop within {}s; their heartbeats go stale and the next worker takes them over",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    // In-flight requests had the grace above to finish.
    server.abort();
    Ok(ExitCode::SUCCESS)
}

/// Runs the future `make` builds on a thread of the runtime's blocking pool.
/// A run's future holds sqlx connections across awaits in ways rustc cannot
/// yet prove `Send` (its higher-ranked lifetime limitation), which
/// `tokio::spawn` and axum's handlers require; built and polled on a thread
/// of its own, it never has to move. Runs are few and long, so a thread each
/// costs nothing that matters.
pub async fn on_own_thread<F, Fut, T>(make: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(make()))
        .await
        .context("the task stopped unexpectedly")?
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
