//! `ebb replay`: the events one run delivered, sent again as they were
//! delivered. It repairs the destination (after it lost data, say), never
//! Ebb's state. It is an entry of the sync's history, and refused while
//! anything of the sync runs (see operation.rs).

use futures::StreamExt;
use serde::Serialize;

use super::error::{Doing, Result, RunError};
use super::operation::Operation;
use super::prepare::destination;
use crate::config::Config;
use crate::delivery_id;
use crate::event::Event;
use crate::plugin::Engine;
use crate::state::{RunKind, State};
use crate::status::{Counts, Status};

/// What `ebb replay` sent and how the destination answered.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub sync: String,
    /// The run replayed.
    pub run_id: i64,
    /// The replay's own entry in the sync's history.
    pub replay_id: i64,
    pub sent: u64,
    pub ok: u64,
    pub rejected: u64,
    pub failed: u64,
    /// The destination's first few errors.
    pub errors: Vec<String>,
}

/// How many errors a replay reports.
const REPLAY_ERRORS_SHOWN: usize = 5;

/// Sends again exactly the events run `run_id` delivered, as it delivered
/// them (after transforms and mapping), in the order they were
/// acknowledged, each under a new delivery id so that the destination does
/// not discard it as a duplicate. Nothing is extracted and the snapshot and
/// the owed rows stay as they are: a replay repairs the destination, not
/// Ebb's state.
pub async fn replay(
    cfg: &Config,
    engine: &Engine,
    sync_name: &str,
    run_id: i64,
) -> Result<Replayed> {
    let sync = cfg.sync(sync_name)?;
    let state = State::open_existing(&cfg.state_url).await?;
    let kept = match &state {
        Some(state) => state.deliveries(sync_name, run_id).await?,
        None => Vec::new(),
    };
    let (Some(state), false) = (state, kept.is_empty()) else {
        return Err(RunError::Missing(format!(
            "no delivered events are kept for run {run_id} of sync `{sync_name}`: it delivered nothing, \
             is not a run of this sync (see `ebb history {sync_name}`), or is older than the last {} runs \
             ([state] keep_runs)",
            cfg.keep_runs
        )));
    };
    let mut events = kept
        .iter()
        .map(|e| serde_json::from_str::<Event>(e))
        .collect::<std::result::Result<Vec<_>, _>>()
        .doing("the state store holds an event Ebb cannot read")?;
    let started = chrono::Utc::now().timestamp_millis();
    for event in &mut events {
        event.delivery_id = delivery_id::replayed(&event.id, &event.delivery_id, started);
    }
    let (loader, _) = destination(cfg, engine, sync).await?;
    let detail = format!("replay of run {run_id}");
    let operation =
        Operation::begin(cfg, &state, sync_name, RunKind::Replay, Some(&detail)).await?;
    let mut out = Replayed {
        sync: sync_name.to_string(),
        run_id,
        replay_id: operation.id(),
        ..Replayed::default()
    };
    let mut delivered = loader.deliver(events.into());
    while let Some(done) = delivered.next().await {
        // What stopped the replay comes first; the batch's own errors say
        // the same.
        if let Some(why) = done.unfixable {
            out.errors.insert(0, why);
        }
        out.sent += done.deliveries.len() as u64;
        for delivery in done.deliveries {
            let error = delivery.tally(&mut out.ok, &mut out.rejected, &mut out.failed);
            if let Some(message) = error
                && out.errors.len() < REPLAY_ERRORS_SHOWN
            {
                out.errors.push(message);
            }
        }
    }
    let counts = Counts {
        sent: out.sent,
        ok: out.ok,
        rejected: out.rejected,
        failed: out.failed,
        ..Counts::default()
    };
    let status = match (out.ok, out.rejected + out.failed) {
        (_, 0) => Status::Success,
        (0, _) => Status::Failed,
        _ => Status::Partial,
    };
    operation
        .end(status, &counts, out.errors.first().map(String::as_str))
        .await?;
    Ok(out)
}
