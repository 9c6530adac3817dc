//! Rows travel from the task that owns a connection to the reader in
//! bounded chunks, so extraction overlaps with diffing and never holds the
//! whole result.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::error::{Problem, SourceError};
use super::query::BoundQuery;
use crate::rows::{Header, RowChunk};

/// Where a connection sends its chunks of rows.
pub type ChunkTx = mpsc::Sender<Result<RowChunk, SourceError>>;

/// What [`Warehouse::stream`](super::Warehouse::stream) returns.
pub type RowChunks = mpsc::Receiver<Result<RowChunk, SourceError>>;

/// Collects rows into chunks and sends each once it is full.
pub(crate) struct ChunkSender {
    tx: ChunkTx,
    chunk: RowChunk,
}

impl ChunkSender {
    /// Fails when the result names a column twice.
    pub fn new(tx: &ChunkTx, query: &BoundQuery, names: Vec<String>) -> Result<Self, SourceError> {
        Ok(ChunkSender {
            tx: tx.clone(),
            chunk: RowChunk::new(header(query, names)?),
        })
    }

    /// The chunk rows are written into.
    pub fn rows(&mut self) -> &mut RowChunk {
        &mut self.chunk
    }

    /// Sends the chunk if it is full; false when the reader is gone.
    pub async fn send_if_full(&mut self) -> bool {
        !self.chunk.is_full() || self.flush().await
    }

    /// Sends what the chunk holds; false when the reader is gone.
    pub async fn flush(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        let next = RowChunk::new(Arc::clone(self.chunk.header()));
        let chunk = std::mem::replace(&mut self.chunk, next);
        self.tx.send(Ok(chunk)).await.is_ok()
    }
}

/// The header of a query's rows, or an error naming the model when its
/// result cannot be a record.
fn header(query: &BoundQuery, names: Vec<String>) -> Result<Arc<Header>, SourceError> {
    Header::new(names).map_err(|e| SourceError::Query {
        model: query.model.clone(),
        problem: Problem::Sql,
        message: e.to_string(),
    })
}
