//! `ebb plan`: the pipeline walked without a writer, so it collects what it
//! would send and commits nothing.

use indicatif::ProgressBar;

use super::error::Result;
use super::pass::Pass;
use super::prepare::prepare;
use crate::config::Config;
use crate::event::Event;
use crate::plugin::Engine;
use crate::state::State;

/// What a run would send now; sends and writes nothing.
pub async fn plan(
    cfg: &Config,
    engine: &Engine,
    sync_name: &str,
    progress: &ProgressBar,
) -> Result<Vec<Event>> {
    let prepared = prepare(cfg, engine, sync_name).await?;
    let state = State::open_existing(&cfg.state_url).await?;
    let mut pass = Pass::new(
        &prepared.sync,
        &prepared.loader,
        &prepared.steps,
        None,
        progress,
    );
    pass.reader = state.as_ref();
    pass.execute(
        prepared.warehouse,
        &prepared.model,
        &prepared.source,
        &prepared.limits,
        prepared.cursor_kind,
        prepared.row_hash,
    )
    .await?;
    progress.finish_and_clear();
    Ok(pass.planned)
}
