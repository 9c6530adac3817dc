//! A run's life: it is claimed (one running run per sync; a trigger that
//! finds one is recorded as skipped), kept alive by heartbeats while the
//! pipeline executes, and closed with its status, counts and timings. What
//! happens after (alerts, printing) is for whoever started it to decide.

use std::time::Duration;

use indicatif::ProgressBar;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::commit::taken_over_message;
use super::error::{Doing, Result, RunError, chain};
use super::pass::Pass;
use super::prepare::{Prepared, prepare};
use crate::config::Config;
use crate::limits::cap_error;
use crate::plugin::Engine;
use crate::state::{Claim, RunEnd, State};
use crate::status::{Counts, Status};

/// How many heartbeats a run sends per lease: a few may be late or lost
/// before the run is taken to be dead.
pub(super) const BEATS_PER_LEASE: u32 = 6;

/// How long an interrupted run waits for the batches it has in flight to be
/// answered (and then commits them) before it gives up on them; they are
/// sent again by the next run.
const WIND_DOWN: Duration = Duration::from_secs(5);

/// Resolves when the process is asked to stop, naming the signal.
pub async fn interrupted() -> String {
    use tokio::signal::unix::{SignalKind, signal};
    let name = match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    };
    name.to_owned()
}

/// How a run ended, as `ebb run` reports it.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub run_id: i64,
    pub sync: String,
    pub status: Status,
    pub counts: Counts,
    pub error: Option<String>,
}

/// What [`start`] got: a run that may go ahead, or the skipped run recorded
/// because another run of the sync was in progress.
pub enum Started {
    Running(Box<Claimed>),
    Skipped(Summary),
}

/// A run recorded as running, not yet executed.
pub struct Claimed {
    pub run_id: i64,
    sync_name: String,
    prepared: Prepared,
    state: State,
}

/// Checks the sync (see [`prepare`]) and records its run as started, unless
/// the sync is switched off or already running. `state` is the store when
/// the caller has it open; without it, the store is opened (and created)
/// only once the sync's config proved good, so a bad config leaves no
/// trace.
pub async fn start(
    cfg: &Config,
    engine: &Engine,
    sync_name: &str,
    state: Option<State>,
) -> Result<Started> {
    if !cfg.sync(sync_name)?.enabled {
        return Err(RunError::Refused(format!(
            "sync `{sync_name}` is disabled in {} (enabled = false); remove that line to run it",
            cfg.file.display()
        )));
    }
    // With the store open, checked before the plugins are loaded and the
    // source is asked about the query: under `ebb serve`, triggers that
    // find the sync running are the common case under load.
    if let Some(state) = &state
        && let Some((running, id)) = state.skip_if_running(sync_name, cfg.lease).await?
    {
        return Ok(skipped(sync_name, running, id));
    }
    let prepared = prepare(cfg, engine, sync_name).await?;
    let state = match state {
        Some(state) => state,
        None => State::open(&cfg.state_url).await?,
    };
    if state
        .schedules()
        .await?
        .get(sync_name)
        .is_some_and(|c| c.disabled)
    {
        return Err(RunError::Refused(format!(
            "sync `{sync_name}` is disabled through the API; enable it there (POST /syncs/{sync_name}/enable) to run it"
        )));
    }
    Ok(match state.claim(sync_name, cfg.lease).await? {
        Claim::Started(run_id) => Started::Running(Box::new(Claimed {
            run_id,
            sync_name: sync_name.to_owned(),
            prepared,
            state,
        })),
        Claim::Busy {
            running,
            skipped: id,
        } => skipped(sync_name, running, id),
    })
}

/// The summary of a trigger recorded as skipped run `id` because run
/// `running` was in progress.
fn skipped(sync_name: &str, running: i64, id: i64) -> Started {
    crate::metrics::run_ended(sync_name, Status::Skipped, &Counts::default(), &[]);
    Started::Skipped(Summary {
        run_id: id,
        sync: sync_name.to_string(),
        status: Status::Skipped,
        counts: Counts::default(),
        error: Some(format!(
            "skipped: run {running} of this sync is still in progress"
        )),
    })
}

impl Claimed {
    /// The state store the run is recorded in.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Executes the run and records how it ended. When `stop` resolves
    /// (naming why), no new batch goes out, the batches in flight get
    /// [`WIND_DOWN`] to be answered and committed (what is still unanswered
    /// then is sent by the next run), and the run is closed, so the next run
    /// need not wait for this one's heartbeat.
    pub async fn execute(
        self: Box<Self>,
        cfg: &Config,
        progress: &ProgressBar,
        stop: impl Future<Output = String>,
    ) -> Result<Summary> {
        let Claimed {
            run_id,
            sync_name,
            prepared,
            state,
        } = *self;
        let Prepared {
            sync,
            model,
            source,
            limits,
            warehouse,
            loader,
            steps,
            cursor_kind,
            row_hash,
        } = prepared;
        let (heartbeat, taken_over) = beat(&state, run_id, cfg.lease / BEATS_PER_LEASE);
        let mut pass = Pass::new(&sync, &loader, &steps, Some((&state, run_id)), progress);
        pass.keep_deliveries = cfg.keep_runs > 0;
        pass.error_text_bytes = cfg.limits.error_text_bytes;
        let execution = pass.execute(warehouse, &model, &source, &limits, cursor_kind, row_hash);
        let result = drive(execution, &loader.halt, run_id, stop, taken_over).await;
        // Whatever ended the pass, its last commit is written (or refused)
        // before the run's end is.
        let result = result.and(pass.committed().await);
        heartbeat.abort();
        progress.finish_and_clear();
        let (status, error) = ending(result, &pass.counts);
        let error = error.map(|e| cap_error(e, cfg.limits.error_text_bytes));
        let Pass {
            counts,
            timings,
            cursor,
            ..
        } = pass;
        crate::metrics::run_ended(&sync_name, status, &counts, &timings);
        let timings_ms = serde_json::Value::Object(
            timings
                .into_iter()
                .map(|(k, d)| (k.to_string(), (d.as_millis() as u64).into()))
                .collect(),
        );
        let cursor = cursor.map(|c| c.template());
        let end = RunEnd {
            status,
            counts: &counts,
            timings_ms: &timings_ms,
            error: error.as_deref(),
            cursor: cursor.as_ref(),
        };
        state
            .finish(&sync_name, run_id, &end)
            .await
            .doing("cannot record the end of the run")?;
        state
            .prune_deliveries(&sync_name, cfg.keep_runs)
            .await
            .doing("cannot forget the deliveries of older runs")?;
        Ok(Summary {
            run_id,
            sync: sync_name,
            status,
            counts,
            error,
        })
    }
}

/// Sends the run's heartbeat every `every` until aborted; the receiver
/// learns if another process closed the run as abandoned meanwhile.
pub(super) fn beat(
    state: &State,
    run_id: i64,
    every: Duration,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let (taken_over, on_taken_over) = tokio::sync::oneshot::channel();
    let state = state.clone();
    let heartbeat = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match state.heartbeat(run_id).await {
                Ok(true) => {}
                Ok(false) => {
                    let _ = taken_over.send(());
                    return;
                }
                Err(e) => tracing::warn!(run_id, "cannot record the run's heartbeat: {e}"),
            }
        }
    });
    (heartbeat, on_taken_over)
}

/// Awaits the pipeline until it is done, `stop` resolves or the run is
/// taken over.
async fn drive(
    execution: impl Future<Output = Result<()>>,
    halt: &CancellationToken,
    run_id: i64,
    stop: impl Future<Output = String>,
    taken_over: tokio::sync::oneshot::Receiver<()>,
) -> Result<()> {
    let mut execution = std::pin::pin!(execution);
    tokio::select! {
        result = &mut execution => result,
        why = stop => {
            // No new batch goes out; those in flight may still be
            // answered and committed, for a while.
            halt.cancel();
            let interrupted = RunError::Stopped(format!(
                "interrupted by {why}; what the destination acknowledged is committed, the rest is sent next run"
            ));
            match tokio::time::timeout(WIND_DOWN, &mut execution).await {
                // It had sent everything: the run is complete.
                Ok(Ok(())) => Ok(()),
                _ => Err(interrupted),
            }
        }
        Ok(()) = taken_over => Err(RunError::Stopped(taken_over_message(run_id))),
    }
}

/// The status a run ends with, and its error.
fn ending(result: Result<()>, counts: &Counts) -> (Status, Option<String>) {
    match result {
        Err(e) => (Status::Failed, Some(chain(&e))),
        Ok(()) if counts.rejected + counts.failed == 0 => (Status::Success, None),
        Ok(()) if counts.ok + counts.dropped + counts.filtered > 0 => (Status::Partial, None),
        Ok(()) => (
            Status::Failed,
            Some("no change could be delivered; see `ebb errors`".into()),
        ),
    }
}
