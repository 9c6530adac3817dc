//! Postgres and Redshift as warehouses. Redshift speaks the Postgres
//! protocol, so both are read by this module; what differs is only how the
//! connection starts (Redshift's default port is 5439 and it refuses
//! `extra_float_digits` above 2, so none is sent).
//!
//! Every model query runs inside `BEGIN READ ONLY` with the session's
//! `statement_timeout` (both forms Redshift accepts too), so a model cannot
//! write and cannot hold the database forever. Parameters are prepared with
//! the types Ebb binds, so the statement `columns` describes is the very one
//! `stream` executes. Values become JSON in [`values`]; a Postgres database
//! in `SQL_ASCII` is read in that encoding, so text in it that is not UTF-8
//! fails only its row.

mod values;

use futures::TryStreamExt;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgErrorPosition, PgRow, PgTypeInfo};
use sqlx::{ConnectOptions, Connection as _, Executor, PgConnection, Statement};
use std::str::FromStr;

use super::chunks::{ChunkSender, ChunkTx};
use super::database::{classify, limit_zero};
use super::driver::Driver;
use super::error::{Problem, SourceError};
use super::query::{BoundQuery, Column, Placeholders};
use crate::config::{Source, SourceKind};
use crate::param::Native;
use crate::rows::ROWS_PER_CHUNK;
use values::RowPlan;

pub struct Postgres {
    conn: PgConnection,
}

/// Postgres and Redshift alike.
impl Driver for Postgres {
    const PLACEHOLDERS: Placeholders = Placeholders::Dollar;

    async fn connect(source: &Source) -> Result<Postgres, SourceError> {
        let fail = |problem, message| SourceError::Connect {
            source_name: source.name.clone(),
            problem,
            message,
        };
        let mut opts = PgConnectOptions::from_str(&source.url)
            .map_err(|e| fail(Problem::Other, format!("bad connection URL: {e}")))?;
        if source.kind == SourceKind::Redshift {
            if !names_port(&source.url)
                && let Some(port) = SourceKind::Redshift.default_port()
            {
                opts = opts.port(port);
            }
            opts = opts.extra_float_digits(None);
        }
        let address = format!("{}:{}", opts.get_host(), opts.get_port());
        let mut conn = opts
            .connect()
            .await
            .map_err(|e| fail(classify(&e), format!("{address}: {}", message(&e, 0))))?;
        let timeout = format!(
            "SET statement_timeout = {}",
            source.statement_timeout.as_millis()
        );
        let session = match source.kind {
            SourceKind::Postgres => format!("{timeout}; {READ_SQL_ASCII_AS_STORED}"),
            _ => timeout,
        };
        conn.execute(session.as_str())
            .await
            .map_err(|e| fail(classify(&e), message(&e, 0)))?;
        Ok(Postgres { conn })
    }

    async fn columns(&mut self, query: &BoundQuery) -> Result<Vec<Column>, SourceError> {
        let types = param_types(&query.natives()?);
        let stmt = self
            .conn
            .prepare_with(&query.sql, &types)
            .await
            .map_err(|e| query_error(query, e, 0))?;
        Ok(stmt
            .columns()
            .iter()
            .map(|c| Column {
                name: sqlx::Column::name(c).to_string(),
                type_name: sqlx::TypeInfo::name(sqlx::Column::type_info(c)).to_string(),
            })
            .collect())
    }

    async fn stream(mut self, query: &BoundQuery, tx: &ChunkTx) -> Result<(), SourceError> {
        let err = |e| query_error(query, e, 0);
        let natives = query.natives()?;
        let types = param_types(&natives);
        let mut txn = self.conn.begin_with("BEGIN READ ONLY").await.map_err(err)?;
        let stmt = txn.prepare_with(&query.sql, &types).await.map_err(err)?;
        let plan = RowPlan::new(&mut txn, stmt.columns(), &query.model).await?;
        let out = ChunkSender::new(tx, query, plan.names())?;
        // Rows are decoded on another task, so reading the next rows off
        // the socket overlaps with turning the last ones into JSON.
        let (rows_tx, rows_rx) = tokio::sync::mpsc::channel(DECODE_QUEUE);
        let decoder = tokio::spawn(decode(rows_rx, plan, out, query.model.clone()));
        let mut rows = bind(stmt.query(), natives).fetch(&mut *txn);
        let mut batch = Vec::with_capacity(ROWS_PER_CHUNK);
        while let Some(row) = rows.try_next().await.map_err(err)? {
            batch.push(row);
            if batch.len() == ROWS_PER_CHUNK {
                let next = Vec::with_capacity(ROWS_PER_CHUNK);
                if rows_tx
                    .send(std::mem::replace(&mut batch, next))
                    .await
                    .is_err()
                {
                    // The decoder stopped: on a bad value, or its reader left.
                    break;
                }
            }
        }
        drop(rows);
        if !batch.is_empty() {
            let _ = rows_tx.send(batch).await;
        }
        drop(rows_tx);
        decoder.await.map_err(|e| SourceError::Query {
            model: query.model.clone(),
            problem: Problem::Other,
            message: format!("decoding rows stopped: {e}"),
        })??;
        txn.rollback().await.map_err(err)?;
        Ok(())
    }

    /// Executes the query under `LIMIT 0` (Postgres checks grants when a
    /// statement runs, not when it is prepared), and checks that Ebb can
    /// read every column type it returns.
    async fn check(&mut self, query: &BoundQuery) -> Result<(), SourceError> {
        let natives = query.natives()?;
        let types = param_types(&natives);
        let (sql, offset) = limit_zero(&query.sql);
        let mut txn = self
            .conn
            .begin_with("BEGIN READ ONLY")
            .await
            .map_err(|e| query_error(query, e, 0))?;
        bind(sqlx::query(&sql), natives)
            .execute(&mut *txn)
            .await
            .map_err(|e| query_error(query, e, offset))?;
        let stmt = txn
            .prepare_with(&query.sql, &types)
            .await
            .map_err(|e| query_error(query, e, 0))?;
        RowPlan::new(&mut txn, stmt.columns(), &query.model).await?;
        txn.rollback().await.map_err(|e| query_error(query, e, 0))?;
        Ok(())
    }

    fn postgres(&mut self) -> Option<&mut PgConnection> {
        Some(&mut self.conn)
    }
}

/// A database in `SQL_ASCII` keeps text as whatever bytes it is given,
/// and refuses to send text that is not UTF-8 to a UTF-8 client: the whole
/// query fails, naming neither row nor column. Its text is read as stored
/// instead, so such a value fails only its row (see [`crate::rows`]).
/// Other encodings are converted to UTF-8 by the server, as always.
/// (Redshift's databases are all UTF-8.)
const READ_SQL_ASCII_AS_STORED: &str = "SELECT set_config('client_encoding', 'SQL_ASCII', false) \
     WHERE current_setting('server_encoding') = 'SQL_ASCII'";

/// Batches of rows read but not yet decoded.
const DECODE_QUEUE: usize = 4;

/// Turns batches of rows into JSON chunks until the reader is done, or
/// the chunks' reader is gone.
async fn decode(
    mut batches: tokio::sync::mpsc::Receiver<Vec<PgRow>>,
    plan: RowPlan,
    mut out: ChunkSender,
    model: String,
) -> Result<(), SourceError> {
    while let Some(batch) = batches.recv().await {
        for row in &batch {
            out.rows().push_row(|i, o| plan.write(row, i, o, &model))?;
        }
        if !out.send_if_full().await {
            return Ok(());
        }
    }
    out.flush().await;
    Ok(())
}

/// Whether a connection URL sets the port itself (in the address or as a
/// `port=` parameter).
fn names_port(url: &str) -> bool {
    url::Url::parse(url)
        .is_ok_and(|u| u.port().is_some() || u.query_pairs().any(|(k, _)| k == "port"))
}

/// The Postgres types the values are bound as.
fn param_types(natives: &[Native]) -> Vec<PgTypeInfo> {
    fn pg<T: sqlx::Type<sqlx::Postgres>>() -> PgTypeInfo {
        T::type_info()
    }
    natives
        .iter()
        .map(|n| match n {
            Native::Int(_) => pg::<i64>(),
            Native::Float(_) => pg::<f64>(),
            Native::Decimal(_) => pg::<rust_decimal::Decimal>(),
            Native::Text(_) => pg::<String>(),
            Native::Bool(_) => pg::<bool>(),
            Native::Timestamp(_) => pg::<chrono::NaiveDateTime>(),
            Native::TimestampTz(_) => pg::<chrono::DateTime<chrono::Utc>>(),
            Native::Date(_) => pg::<chrono::NaiveDate>(),
        })
        .collect()
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, PgArguments>;

fn bind(mut q: Query<'_>, natives: Vec<Native>) -> Query<'_> {
    for n in natives {
        q = match n {
            Native::Int(v) => q.bind(v),
            Native::Float(v) => q.bind(v),
            Native::Decimal(v) => q.bind(v),
            Native::Text(v) => q.bind(v),
            Native::Bool(v) => q.bind(v),
            Native::Timestamp(v) => q.bind(v),
            Native::TimestampTz(v) => q.bind(v),
            Native::Date(v) => q.bind(v),
        };
    }
    q
}

fn query_error(query: &BoundQuery, e: sqlx::Error, offset: usize) -> SourceError {
    SourceError::Query {
        model: query.model.clone(),
        problem: classify(&e),
        message: message(&e, offset),
    }
}

/// The database's own words for an error and, when it points into the
/// query, where (counted in the model's SQL, `offset` characters after the
/// start of what was sent).
fn message(e: &sqlx::Error, offset: usize) -> String {
    let Some(pg) = e
        .as_database_error()
        .and_then(|db| db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
    else {
        return match e {
            sqlx::Error::Io(e) => e.to_string(),
            sqlx::Error::Tls(e) => e.to_string(),
            e => e.to_string(),
        };
    };
    let mut text = pg.message().to_string();
    if let Some(PgErrorPosition::Original(pos)) = pg.position()
        && pos > offset
    {
        text.push_str(&format!(" (at character {} of the query)", pos - offset));
    }
    if let Some(detail) = pg.detail() {
        text.push_str(&format!("; {detail}"));
    }
    text
}
