//! SQLite as a warehouse: the embedded default for quickstarts and tests.
//! Opened read-only, so a model can never write to it. Types come from each
//! value (SQLite is dynamically typed): integer, real, text, blob (base64),
//! and 0/1 in a column declared BOOLEAN as false/true.

use base64::Engine as _;
use futures::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{
    Column as _, ConnectOptions, Connection as _, Executor, Row, SqliteConnection, TypeInfo,
    ValueRef,
};
use std::str::FromStr;

use super::chunks::{ChunkSender, ChunkTx};
use super::database::{classify, limit_zero};
use super::driver::Driver;
use super::error::{Problem, SourceError};
use super::json;
use super::query::{BoundQuery, Column, Placeholders};
use crate::config::{Settings, Source};
use crate::param::Native;
use crate::rows::ValueError;

pub struct Sqlite {
    conn: SqliteConnection,
}

impl Driver for Sqlite {
    const PLACEHOLDERS: Placeholders = Placeholders::QuestionNumbered;

    async fn connect(source: &Source) -> Result<Sqlite, SourceError> {
        let fail = |message: String| SourceError::Connect {
            source_name: source.name.clone(),
            problem: Problem::Connect,
            message,
        };
        let Settings::Sqlite(settings) = &source.settings else {
            unreachable!("config gives every sqlite source its settings")
        };
        if let Some(script) = &settings.init_sql {
            create_from_script(source, script).await.map_err(fail)?;
        }
        let opts = SqliteConnectOptions::from_str(&source.url)
            .map_err(|e| fail(format!("bad SQLite URL: {e}")))?
            .read_only(true)
            .busy_timeout(source.statement_timeout);
        let conn = opts.connect().await.map_err(|e| fail(e.to_string()))?;
        Ok(Sqlite { conn })
    }

    async fn columns(&mut self, query: &BoundQuery) -> Result<Vec<Column>, SourceError> {
        let stmt = self
            .conn
            .prepare(&query.sql)
            .await
            .map_err(|e| query_error(query, e))?;
        Ok(sqlx::Statement::columns(&stmt)
            .iter()
            .map(|c| Column {
                name: c.name().to_string(),
                type_name: c.type_info().name().to_string(),
            })
            .collect())
    }

    async fn check(&mut self, query: &BoundQuery) -> Result<(), SourceError> {
        let (sql, _) = limit_zero(&query.sql);
        bind(sqlx::query(&sql), query)?
            .execute(&mut self.conn)
            .await
            .map_err(|e| query_error(query, e))?;
        Ok(())
    }

    async fn stream(mut self, query: &BoundQuery, tx: &ChunkTx) -> Result<(), SourceError> {
        // Names and declared types come with the first row.
        let mut out: Option<(ChunkSender, Vec<bool>)> = None;
        let mut rows = bind(sqlx::query(&query.sql), query)?.fetch(&mut self.conn);
        while let Some(row) = rows.try_next().await.map_err(|e| query_error(query, e))? {
            let (out, booleans) = match &mut out {
                Some(o) => o,
                None => {
                    let names = row.columns().iter().map(|c| c.name().to_string()).collect();
                    let booleans = row
                        .columns()
                        .iter()
                        .map(|c| c.type_info().name() == "BOOLEAN")
                        .collect();
                    out.insert((ChunkSender::new(tx, query, names)?, booleans))
                }
            };
            out.rows()
                .push_row(|i, o| value(&row, i, booleans[i], o))
                .map_err(|e| query_error(query, e))?;
            if !out.send_if_full().await {
                return Ok(());
            }
        }
        if let Some((mut out, _)) = out {
            out.flush().await;
        }
        Ok(())
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds the query's template values.
fn bind<'q>(mut q: Query<'q>, query: &BoundQuery) -> Result<Query<'q>, SourceError> {
    for native in query.natives()? {
        q = match native {
            Native::Int(v) => q.bind(v),
            Native::Float(v) => q.bind(v),
            // SQLite has no decimal type; compare as text of the number.
            Native::Decimal(v) => q.bind(v.map(|d| d.to_string())),
            Native::Text(v) => q.bind(v),
            Native::Bool(v) => q.bind(v),
            Native::Timestamp(v) => q.bind(v),
            Native::TimestampTz(v) => q.bind(v),
            Native::Date(v) => q.bind(v),
        };
    }
    Ok(q)
}

fn query_error(query: &BoundQuery, e: sqlx::Error) -> SourceError {
    SourceError::Query {
        model: query.model.clone(),
        problem: classify(&e),
        message: e.to_string(),
    }
}

/// One value as JSON. Text is read as its bytes: SQLite keeps whatever it
/// is given as text, so text that is not UTF-8 must fail only its row.
fn value(
    row: &SqliteRow,
    i: usize,
    declared_bool: bool,
    out: &mut Vec<u8>,
) -> Result<(), ValueError<sqlx::Error>> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        json::write_null(out);
        return Ok(());
    }
    match raw.type_info().name() {
        // SQLite stores a BOOLEAN column's values as 0 and 1.
        "INTEGER" if declared_bool => json::write_bool(out, row.try_get::<i64, _>(i)? != 0),
        "INTEGER" => json::write_integer(out, row.try_get::<i64, _>(i)?),
        "REAL" | "NUMERIC" => json::write_float(out, row.try_get::<f64, _>(i)?),
        "BLOB" => json::write_str(
            out,
            &base64::engine::general_purpose::STANDARD.encode(row.try_get::<&[u8], _>(i)?),
        ),
        _ => json::write_text(out, row.try_get_unchecked::<&[u8], _>(i)?)?,
    }
    Ok(())
}

/// The driver failing to read a value fails the read.
impl From<sqlx::Error> for ValueError<sqlx::Error> {
    fn from(e: sqlx::Error) -> Self {
        ValueError::Failed(e)
    }
}

/// Creates the database from `script` when its file does not exist yet.
async fn create_from_script(source: &Source, script: &std::path::Path) -> Result<(), String> {
    let opts =
        SqliteConnectOptions::from_str(&source.url).map_err(|e| format!("bad SQLite URL: {e}"))?;
    let file = opts.get_filename().to_path_buf();
    if file.exists() {
        return Ok(());
    }
    let sql = std::fs::read_to_string(script)
        .map_err(|e| format!("cannot read init_sql {}: {e}", script.display()))?;
    let mut conn = opts
        .create_if_missing(true)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let result = conn.execute(sql.as_str()).await;
    conn.close().await.ok();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&file);
        return Err(format!("init_sql {} failed: {e}", script.display()));
    }
    Ok(())
}
