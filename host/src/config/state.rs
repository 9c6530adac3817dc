//! `[state]`: where runs are recorded, how many runs keep their events for
//! `ebb replay`, and how long a run may go without a heartbeat.

use std::time::Duration;

use serde::Deserialize;

use super::error::Invalid;
use super::resolver::Resolver;

/// Runs whose delivered events are kept for `ebb replay` unless
/// `[state] keep_runs` says otherwise.
const DEFAULT_KEEP_RUNS: u32 = 10;

/// How long a run's heartbeat may be silent before the run is taken to be
/// dead, unless `[state] lease_secs` says otherwise.
const DEFAULT_LEASE_SECS: u64 = 30;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    url: Option<String>,
    keep_runs: Option<u32>,
    lease_secs: Option<u64>,
}

pub struct State {
    pub url: String,
    pub keep_runs: u32,
    pub lease: Duration,
}

pub fn resolve(raw: RawState, r: &Resolver) -> Result<State, Invalid> {
    let url = match raw.url {
        Some(url) => r.sqlite_url(&r.secrets("state.url", &url)?),
        None => r.sqlite_url("sqlite://.ebb/state.db"),
    };
    let lease = match raw.lease_secs.unwrap_or(DEFAULT_LEASE_SECS) {
        secs @ 3.. => Duration::from_secs(secs),
        secs => {
            return Err(Invalid::new(
                "state.lease_secs",
                format!("{secs} is too short for heartbeats to arrive in time; use at least 3"),
            ));
        }
    };
    Ok(State {
        url,
        keep_runs: raw.keep_runs.unwrap_or(DEFAULT_KEEP_RUNS),
        lease,
    })
}
