//! What a serve process shares between its scheduler and its HTTP API:
//! the config, the plugin engine, the state store and the runs under way.
//! Both ask it for runs ([`Worker::trigger`]); a scheduled slot or a dead
//! run is found by [`Worker::tick`]. A run's end is logged and alerted on
//! here, since the run itself does not know who started it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert;
use crate::config::Config;
use crate::plugin::Engine;
use crate::run::{self, Started, Summary};
use crate::schedule::Schedule;
use crate::state::State;
use crate::status::Status;

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
    pub fn new(cfg: Config, engine: Engine, state: State) -> Worker {
        Worker {
            cfg: Arc::new(cfg),
            engine,
            state,
            stop: CancellationToken::new(),
            runs: TaskTracker::new(),
        }
    }

    /// Starts no new run from now on and interrupts the running ones.
    pub fn shut_down(&self) {
        self.stop.cancel();
        self.runs.close();
    }

    /// Waits up to `grace` for the runs under way to be recorded; `false`
    /// if some were not.
    pub async fn runs_recorded(&self, grace: Duration) -> bool {
        tokio::time::timeout(grace, self.runs.wait()).await.is_ok()
    }

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
                        reason = summary.error.as_deref().unwrap_or(""),
                        "run skipped"
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
                let state = claimed.state().clone();
                let ended = claimed.execute(&worker.cfg, &progress, stopping).await;
                if let Ok(summary) = &ended {
                    alert::run_ended(&worker.cfg, &state, summary).await;
                }
                match ended {
                    Ok(s) if s.status == Status::Success => {
                        tracing::info!(
                            sync,
                            run_id,
                            added = s.counts.added,
                            updated = s.counts.updated,
                            deleted = s.counts.deleted,
                            sent = s.counts.sent,
                            ok = s.counts.ok,
                            "run succeeded"
                        )
                    }
                    Ok(s) => tracing::warn!(
                        sync,
                        run_id,
                        status = s.status.as_str(),
                        sent = s.counts.sent,
                        ok = s.counts.ok,
                        rejected = s.counts.rejected,
                        failed = s.counts.failed,
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
    pub async fn tick(self: &Arc<Self>, now: DateTime<Utc>) -> anyhow::Result<()> {
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
    pub fn scheduled(&self) -> impl Iterator<Item = (&String, &Schedule)> {
        self.cfg
            .syncs
            .iter()
            .filter(|(_, s)| s.enabled && !matches!(s.schedule, Schedule::Manual))
            .map(|(name, s)| (name, &s.schedule))
    }
}

/// Runs the future `make` builds on a thread of the runtime's blocking pool.
/// A run's future holds sqlx connections across awaits in ways rustc cannot
/// yet prove `Send` (its higher-ranked lifetime limitation), which
/// `tokio::spawn` and axum's handlers require; built and polled on a thread
/// of its own, it never has to move. Runs are few and long, so a thread each
/// costs nothing that matters.
pub async fn on_own_thread<F, Fut, T, E>(make: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>>,
    T: Send + 'static,
    E: Into<anyhow::Error> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(make()))
        .await
        .context("the task stopped unexpectedly")?
        .map_err(Into::into)
}
