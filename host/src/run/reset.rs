//! `ebb reset`: the sync forgets what it delivered, wherever that is kept,
//! so its next run starts over. It is an entry of the sync's history, and
//! refused while anything of the sync runs (see operation.rs).

use super::error::{Doing, Result, chain};
use super::operation::Operation;
use crate::config::{Config, DiffIn};
use crate::diff::warehouse as pushdown;
use crate::state::{RunKind, State};
use crate::status::{Counts, Status};

/// Forgets what the sync delivered (in the state store and, for a model
/// with `diff = "warehouse"`, in the warehouse), so its next run sends every
/// record as added. Its run history stays, with the reset in it.
pub async fn reset(cfg: &Config, sync: &str) -> Result<()> {
    cfg.sync(sync)?;
    let state = State::open(&cfg.state_url).await?;
    let operation = Operation::begin(cfg, &state, sync, RunKind::Reset, None).await?;
    let forgotten = forget(cfg, &state, sync).await;
    let (status, error) = match &forgotten {
        Ok(()) => (Status::Success, None),
        Err(e) => (Status::Failed, Some(chain(e))),
    };
    operation
        .end(status, &Counts::default(), error.as_deref())
        .await?;
    forgotten
}

async fn forget(cfg: &Config, state: &State, sync: &str) -> Result<()> {
    let model = cfg.model(&cfg.sync(sync)?.model)?;
    if model.diff == DiffIn::Warehouse {
        let source = &cfg.sources[&model.source];
        pushdown::Snapshots::open(source)
            .await?
            .reset(sync)
            .await
            .doing(format!(
                "cannot reset sync `{sync}` in {} of source `{}`",
                pushdown::table(source),
                source.name
            ))?;
    }
    Ok(state.reset(sync).await?)
}
