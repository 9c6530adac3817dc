//! The extract stage: the model's query bound to this run's template
//! values, and each row read counted, held to the limits, its cursor value
//! seen and its key taken. A row without a usable key, or a key returned
//! twice, becomes a row error here and goes no further.

use std::borrow::Cow;
use std::time::Instant;

use super::error::{Result, RunError};
use super::pass::Pass;
use crate::config::{self, SourceKind};
use crate::cursor::Cursor;
use crate::event::{Op, Record};
use crate::extract::{self, CursorTemplate, Templates};
use crate::param::ParamKind;
use crate::rows::{RowChunk, RowRef};
use crate::source::{BoundQuery, RowChunks, SourceError};
use crate::state::RowError;

impl Pass<'_> {
    /// The model's query with `{{last_sync_time}}` and `{{cursor}}` bound to
    /// what the sync's last successful run left.
    pub(super) async fn query(
        &mut self,
        model: &config::Model,
        kind: SourceKind,
        cursor_kind: Option<ParamKind>,
    ) -> Result<BoundQuery> {
        let (last_sync_time, stored_cursor) = match self.reader {
            Some(s) => (
                s.last_sync_time(&self.sync.name).await?,
                s.cursor(&self.sync.name).await?,
            ),
            None => Default::default(),
        };
        self.cursor = model
            .cursor
            .as_ref()
            .zip(cursor_kind)
            .map(|(column, kind)| Cursor::new(column, kind, stored_cursor));
        let templates = Templates {
            last_sync_time,
            cursor: match &self.cursor {
                Some(c) => CursorTemplate::Bound(c.template()),
                None => CursorTemplate::Absent,
            },
        };
        Ok(extract::bind(model, kind, &templates)?)
    }

    /// The next chunk of the model's rows; waiting for it counts as
    /// extraction.
    pub(super) async fn next_chunk(
        &mut self,
        rows: &mut RowChunks,
    ) -> Option<std::result::Result<RowChunk, SourceError>> {
        let t = Instant::now();
        let chunk = rows.recv().await;
        self.timed("extract", t);
        chunk
    }

    /// Counts a row read, holds it to the limits and moves the cursor; the
    /// row's key, or `None` if the row became a row error.
    pub(super) fn keyed<'r>(
        &mut self,
        model: &config::Model,
        row: RowRef<'r>,
        limits: &crate::limits::Limits,
    ) -> Result<Option<Cow<'r, str>>> {
        self.counts.extracted += 1;
        if self.counts.extracted > limits.records_per_extract {
            return Err(RunError::Rows(format!(
                "model `{}` returned more than {} records; narrow the query or raise limits.records_per_extract",
                model.name, limits.records_per_extract
            )));
        }
        if let Some(cursor) = &mut self.cursor {
            cursor
                .observe(row.get(&cursor.column))
                .map_err(|e| RunError::Rows(format!("model `{}`: {e}", model.name)))?;
        }
        match extract::keyed(model, row, limits) {
            Ok(key) => Ok(Some(key)),
            Err(problem) => {
                let key = match problem.key.is_empty() {
                    true => format!("(row {} without a key)", self.counts.extracted),
                    false => problem.key,
                };
                self.row_error(RowError {
                    key,
                    op: Op::Added,
                    message: problem.message,
                    payload: serde_json::Value::Object(row.record()),
                    if_dropped: None,
                    delivery_id: None,
                    delivered: Vec::new(),
                });
                Ok(None)
            }
        }
    }

    /// The row error of a key the model returned more than once.
    pub(super) fn duplicate(
        &mut self,
        model: &config::Model,
        key: String,
        rows: usize,
        first: Record,
    ) {
        let message = format!(
            "model `{}`: primary key `{}` = {key} is returned by {rows} rows; none of them is synced until the key is unique",
            model.name, model.primary_key
        );
        self.row_error(RowError {
            key,
            op: Op::Added,
            message,
            payload: serde_json::Value::Object(first),
            if_dropped: None,
            delivery_id: None,
            delivered: Vec::new(),
        });
    }
}
