//! `ebb replay`: the events one run delivered, sent again as they were
//! delivered. It repairs the destination (after it lost data, say), never
//! Ebb's state.

use futures::StreamExt;
use serde::Serialize;

use super::error::{Doing, Result, RunError};
use super::prepare::destination;
use crate::config::Config;
use crate::delivery_id;
use crate::event::Event;
use crate::plugin::Engine;
use crate::state::State;

/// What `ebb replay` sent and how the destination answered.
#[derive(Debug, Default, Serialize)]
pub struct Replayed {
    pub sync: String,
    pub run_id: i64,
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
    let kept = match State::open_existing(&cfg.state_url).await? {
        Some(state) => state.deliveries(sync_name, run_id).await?,
        None => Vec::new(),
    };
    if kept.is_empty() {
        return Err(RunError::Refused(format!(
            "no delivered events are kept for run {run_id} of sync `{sync_name}`: it delivered nothing, \
             is not a run of this sync (see `ebb history {sync_name}`), or is older than the last {} runs \
             ([state] keep_runs)",
            cfg.keep_runs
        )));
    }
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
    let mut out = Replayed {
        sync: sync_name.to_string(),
        run_id,
        sent: events.len() as u64,
        ..Replayed::default()
    };
    let mut delivered = loader.deliver(&events);
    while let Some(done) = delivered.next().await {
        for delivery in done.deliveries {
            let error = delivery.tally(&mut out.ok, &mut out.rejected, &mut out.failed);
            if let Some(message) = error
                && out.errors.len() < REPLAY_ERRORS_SHOWN
            {
                out.errors.push(message);
            }
        }
    }
    Ok(out)
}
