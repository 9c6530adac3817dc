//! `ebb errors --drop`: rows the operator gives up on stop being owed and
//! count as delivered, in the state store and, for `diff = "warehouse"`,
//! in the snapshot the warehouse keeps.

use super::error::{Doing, Result};
use crate::config::{Config, DiffIn};
use crate::diff::warehouse as pushdown;
use crate::state::{Dropped, Dropping, State};

/// Drops the owed rows of these keys, or all (of run `run`, if given).
/// All or nothing: if a key is not owed, nothing is dropped.
pub async fn drop_owed(
    cfg: &Config,
    sync: &str,
    mut keys: Vec<String>,
    all: bool,
    run: Option<i64>,
) -> Result<Dropped> {
    let state = State::open_existing(&cfg.state_url).await?;
    keys.sort();
    keys.dedup();
    let which = match all {
        true => Dropping::All { run },
        false => Dropping::Keys(&keys),
    };
    let dropped = match &state {
        Some(state) => state.drop_owed(sync, which).await?,
        None if all => Dropped::Rows(Vec::new()),
        None => Dropped::Unknown(keys),
    };
    let model = cfg.model(&cfg.sync(sync)?.model)?;
    if let (Dropped::Rows(rows), Some(state)) = (&dropped, &state)
        && model.diff == DiffIn::Warehouse
        && !rows.is_empty()
    {
        let source = &cfg.sources[&model.source];
        pushdown::Snapshots::open(source)
            .await?
            .take_dropped(state, sync, rows)
            .await
            .doing(format!(
                "the rows were dropped, but {} in source `{}` could not take them; the next run sends them again",
                pushdown::table(source),
                source.name
            ))?;
    }
    Ok(dropped)
}
