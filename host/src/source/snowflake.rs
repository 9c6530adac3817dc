//! Snowflake over its SQL API v2 (`/api/v2/statements`), so Ebb needs no
//! driver: a statement is posted with `?` bindings, polled while Snowflake
//! answers 202, and its result read partition by partition. Authentication
//! is key-pair (a JWT Ebb signs, valid one hour) or an OAuth token.
//!
//! Values arrive as text in Snowflake's `jsonv2` encoding: numbers as
//! exact decimals, dates as days and times as decimal seconds since the
//! epoch, `TIMESTAMP_TZ` with its offset, binary as hex, VARIANT/OBJECT/
//! ARRAY as JSON text.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::error::{Problem, SourceError};
use super::json;
use super::query::{Column, Placeholders};
use super::sql_api::values::{self, BadValue};
use super::sql_api::{self, Failure, Http, Page, Poll, SqlApi};
use crate::config::{self, Settings, SnowflakeAuth, Source};
use crate::event::Record;
use crate::param::{Native, Param};

/// A key-pair JWT is re-signed after this long (Snowflake accepts one hour).
const JWT_REUSE: Duration = Duration::from_secs(50 * 60);

pub struct Snowflake {
    http: Http,
    url: String,
    settings: config::Snowflake,
    timeout_secs: u64,
    jwt: Option<(String, Instant)>,
    /// The statement last executed and its columns, for partitions.
    handle: Option<String>,
    columns: Vec<SnowflakeColumn>,
}

#[derive(Clone)]
struct SnowflakeColumn {
    name: String,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Integer,
    Decimal,
    Real,
    Text,
    Boolean,
    Date,
    Time,
    TimestampNtz,
    /// LTZ and TZ: instants.
    Timestamp,
    Json,
    Binary,
}

impl Snowflake {
    /// The bearer token and its type header.
    fn token(&mut self) -> Result<(String, &'static str), Failure> {
        let key = match &self.settings.auth {
            SnowflakeAuth::OAuth(token) => return Ok((token.expose().to_string(), "OAUTH")),
            SnowflakeAuth::KeyPair(key) => key,
        };
        if let Some((jwt, at)) = &self.jwt
            && at.elapsed() < JWT_REUSE
        {
            return Ok((jwt.clone(), "KEYPAIR_JWT"));
        }
        // The account identifier without a region suffix, upper case.
        let account = self
            .settings
            .account
            .split('.')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let user = self.settings.user.to_ascii_uppercase();
        let fingerprint = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            Sha256::digest(key.public_der()),
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let claims = json!({
            "iss": format!("{account}.{user}.SHA256:{fingerprint}"),
            "sub": format!("{account}.{user}"),
            "iat": now,
            "exp": now + 3600,
        });
        let jwt = key
            .sign(&claims, None)
            .map_err(|e| Failure::new(Problem::Authentication, e.to_string()))?;
        self.jwt = Some((jwt.clone(), Instant::now()));
        Ok((jwt, "KEYPAIR_JWT"))
    }

    async fn call(
        &mut self,
        build: impl Fn(&Client) -> RequestBuilder,
        deadline: Instant,
    ) -> Result<sql_api::Reply, Failure> {
        let (token, kind) = self.token()?;
        self.http
            .send(
                |c| {
                    build(c)
                        .bearer_auth(&token)
                        .header("X-Snowflake-Authorization-Token-Type", kind)
                        .header("Accept", "application/json")
                },
                describe,
                deadline,
            )
            .await
    }

    fn rows(&self, body: &Value) -> Result<Vec<Record>, Failure> {
        let data = body.get("data").and_then(Value::as_array);
        data.into_iter()
            .flatten()
            .map(|row| {
                let cells = row
                    .as_array()
                    .ok_or_else(|| Failure::new(Problem::Other, "a row is not an array"))?;
                let mut rec = Record::with_capacity(self.columns.len());
                for (col, cell) in self.columns.iter().zip(cells) {
                    let v = match cell.as_str() {
                        None => Value::Null,
                        Some(text) => {
                            value(col.kind, text).map_err(|m| Failure::value(&col.name, m))?
                        }
                    };
                    rec.insert(col.name.clone(), v);
                }
                Ok(rec)
            })
            .collect()
    }
}

impl SqlApi for Snowflake {
    const PLACEHOLDERS: Placeholders = Placeholders::Question;

    async fn connect(source: &Source) -> Result<Snowflake, SourceError> {
        let Settings::Snowflake(settings) = source.settings.clone() else {
            unreachable!("config gives every snowflake source its settings")
        };
        let mut sf = Snowflake {
            http: Http::new().map_err(|f| f.for_source(&source.name))?,
            url: source.url.clone(),
            settings,
            timeout_secs: source.statement_timeout.as_secs().max(1),
            jwt: None,
            handle: None,
            columns: Vec::new(),
        };
        sql_api::ping(&mut sf, source).await?;
        Ok(sf)
    }

    fn statement_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    async fn execute(
        &mut self,
        sql: &str,
        params: &[Param],
        deadline: Instant,
    ) -> Result<(Vec<Column>, Page), Failure> {
        let mut body = Map::new();
        body.insert("statement".into(), sql.into());
        body.insert("timeout".into(), self.timeout_secs.into());
        let s = &self.settings;
        for (field, value) in [
            ("warehouse", &s.warehouse),
            ("database", &s.database),
            ("schema", &s.schema),
            ("role", &s.role),
        ] {
            if let Some(v) = value {
                body.insert(field.into(), v.as_str().into());
            }
        }
        if !params.is_empty() {
            body.insert("bindings".into(), bindings(params)?);
        }
        let body = Value::Object(body);
        let url = format!(
            "{}/api/v2/statements?requestId={}",
            self.url,
            sql_api::request_id()
        );
        let mut reply = self.call(|c| c.post(&url).json(&body), deadline).await?;
        let handle = reply.body["statementHandle"].as_str().map(str::to_owned);
        self.handle = handle.clone();
        let mut poll = Poll::new();
        while reply.status == StatusCode::ACCEPTED {
            let handle = handle.as_deref().ok_or_else(|| {
                Failure::new(
                    Problem::Other,
                    "Snowflake answered 202 without a statementHandle",
                )
            })?;
            poll.wait(deadline).await?;
            let url = format!("{}/api/v2/statements/{handle}", self.url);
            reply = self.call(|c| c.get(&url), deadline).await?;
        }
        let meta = &reply.body["resultSetMetaData"];
        let row_type = meta["rowType"].as_array().ok_or_else(|| {
            Failure::new(
                Problem::Other,
                "Snowflake's answer has no resultSetMetaData.rowType",
            )
        })?;
        let mut columns = Vec::with_capacity(row_type.len());
        self.columns.clear();
        for col in row_type {
            let name = col["name"].as_str().unwrap_or_default().to_string();
            let (kind, type_name) = kind_of(col);
            let kind = kind.ok_or_else(|| Failure::Unsupported {
                column: name.clone(),
                type_name: type_name.clone(),
            })?;
            columns.push(Column {
                name: name.clone(),
                type_name,
            });
            self.columns.push(SnowflakeColumn { name, kind });
        }
        let partitions = meta["partitionInfo"].as_array().map_or(1, Vec::len);
        let rows = self.rows(&reply.body)?;
        Ok((
            columns,
            Page {
                rows,
                next: (partitions > 1).then(|| format!("1/{partitions}")),
            },
        ))
    }

    async fn page(&mut self, next: &str) -> Result<Page, Failure> {
        let (n, total) = next
            .split_once('/')
            .and_then(|(n, t)| Some((n.parse::<usize>().ok()?, t.parse::<usize>().ok()?)))
            .expect("partition tokens are made by execute");
        let handle = self.handle.clone().unwrap_or_default();
        let url = format!("{}/api/v2/statements/{handle}", self.url);
        let reply = self
            .call(
                |c| c.get(&url).query(&[("partition", n)]),
                sql_api::page_deadline(),
            )
            .await?;
        Ok(Page {
            rows: self.rows(&reply.body)?,
            next: (n + 1 < total).then(|| format!("{}/{total}", n + 1)),
        })
    }

    async fn cancel(&mut self) {
        if let Some(handle) = self.handle.clone() {
            let url = format!("{}/api/v2/statements/{handle}/cancel", self.url);
            let deadline = Instant::now() + Duration::from_secs(10);
            let _ = self.call(|c| c.post(&url), deadline).await;
        }
    }
}

/// Snowflake's error body: `{"code", "message", "sqlState"}`.
fn describe(status: StatusCode, body: &Value) -> (Option<Problem>, String) {
    let message = body["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    let code = body["code"].as_str().unwrap_or_default();
    let sql_state = body["sqlState"].as_str().unwrap_or_default();
    let problem = match status {
        StatusCode::UNAUTHORIZED => Some(Problem::Authentication),
        // 000630: statement reached its statement or warehouse timeout.
        _ if code == "000630" || sql_state == "57014" => Some(Problem::Timeout),
        _ if sql_state.starts_with("28") => Some(Problem::Authentication),
        _ if sql_state == "42501" => Some(Problem::Permission),
        StatusCode::UNPROCESSABLE_ENTITY => Some(Problem::Sql),
        StatusCode::BAD_REQUEST if message.contains("SQL compilation error") => Some(Problem::Sql),
        _ => None,
    };
    let message = match code {
        "" => message,
        _ => format!("{message} [code {code}]"),
    };
    (problem, message)
}

/// How a `rowType` entry is read, and the type name Ebb reports.
fn kind_of(col: &Value) -> (Option<Kind>, String) {
    let t = col["type"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let scale = col["scale"].as_i64().unwrap_or(0);
    let kind = match t.as_str() {
        "FIXED" => {
            let precision = col["precision"].as_i64().unwrap_or(38);
            let kind = if scale == 0 {
                Kind::Integer
            } else {
                Kind::Decimal
            };
            return (Some(kind), format!("NUMBER({precision},{scale})"));
        }
        "REAL" => return (Some(Kind::Real), "FLOAT".into()),
        "TEXT" => return (Some(Kind::Text), "VARCHAR".into()),
        "BOOLEAN" => Kind::Boolean,
        "DATE" => Kind::Date,
        "TIME" => Kind::Time,
        "TIMESTAMP_NTZ" => Kind::TimestampNtz,
        "TIMESTAMP_LTZ" | "TIMESTAMP_TZ" => Kind::Timestamp,
        "VARIANT" | "OBJECT" | "ARRAY" => Kind::Json,
        "BINARY" => Kind::Binary,
        _ => return (None, t),
    };
    (Some(kind), t)
}

fn value(kind: Kind, text: &str) -> Result<Value, BadValue> {
    Ok(match kind {
        Kind::Integer => values::integer(text)?,
        Kind::Decimal => json::decimal(text),
        Kind::Real => values::float(text)?,
        Kind::Text => Value::String(text.to_string()),
        Kind::Boolean => values::boolean(text)?,
        Kind::Date => {
            let days: i64 = text
                .parse()
                .map_err(|_| BadValue::not(text, "a number of days"))?;
            chrono::DateTime::UNIX_EPOCH
                .date_naive()
                .checked_add_signed(chrono::Duration::days(days))
                .map(values::date)
                .ok_or_else(|| BadValue::DaysOutOfRange(text.to_string()))?
        }
        Kind::Time => {
            let (secs, nanos) = values::seconds(text)?;
            chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs as u32, nanos)
                .filter(|_| (0..86_400).contains(&secs))
                .map(values::time)
                .ok_or_else(|| BadValue::not(text, "a time of day in seconds"))?
        }
        Kind::TimestampNtz => values::wall_clock(values::epoch(text)?.naive_utc()),
        // TIMESTAMP_TZ is "seconds offset"; the seconds are already UTC.
        Kind::Timestamp => values::instant(values::epoch(
            text.split_once(' ').map_or(text, |(secs, _)| secs),
        )?),
        Kind::Json => values::nested(text)?,
        Kind::Binary => values::hex_to_base64(text)?,
    })
}

/// `{"1": {"type": …, "value": …}, …}` in Snowflake's binding encoding:
/// dates as epoch milliseconds, timestamps as epoch nanoseconds (with the
/// offset + 1440 minutes for TIMESTAMP_TZ).
fn bindings(params: &[Param]) -> Result<Value, Failure> {
    let mut out = Map::new();
    for (i, p) in params.iter().enumerate() {
        let native = sql_api::native(p)?;
        let nanos = |t: chrono::NaiveDateTime| {
            t.and_utc()
                .timestamp_nanos_opt()
                .map(|n| n.to_string())
                .ok_or_else(|| Failure::new(Problem::Other, format!("{t} is out of range")))
        };
        let (kind, value) = match native {
            Native::Int(v) => ("FIXED", v.map(|v| v.to_string())),
            Native::Float(v) => ("REAL", v.map(|v| v.to_string())),
            Native::Decimal(v) => ("FIXED", v.map(|v| v.to_string())),
            Native::Text(v) => ("TEXT", v),
            Native::Bool(v) => ("BOOLEAN", v.map(|v| v.to_string())),
            Native::Timestamp(v) => ("TIMESTAMP_NTZ", v.map(nanos).transpose()?),
            Native::TimestampTz(v) => (
                "TIMESTAMP_TZ",
                v.map(|t| nanos(t.naive_utc()).map(|n| format!("{n} 1440")))
                    .transpose()?,
            ),
            Native::Date(v) => (
                "DATE",
                v.map(|d| {
                    (d.and_time(chrono::NaiveTime::MIN)
                        .and_utc()
                        .timestamp_millis())
                    .to_string()
                }),
            ),
        };
        out.insert((i + 1).to_string(), json!({ "type": kind, "value": value }));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonv2_text_reads_by_type() {
        assert_eq!(value(Kind::Date, "19844").unwrap(), json!("2024-05-01"));
        assert_eq!(
            value(Kind::Time, "36000.500000000").unwrap(),
            json!("10:00:00.500")
        );
        assert_eq!(
            value(Kind::TimestampNtz, "1714557600.000000000").unwrap(),
            json!("2024-05-01T10:00:00")
        );
        assert_eq!(
            value(Kind::Timestamp, "1714557600.250000000 1560").unwrap(),
            json!("2024-05-01T10:00:00.250Z")
        );
        assert!(value(Kind::Time, "90000").is_err());
    }

    #[test]
    fn bindings_are_typed() {
        let b = bindings(&[
            Param::int(7),
            Param {
                kind: crate::param::ParamKind::TimestampTz,
                value: Some("1970-01-01T00:00:01Z".into()),
            },
            Param {
                kind: crate::param::ParamKind::Date,
                value: Some("1970-01-02".into()),
            },
            Param {
                kind: crate::param::ParamKind::Text,
                value: None,
            },
        ])
        .unwrap();
        assert_eq!(
            b,
            json!({
                "1": {"type": "FIXED", "value": "7"},
                "2": {"type": "TIMESTAMP_TZ", "value": "1000000000 1440"},
                "3": {"type": "DATE", "value": "86400000"},
                "4": {"type": "TEXT", "value": null},
            })
        );
    }
}
