//! Warehouses Ebb reads models from, one file per kind.
//!
//! Every kind does the same three things: connect (with a one-line diagnosis
//! when that fails), describe a query's columns without running it, and
//! stream its rows as JSON records inside a read-only transaction. Rows flow
//! through a bounded channel from a task that owns the connection, so
//! extraction overlaps with diffing and never holds the whole result.

mod bigquery;
mod databricks;
mod json;
mod mysql;
mod postgres;
mod snowflake;
mod sql_api;
mod sqlite;
pub(crate) mod ssh;

pub use sql_api::RsaKey;

pub(crate) use json::{decimal, float, integer};

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::{Source, SourceKind};
use crate::param::{Native, Param};
use crate::rows::{Header, RowChunk};

/// What went wrong, in the words `ebb check` uses, so an operator knows at
/// a glance whether to look at the network, the certificates, the
/// credentials, the grants, the SQL or the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// DNS did not resolve, or nothing answered at the address.
    Connect,
    Tls,
    /// The SSH server's host key is not the one the config pins.
    HostKey,
    Authentication,
    /// Connected and authenticated, but not allowed to read what the query reads.
    Permission,
    /// The database refused or failed the SQL itself.
    Sql,
    Timeout,
    /// Anything else (a protocol error, a bad value).
    Other,
}

impl Problem {
    pub fn label(self) -> &'static str {
        match self {
            Problem::Connect => "connection failed",
            Problem::Tls => "TLS failed",
            Problem::HostKey => "SSH host key mismatch",
            Problem::Authentication => "authentication failed",
            Problem::Permission => "permission denied",
            Problem::Sql => "SQL error",
            Problem::Timeout => "timed out",
            Problem::Other => "failed",
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{source_name}`: {problem}: {message}")]
    Connect {
        source_name: String,
        problem: Problem,
        message: String,
    },
    #[error("model `{model}`: {problem}: {message}")]
    Query {
        model: String,
        problem: Problem,
        message: String,
    },
    #[error(
        "model `{model}`: column `{column}` has type {type_name}, which Ebb cannot read yet; cast it to text in the query"
    )]
    UnsupportedType {
        model: String,
        column: String,
        type_name: String,
    },
}

/// A model query with `{{…}}` templates already turned into placeholders,
/// and the values to bind to them, one per placeholder number (numbered
/// dialects) or per occurrence (`?` dialects).
#[derive(Debug, Clone)]
pub struct BoundQuery {
    pub model: String,
    pub sql: String,
    pub params: Vec<Param>,
}

impl BoundQuery {
    /// The template values as drivers bind them; one that cannot be read as
    /// its kind is an error naming the model.
    pub(crate) fn natives(&self) -> Result<Vec<Native>, SourceError> {
        self.params
            .iter()
            .map(|p| {
                p.native().map_err(|message| SourceError::Query {
                    model: self.model.clone(),
                    problem: Problem::Other,
                    message: unbindable(message),
                })
            })
            .collect()
    }
}

/// How every source words a template value it cannot bind.
pub(crate) fn unbindable(reason: impl std::fmt::Display) -> String {
    format!("cannot bind a template value: {reason}")
}

/// A column of a query's result and the type the database declares for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_name: String,
}

/// How a dialect writes bind placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    /// `?1`, `?2` (SQLite): reusable by number.
    QuestionNumbered,
    /// `$1`, `$2` (Postgres): reusable by number.
    Dollar,
    /// `?` (MySQL, Snowflake, BigQuery): one value per occurrence.
    Question,
    /// `:p1` (Databricks): reusable by name.
    Named,
}

impl Placeholders {
    pub fn of(kind: SourceKind) -> Placeholders {
        match kind {
            SourceKind::Sqlite => Placeholders::QuestionNumbered,
            SourceKind::Postgres | SourceKind::Redshift => Placeholders::Dollar,
            SourceKind::Snowflake | SourceKind::Bigquery => Placeholders::Question,
            SourceKind::Mysql => Placeholders::Question,
            SourceKind::Databricks => Placeholders::Named,
        }
    }

    /// The text for placeholder `n` (1-based).
    pub fn write(self, n: usize) -> String {
        match self {
            Placeholders::QuestionNumbered => format!("?{n}"),
            Placeholders::Dollar => format!("${n}"),
            Placeholders::Question => "?".to_string(),
            Placeholders::Named => format!(":p{n}"),
        }
    }

    /// Whether one bound value can serve several occurrences.
    pub fn reusable(self) -> bool {
        self != Placeholders::Question
    }
}

/// An open connection to one warehouse, and the SSH tunnel it runs
/// through, if its source has one. Redshift speaks the Postgres protocol
/// and is read by the same code, with its own connect options.
pub struct Warehouse {
    db: Db,
    tunnel: Option<ssh::Tunnel>,
}

enum Db {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
    Mysql(mysql::Mysql),
    Snowflake(snowflake::Snowflake),
    BigQuery(bigquery::BigQuery),
    Databricks(databricks::Databricks),
}

pub type RowChunks = mpsc::Receiver<Result<RowChunk, SourceError>>;

impl Warehouse {
    /// Connects within the source's `connect_timeout`, so an address that
    /// accepts and never answers fails instead of hanging.
    pub async fn connect(source: &Source) -> Result<Warehouse, SourceError> {
        let connect = async {
            // Through a tunnel, the driver connects to its local end.
            let mut tunnel = match &source.ssh {
                Some(ssh) => Some(ssh::Tunnel::open(source, ssh).await?),
                None => None,
            };
            let routed = tunnel.as_ref().map(|t| t.route(source));
            let source = routed.as_ref().unwrap_or(source);
            let db = match source.kind {
                SourceKind::Sqlite => Db::Sqlite(sqlite::Sqlite::connect(source).await?),
                SourceKind::Postgres | SourceKind::Redshift => {
                    Db::Postgres(postgres::Postgres::connect(source).await?)
                }
                SourceKind::Mysql => Db::Mysql(mysql::Mysql::connect(source).await?),
                SourceKind::Snowflake => {
                    Db::Snowflake(snowflake::Snowflake::connect(source).await?)
                }
                SourceKind::Bigquery => Db::BigQuery(bigquery::BigQuery::connect(source).await?),
                SourceKind::Databricks => {
                    Db::Databricks(databricks::Databricks::connect(source).await?)
                }
            };
            if let Some(t) = &mut tunnel {
                t.stop_accepting();
            }
            Ok(Warehouse { db, tunnel })
        };
        tokio::time::timeout(source.connect_timeout, connect)
            .await
            .unwrap_or_else(|_| {
                Err(SourceError::Connect {
                    source_name: source.name.clone(),
                    problem: Problem::Timeout,
                    message: format!(
                        "no answer within {} s; check the host and port, or raise connect_timeout_secs",
                        source.connect_timeout.as_secs_f64()
                    ),
                })
            })
    }

    /// Runs the query without reading a row (its result wrapped in
    /// `LIMIT 0`), so the database checks the SQL, the grants and the column
    /// types the way a sync would, at almost no cost.
    pub async fn check(&mut self, query: &BoundQuery) -> Result<(), SourceError> {
        match &mut self.db {
            Db::Sqlite(w) => w.check(query).await,
            Db::Postgres(w) => w.check(query).await,
            // Describing a MySQL query runs it over an empty result.
            Db::Mysql(w) => w.columns(query).await.map(drop),
            // Describing a query over these APIs already runs it as LIMIT 0.
            Db::Snowflake(w) => sql_api::columns(w, query).await.map(drop),
            Db::BigQuery(w) => sql_api::columns(w, query).await.map(drop),
            Db::Databricks(w) => sql_api::columns(w, query).await.map(drop),
        }
    }

    /// The query's columns, without running it.
    pub async fn columns(&mut self, query: &BoundQuery) -> Result<Vec<Column>, SourceError> {
        match &mut self.db {
            Db::Sqlite(w) => w.columns(query).await,
            Db::Postgres(w) => w.columns(query).await,
            Db::Mysql(w) => w.columns(query).await,
            Db::Snowflake(w) => sql_api::columns(w, query).await,
            Db::BigQuery(w) => sql_api::columns(w, query).await,
            Db::Databricks(w) => sql_api::columns(w, query).await,
        }
    }

    /// The connection, if this is a Postgres warehouse (for the diff it
    /// runs there, which writes its own schema).
    pub fn postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        match &mut self.db {
            Db::Postgres(w) => Some(w.connection()),
            _ => None,
        }
    }

    /// Streams the query's rows in chunks; the connection moves into the
    /// reading task and is closed when the stream ends or is dropped, and
    /// its tunnel after it, before the stream reports its end.
    pub fn stream(self, query: BoundQuery) -> RowChunks {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let result = match self.db {
                Db::Sqlite(w) => w.stream(&query, &tx).await,
                Db::Postgres(w) => w.stream(&query, &tx).await,
                Db::Mysql(w) => w.stream(&query, &tx).await,
                Db::Snowflake(w) => sql_api::stream(w, &query, &tx).await,
                Db::BigQuery(w) => sql_api::stream(w, &query, &tx).await,
                Db::Databricks(w) => sql_api::stream(w, &query, &tx).await,
            };
            if let Some(tunnel) = self.tunnel {
                tunnel.close().await;
            }
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }
}

/// Collects rows into chunks and sends each once it is full.
pub(crate) struct ChunkSender {
    tx: mpsc::Sender<Result<RowChunk, SourceError>>,
    chunk: RowChunk,
}

impl ChunkSender {
    /// Fails when the result names a column twice.
    pub fn new(
        tx: &mpsc::Sender<Result<RowChunk, SourceError>>,
        query: &BoundQuery,
        names: Vec<String>,
    ) -> Result<Self, SourceError> {
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
pub(crate) fn header(query: &BoundQuery, names: Vec<String>) -> Result<Arc<Header>, SourceError> {
    Header::new(names).map_err(|message| SourceError::Query {
        model: query.model.clone(),
        problem: Problem::Sql,
        message,
    })
}

/// The columns a query would return, from preparing it (nothing runs).
pub(crate) async fn prepared_columns<'c, E: sqlx::Executor<'c>>(
    conn: E,
    sql: &str,
) -> Result<Vec<Column>, sqlx::Error> {
    use sqlx::TypeInfo;
    let stmt = conn.prepare(sql).await?;
    Ok(sqlx::Statement::columns(&stmt)
        .iter()
        .map(|c| Column {
            name: sqlx::Column::name(c).to_string(),
            type_name: sqlx::Column::type_info(c).name().to_string(),
        })
        .collect())
}

/// The model's SQL wrapped so that it runs without returning a row, and
/// how many characters the wrapper puts before the model's SQL (to map an
/// error position back onto the model's text).
pub(crate) fn limit_zero(sql: &str) -> (String, usize) {
    const BEFORE: &str = "SELECT * FROM (\n";
    let sql = sql.trim_end().trim_end_matches(';');
    (
        format!("{BEFORE}{sql}\n) AS ebb_check LIMIT 0"),
        BEFORE.chars().count(),
    )
}

/// Sorts a driver error into the problem `ebb check` reports. SQLSTATE
/// classes are shared by Postgres, Redshift and MySQL; codes a database
/// reports otherwise are mapped by its own module first.
pub(crate) fn classify(e: &sqlx::Error) -> Problem {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Problem::Timeout,
        // How TLS libraries report a failed handshake on the socket.
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => Problem::Tls,
        sqlx::Error::Io(_) => Problem::Connect,
        sqlx::Error::Tls(_) => Problem::Tls,
        sqlx::Error::PoolTimedOut => Problem::Timeout,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(c) if c.starts_with("28") => Problem::Authentication,
            Some("42501") => Problem::Permission,
            // query_canceled: what a statement timeout raises.
            Some("57014") => Problem::Timeout,
            _ => Problem::Sql,
        },
        _ => Problem::Other,
    }
}
