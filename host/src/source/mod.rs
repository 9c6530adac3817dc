//! Warehouses Ebb reads models from, one file per kind.
//!
//! Every kind does the same three things: connect (with a one-line diagnosis
//! when that fails), describe a query's columns without running it, and
//! stream its rows as JSON records inside a read-only transaction. Each
//! kind's file holds its driver (its connection, which knows how the kind's
//! SQL and types read); [`driver`] registers them, and [`Warehouse`] drives
//! any of them, through an SSH tunnel when the source has one.

mod bigquery;
mod chunks;
mod database;
mod databricks;
mod driver;
mod error;
mod json;
mod mysql;
mod postgres;
mod query;
pub mod single_query;
mod snowflake;
mod sql_api;
mod sqlite;
mod ssh;

pub use chunks::RowChunks;
pub use driver::DynDriver;
pub use error::{Problem, SourceError};
pub use query::{BoundQuery, Column, Placeholders};

use tokio::sync::mpsc;

use driver::{DynConnection, Kind};
use sql_api::Api;

use crate::config::{Source, SourceKind};

/// How each kind is read: the one place a new kind of warehouse is added.
pub fn driver(kind: SourceKind) -> &'static dyn DynDriver {
    match kind {
        SourceKind::Sqlite => Kind::<sqlite::Sqlite>::OF,
        SourceKind::Postgres | SourceKind::Redshift => Kind::<postgres::Postgres>::OF,
        SourceKind::Mysql => Kind::<mysql::Mysql>::OF,
        SourceKind::Snowflake => Kind::<Api<snowflake::Snowflake>>::OF,
        SourceKind::Bigquery => Kind::<Api<bigquery::BigQuery>>::OF,
        SourceKind::Databricks => Kind::<Api<databricks::Databricks>>::OF,
    }
}

/// An open connection to one warehouse, and the SSH tunnel it runs
/// through, if its source has one.
pub struct Warehouse {
    connection: Box<dyn DynConnection>,
    tunnel: Option<ssh::Tunnel>,
}

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
            let connection = driver(source.kind).connect(source).await?;
            if let Some(t) = &mut tunnel {
                t.stop_accepting();
            }
            Ok(Warehouse { connection, tunnel })
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
        self.connection.check(query).await
    }

    /// The query's columns, without running it.
    pub async fn columns(&mut self, query: &BoundQuery) -> Result<Vec<Column>, SourceError> {
        self.connection.columns(query).await
    }

    /// The connection, if this is a Postgres warehouse (for the diff it
    /// runs there, which writes its own schema).
    pub fn postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        self.connection.postgres()
    }

    /// Streams the query's rows in chunks; the connection moves into the
    /// reading task and is closed when the stream ends or is dropped, and
    /// its tunnel after it, before the stream reports its end.
    pub fn stream(self, query: BoundQuery) -> RowChunks {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let result = self.connection.stream(&query, &tx).await;
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
