//! Warehouses Ebb reads models from, one file per kind.
//!
//! Every kind does the same three things: connect (with a one-line diagnosis
//! when that fails), describe a query's columns without running it, and
//! stream its rows as JSON records inside a read-only transaction. Rows flow
//! through a bounded channel from a task that owns the connection, so
//! extraction overlaps with diffing and never holds the whole result.

mod postgres;
mod sqlite;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{Source, SourceKind};
use crate::event::Record;

/// How many rows travel through the channel together.
pub const ROWS_PER_CHUNK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{source_name}`: cannot connect: {message}")]
    Connect {
        source_name: String,
        message: String,
    },
    #[error("model `{model}`: the query failed: {message}")]
    Query { model: String, message: String },
    #[error(
        "model `{model}`: column `{column}` has type {type_name}, which Ebb cannot read yet; cast it to text in the query"
    )]
    UnsupportedType {
        model: String,
        column: String,
        type_name: String,
    },
}

/// A model query with `{{…}}` templates already turned into numbered
/// placeholders, and the values to bind to them.
#[derive(Debug, Clone)]
pub struct BoundQuery {
    pub model: String,
    pub sql: String,
    pub params: Vec<i64>,
}

/// An open connection to one warehouse.
pub enum Warehouse {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

pub type RowChunks = mpsc::Receiver<Result<Vec<Record>, SourceError>>;

impl Warehouse {
    pub async fn connect(source: &Source) -> Result<Warehouse, SourceError> {
        match source.kind {
            SourceKind::Sqlite => Ok(Warehouse::Sqlite(sqlite::Sqlite::connect(source).await?)),
            SourceKind::Postgres => Ok(Warehouse::Postgres(
                postgres::Postgres::connect(source).await?,
            )),
        }
    }

    /// The placeholder for parameter `n` (1-based) in this warehouse's dialect.
    pub fn placeholder(kind: SourceKind, n: usize) -> String {
        match kind {
            SourceKind::Sqlite => format!("?{n}"),
            SourceKind::Postgres => format!("${n}"),
        }
    }

    /// The query's column names, without running it.
    pub async fn columns(&mut self, query: &BoundQuery) -> Result<Vec<String>, SourceError> {
        match self {
            Warehouse::Sqlite(w) => w.columns(query).await,
            Warehouse::Postgres(w) => w.columns(query).await,
        }
    }

    /// Streams the query's rows in chunks; the connection moves into the
    /// reading task and is closed when the stream ends or is dropped.
    pub fn stream(self, query: BoundQuery) -> RowChunks {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let result = match self {
                Warehouse::Sqlite(w) => w.stream(&query, &tx).await,
                Warehouse::Postgres(w) => w.stream(&query, &tx).await,
            };
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }
}

/// Sends full chunks as rows arrive; returns false when the reader is gone.
pub(crate) struct ChunkSender<'a> {
    tx: &'a mpsc::Sender<Result<Vec<Record>, SourceError>>,
    chunk: Vec<Record>,
}

impl<'a> ChunkSender<'a> {
    pub fn new(tx: &'a mpsc::Sender<Result<Vec<Record>, SourceError>>) -> Self {
        ChunkSender {
            tx,
            chunk: Vec::with_capacity(ROWS_PER_CHUNK),
        }
    }

    pub async fn push(&mut self, record: Record) -> bool {
        self.chunk.push(record);
        if self.chunk.len() >= ROWS_PER_CHUNK {
            return self.flush().await;
        }
        true
    }

    pub async fn flush(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(ROWS_PER_CHUNK));
        self.tx.send(Ok(chunk)).await.is_ok()
    }
}

/// The columns a query would return, from preparing it (nothing runs).
pub(crate) async fn column_names<'c, E: sqlx::Executor<'c>>(
    conn: E,
    sql: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let stmt = conn.prepare(sql).await?;
    Ok(sqlx::Statement::columns(&stmt)
        .iter()
        .map(|c| sqlx::Column::name(c).to_string())
        .collect())
}

/// JSON numbers cannot hold NaN or infinities; they travel as strings.
pub(crate) fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(f.to_string()))
}
