//! `ebb preview`: the first rows of a model, to check a query before a sync
//! uses it.

use crate::config::Config;
use crate::event::Record;
use crate::extract::{self, Templates};
use crate::run::RunError;
use crate::source::{Column, Warehouse};

/// The query's columns with their database types, and its first rows.
pub async fn rows(
    cfg: &Config,
    model: &str,
    limit: usize,
) -> Result<(Vec<Column>, Vec<Record>), RunError> {
    let model = cfg.model(model)?;
    let source = &cfg.sources[&model.source];
    let mut warehouse = Warehouse::connect(source).await?;
    let query = extract::bind(model, source.kind, &Templates::first_run(model))?;
    let columns = warehouse.columns(&query).await?;
    extract::check_columns(model, &columns, &cfg.limits)?;
    let mut stream = warehouse.stream(query);
    let mut rows = Vec::with_capacity(limit);
    while rows.len() < limit {
        match stream.recv().await {
            Some(chunk) => {
                let chunk = chunk?;
                let wanted = limit - rows.len();
                rows.extend(chunk.rows().take(wanted).map(|row| row.record()));
            }
            None => break,
        }
    }
    Ok((columns, rows))
}
