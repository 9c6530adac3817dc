//! Databricks SQL over the Statement Execution API 2.0: a statement is
//! posted to a SQL warehouse with named (`:p1`) typed parameters, waited on
//! for up to 10 s and then polled while it is PENDING or RUNNING; its
//! result comes inline as JSON arrays, chunk by chunk.
//!
//! The INLINE disposition caps a result at 25 MiB; a larger model fails
//! with Databricks' own message and has to be narrowed (or made
//! incremental). Values arrive as text: numbers as digits, ARRAY/MAP/STRUCT
//! as JSON text, BINARY as base64.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::error::{Problem, SourceError};
use super::json;
use super::query::{Column, Placeholders};
use super::sql_api::values::{self, BadValue};
use super::sql_api::{self, Failure, Http, Page, Poll, SqlApi};
use crate::config::{self, Settings, Source};
use crate::event::Record;
use crate::param::{Native, Param, ParamKind};

pub struct Databricks {
    http: Http,
    url: String,
    settings: config::Databricks,
    timeout: Duration,
    /// The statement last executed and its columns.
    statement: Option<String>,
    columns: Vec<(String, Kind)>,
}

#[derive(Clone, Copy)]
enum Kind {
    Integer,
    Float,
    Decimal,
    Text,
    Boolean,
    Date,
    Timestamp,
    TimestampNtz,
    Binary,
    Json,
    Null,
}

impl Databricks {
    async fn call(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<Value, Failure> {
        let token = self.settings.token.expose();
        let reply = self
            .http
            .send(|c| build(c).bearer_auth(token), describe, deadline)
            .await?;
        Ok(reply.body)
    }

    /// The result's columns, from a statement's `manifest`; they are kept
    /// for reading its chunks.
    fn read_schema(&mut self, manifest: &Value) -> Result<Vec<Column>, Failure> {
        let schema = manifest["schema"]["columns"].as_array().ok_or_else(|| {
            Failure::new(
                Problem::Other,
                "Databricks' answer has no manifest.schema.columns",
            )
        })?;
        let mut columns = Vec::with_capacity(schema.len());
        self.columns.clear();
        for col in schema {
            let name = col["name"].as_str().unwrap_or_default().to_string();
            let type_name = col["type_text"]
                .as_str()
                .or(col["type_name"].as_str())
                .unwrap_or_default()
                .to_string();
            let kind = kind_of(col["type_name"].as_str().unwrap_or_default()).ok_or_else(|| {
                Failure::Unsupported {
                    column: name.clone(),
                    type_name: type_name.clone(),
                }
            })?;
            columns.push(Column {
                name: name.clone(),
                type_name,
            });
            self.columns.push((name, kind));
        }
        Ok(columns)
    }

    /// A `result` object (the first chunk, or one fetched alone) as a page.
    fn chunk(&self, result: &Value) -> Result<Page, Failure> {
        let rows = result["data_array"].as_array().into_iter().flatten();
        let rows = rows
            .map(|row| {
                let cells = row
                    .as_array()
                    .ok_or_else(|| Failure::new(Problem::Other, "a row is not an array"))?;
                let mut rec = Record::with_capacity(self.columns.len());
                for ((name, kind), cell) in self.columns.iter().zip(cells) {
                    let v = match cell.as_str() {
                        None => Value::Null,
                        Some(text) => value(*kind, text).map_err(|m| Failure::value(name, m))?,
                    };
                    rec.insert(name.clone(), v);
                }
                Ok(rec)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = match (
            result["next_chunk_internal_link"].as_str(),
            result["next_chunk_index"].as_u64(),
        ) {
            // Only ever a path on this workspace: the token must not
            // travel anywhere else.
            (Some(link), _) if link.starts_with('/') && !link.starts_with("//") => {
                Some(link.to_string())
            }
            (_, Some(i)) => Some(format!(
                "/api/2.0/sql/statements/{}/result/chunks/{i}",
                self.statement.as_deref().unwrap_or_default()
            )),
            _ => None,
        };
        Ok(Page { rows, next })
    }
}

impl SqlApi for Databricks {
    const PLACEHOLDERS: Placeholders = Placeholders::Named;
    /// A bare `TIMESTAMP` is an instant here (and Ebb reads it as UTC).
    const BARE_TIMESTAMP: ParamKind = ParamKind::TimestampTz;

    async fn connect(source: &Source) -> Result<Databricks, SourceError> {
        let Settings::Databricks(settings) = source.settings.clone() else {
            unreachable!("config gives every databricks source its settings")
        };
        let mut db = Databricks {
            http: Http::new().map_err(|f| f.for_source(&source.name))?,
            url: source.url.clone(),
            settings,
            timeout: source.statement_timeout,
            statement: None,
            columns: Vec::new(),
        };
        sql_api::ping(&mut db, source).await?;
        Ok(db)
    }

    fn statement_timeout(&self) -> Duration {
        self.timeout
    }

    async fn execute(
        &mut self,
        sql: &str,
        params: &[Param],
        deadline: Instant,
    ) -> Result<(Vec<Column>, Page), Failure> {
        let mut body = json!({
            "statement": sql,
            "warehouse_id": self.settings.warehouse_id,
            "wait_timeout": "10s",
            "on_wait_timeout": "CONTINUE",
            "disposition": "INLINE",
            "format": "JSON_ARRAY",
        });
        if let Some(catalog) = &self.settings.catalog {
            body["catalog"] = catalog.as_str().into();
        }
        if let Some(schema) = &self.settings.schema {
            body["schema"] = schema.as_str().into();
        }
        if !params.is_empty() {
            body["parameters"] = parameters(params)?;
        }
        let url = format!("{}/api/2.0/sql/statements", self.url);
        let mut reply = self.call(|c| c.post(&url).json(&body), deadline).await?;
        let id = reply["statement_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.statement = Some(id.clone());
        let mut poll = Poll::new();
        while !finished(&reply["status"])? {
            if id.is_empty() {
                return Err(Failure::new(
                    Problem::Other,
                    "Databricks answered a running statement without a statement_id",
                ));
            }
            poll.wait(deadline).await?;
            let url = format!("{}/api/2.0/sql/statements/{id}", self.url);
            reply = self.call(|c| c.get(&url), deadline).await?;
        }
        let columns = self.read_schema(&reply["manifest"])?;
        let page = self.chunk(&reply["result"])?;
        Ok((columns, page))
    }

    async fn page(&mut self, next: &str) -> Result<Page, Failure> {
        let url = format!("{}{next}", self.url);
        let result = self.call(|c| c.get(&url), sql_api::page_deadline()).await?;
        self.chunk(&result)
    }

    async fn cancel(&mut self) {
        if let Some(id) = self.statement.clone() {
            let url = format!("{}/api/2.0/sql/statements/{id}/cancel", self.url);
            let deadline = Instant::now() + Duration::from_secs(10);
            let _ = self.call(|c| c.post(&url), deadline).await;
        }
    }
}

/// Whether a statement's `status` says it succeeded (false while it is
/// pending or running); a failure as Databricks words it.
fn finished(status: &Value) -> Result<bool, Failure> {
    match status["state"].as_str().unwrap_or_default() {
        "PENDING" | "RUNNING" => Ok(false),
        "SUCCEEDED" => Ok(true),
        "FAILED" => {
            let error = &status["error"];
            let message = error["message"].as_str().unwrap_or("the statement failed");
            let code = error["error_code"].as_str().unwrap_or_default();
            let problem = if message.contains("PERMISSION_DENIED")
                || message.contains("INSUFFICIENT_PERMISSIONS")
            {
                Problem::Permission
            } else if code == "DEADLINE_EXCEEDED" {
                Problem::Timeout
            } else {
                Problem::Sql
            };
            Err(Failure::new(problem, message))
        }
        other => Err(Failure::new(
            Problem::Other,
            format!("the statement ended {other} instead of succeeding"),
        )),
    }
}

/// Databricks' error body: `{"error_code", "message"}`.
fn describe(_: StatusCode, body: &Value) -> (Option<Problem>, String) {
    let message = body["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    let problem = match body["error_code"].as_str().unwrap_or_default() {
        "UNAUTHENTICATED" => Some(Problem::Authentication),
        "PERMISSION_DENIED" => Some(Problem::Permission),
        "DEADLINE_EXCEEDED" => Some(Problem::Timeout),
        _ => None,
    };
    (problem, message)
}

fn kind_of(type_name: &str) -> Option<Kind> {
    Some(match type_name {
        "BYTE" | "SHORT" | "INT" | "LONG" => Kind::Integer,
        "FLOAT" | "DOUBLE" => Kind::Float,
        "DECIMAL" => Kind::Decimal,
        "STRING" | "CHAR" => Kind::Text,
        "BOOLEAN" => Kind::Boolean,
        "DATE" => Kind::Date,
        "TIMESTAMP" => Kind::Timestamp,
        "TIMESTAMP_NTZ" => Kind::TimestampNtz,
        "BINARY" => Kind::Binary,
        "ARRAY" | "MAP" | "STRUCT" => Kind::Json,
        "NULL" => Kind::Null,
        _ => return None,
    })
}

fn value(kind: Kind, text: &str) -> Result<Value, BadValue> {
    Ok(match kind {
        Kind::Integer => values::integer(text)?,
        Kind::Float => values::float(text)?,
        Kind::Decimal => json::decimal(text),
        Kind::Text => Value::String(text.to_string()),
        Kind::Boolean => values::boolean(text)?,
        Kind::Date => values::date(values::parse_date(text)?),
        // An instant, written with `Z` or an offset; without one it is UTC
        // (the API's session time zone).
        Kind::Timestamp => values::instant(match chrono::DateTime::parse_from_rfc3339(text) {
            Ok(t) => t.with_timezone(&chrono::Utc),
            Err(_) => values::parse_wall_clock(text)?.and_utc(),
        }),
        Kind::TimestampNtz => values::wall_clock(values::parse_wall_clock(text)?),
        Kind::Binary => values::base64(text)?,
        Kind::Json => values::nested(text)?,
        Kind::Null => Value::Null,
    })
}

/// `[{"name": "p1", "value": …, "type": …}]` for `:p1`, `:p2`, …
fn parameters(params: &[Param]) -> Result<Value, Failure> {
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let native = sql_api::native(p)?;
            let (kind, value) = match native {
                Native::Int(v) => ("BIGINT".to_string(), v.map(|v| v.to_string())),
                Native::Float(v) => ("DOUBLE".to_string(), v.map(|v| v.to_string())),
                Native::Decimal(v) => {
                    let text = v.map(|v| v.to_string());
                    let scale = text.as_deref().map_or(0, values::scale_of);
                    (format!("DECIMAL(38,{scale})"), text)
                }
                Native::Text(v) => ("STRING".to_string(), v),
                Native::Bool(v) => ("BOOLEAN".to_string(), v.map(|v| v.to_string())),
                Native::Timestamp(v) => (
                    "TIMESTAMP_NTZ".to_string(),
                    v.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
                ),
                Native::TimestampTz(v) => (
                    "TIMESTAMP".to_string(),
                    v.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                ),
                Native::Date(v) => ("DATE".to_string(), v.map(|d| d.to_string())),
            };
            let mut p = json!({ "name": format!("p{}", i + 1), "type": kind });
            if let Some(v) = value {
                p["value"] = v.into();
            }
            Ok(p)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_and_without_zone() {
        assert_eq!(
            value(Kind::Timestamp, "2024-05-01T12:00:00.5+02:00").unwrap(),
            json!("2024-05-01T10:00:00.500Z")
        );
        assert_eq!(
            value(Kind::Timestamp, "2024-05-01 10:00:00").unwrap(),
            json!("2024-05-01T10:00:00Z")
        );
        assert_eq!(
            value(Kind::TimestampNtz, "2024-05-01T10:00:00.000").unwrap(),
            json!("2024-05-01T10:00:00")
        );
    }
}
