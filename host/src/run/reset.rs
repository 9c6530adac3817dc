//! `ebb reset`: the sync forgets what it delivered, wherever that is kept,
//! so its next run starts over.

use super::error::{Doing, Result};
use crate::config::{Config, DiffIn};
use crate::diff::warehouse as pushdown;
use crate::state::State;

/// Forgets what the sync delivered (in the state store and, for a model
/// with `diff = "warehouse"`, in the warehouse), so its next run sends every
/// record as added. Its run history stays.
pub async fn reset(cfg: &Config, sync: &str) -> Result<()> {
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
    if let Some(state) = State::open_existing(&cfg.state_url).await? {
        state.reset(sync).await?;
    }
    Ok(())
}
