//! Postgres as a warehouse. Each extraction runs in a `READ ONLY`
//! transaction with a statement timeout, so a model cannot write and cannot
//! hold the database forever. Values map to JSON by the column's declared
//! type; types not handled here are refused by name rather than guessed.

use base64::Engine as _;
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{Column, ConnectOptions, Executor, PgConnection, Row, TypeInfo};
use std::str::FromStr;

use super::{
    BoundQuery, ChunkSender, Native, Problem, SourceError, classify, decimal, float, integer,
    prepared_columns,
};
use crate::config::Source;
use crate::event::Record;

pub struct Postgres {
    conn: PgConnection,
    statement_timeout_ms: u128,
}

impl Postgres {
    pub async fn connect(source: &Source) -> Result<Postgres, SourceError> {
        let fail = |message: String| SourceError::Connect {
            source_name: source.name.clone(),
            problem: Problem::Connect,
            message,
        };
        let opts = PgConnectOptions::from_str(&source.url)
            .map_err(|e| fail(format!("bad Postgres URL: {e}")))?;
        let conn = opts.connect().await.map_err(|e| SourceError::Connect {
            source_name: source.name.clone(),
            problem: classify(&e),
            message: e.to_string(),
        })?;
        Ok(Postgres {
            conn,
            statement_timeout_ms: source.statement_timeout.as_millis(),
        })
    }

    pub async fn columns(&mut self, query: &BoundQuery) -> Result<Vec<super::Column>, SourceError> {
        prepared_columns(&mut self.conn, &query.sql)
            .await
            .map_err(|e| query_error(query, e))
    }

    pub async fn stream(
        mut self,
        query: &BoundQuery,
        tx: &tokio::sync::mpsc::Sender<Result<Vec<Record>, SourceError>>,
    ) -> Result<(), SourceError> {
        let err = |e| query_error(query, e);
        let mut txn = sqlx::Connection::begin(&mut self.conn).await.map_err(err)?;
        txn.execute("SET TRANSACTION READ ONLY")
            .await
            .map_err(err)?;
        txn.execute(
            format!(
                "SET LOCAL statement_timeout = {}",
                self.statement_timeout_ms
            )
            .as_str(),
        )
        .await
        .map_err(err)?;
        let mut out = ChunkSender::new(tx);
        let mut q = sqlx::query(&query.sql);
        for p in &query.params {
            q = match p.native().map_err(|message| SourceError::Query {
                model: query.model.clone(),
                problem: Problem::Other,
                message: format!("cannot bind a template value: {message}"),
            })? {
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
        let mut rows = q.fetch(&mut *txn);
        while let Some(row) = rows.try_next().await.map_err(err)? {
            if !out.push(record(&row, &query.model)?).await {
                return Ok(());
            }
        }
        drop(rows);
        out.flush().await;
        txn.rollback().await.map_err(err)?;
        Ok(())
    }
}

fn query_error(query: &BoundQuery, e: sqlx::Error) -> SourceError {
    let message = match &e {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        {
            Some(pg) => match pg.position() {
                Some(sqlx::postgres::PgErrorPosition::Original(pos)) => {
                    format!("{} (at character {pos} of the query)", pg.message())
                }
                _ => pg.message().to_string(),
            },
            None => db.message().to_string(),
        },
        _ => e.to_string(),
    };
    SourceError::Query {
        model: query.model.clone(),
        problem: classify(&e),
        message,
    }
}

fn record(row: &PgRow, model: &str) -> Result<Record, SourceError> {
    let mut rec = Record::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let type_name = col.type_info().name();
        let v = value(row, i, type_name).map_err(|e| match e {
            Some(e) => SourceError::Query {
                model: model.to_string(),
                problem: Problem::Other,
                message: format!("column `{}`: {e}", col.name()),
            },
            None => SourceError::UnsupportedType {
                model: model.to_string(),
                column: col.name().to_string(),
                type_name: type_name.to_string(),
            },
        })?;
        rec.insert(col.name().to_string(), v);
    }
    Ok(rec)
}

/// `Err(None)` means the type is not supported.
fn value(row: &PgRow, i: usize, type_name: &str) -> Result<Value, Option<sqlx::Error>> {
    fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
        row: &'r PgRow,
        i: usize,
    ) -> Result<Option<T>, Option<sqlx::Error>> {
        row.try_get::<Option<T>, _>(i).map_err(Some)
    }
    fn json<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
        v.map(f).unwrap_or(Value::Null)
    }
    Ok(match type_name {
        "BOOL" => json(get::<bool>(row, i)?, Value::Bool),
        "INT2" => json(get::<i16>(row, i)?, Value::from),
        "INT4" => json(get::<i32>(row, i)?, Value::from),
        "INT8" => json(get::<i64>(row, i)?, integer),
        "FLOAT4" => json(get::<f32>(row, i)?, |f| float(f as f64)),
        "FLOAT8" => json(get::<f64>(row, i)?, float),
        "NUMERIC" => json(get::<rust_decimal::Decimal>(row, i)?, |d| {
            decimal(&d.to_string())
        }),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => {
            json(get::<String>(row, i)?, Value::String)
        }
        "UUID" => json(get::<uuid::Uuid>(row, i)?, |u| Value::String(u.to_string())),
        "JSON" | "JSONB" => get::<Value>(row, i)?.unwrap_or(Value::Null),
        "BYTEA" => json(get::<Vec<u8>>(row, i)?, |b| {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }),
        "TIMESTAMPTZ" => json(get::<chrono::DateTime<chrono::Utc>>(row, i)?, |t| {
            Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }),
        "TIMESTAMP" => json(get::<chrono::NaiveDateTime>(row, i)?, |t| {
            Value::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
        }),
        "DATE" => json(get::<chrono::NaiveDate>(row, i)?, |d| {
            Value::String(d.to_string())
        }),
        "TIME" => json(get::<chrono::NaiveTime>(row, i)?, |t| {
            Value::String(t.to_string())
        }),
        "TEXT[]" | "VARCHAR[]" => json(get::<Vec<Option<String>>>(row, i)?, |v| {
            Value::Array(
                v.into_iter()
                    .map(|s| s.map(Value::String).unwrap_or(Value::Null))
                    .collect(),
            )
        }),
        "INT4[]" => json(get::<Vec<Option<i32>>>(row, i)?, |v| {
            Value::Array(v.into_iter().map(Value::from).collect())
        }),
        "INT8[]" => json(get::<Vec<Option<i64>>>(row, i)?, |v| {
            Value::Array(
                v.into_iter()
                    .map(|n| n.map(integer).unwrap_or(Value::Null))
                    .collect(),
            )
        }),
        _ => return Err(None),
    })
}
