//! BigQuery over its REST API: `jobs.query` with positional (`?`) typed
//! parameters, then `jobs.getQueryResults` while the job runs and for each
//! further page. Ebb authenticates as a service account: it signs a JWT
//! with the key file's private key, trades it at the key's `token_uri` for
//! an access token (the JWT-bearer grant) and reuses that token until
//! shortly before it expires.
//!
//! Rows arrive as `{"f": [{"v": …}]}` with every scalar as text: INT64 as
//! decimal digits, TIMESTAMP as (possibly scientific) epoch seconds, BYTES
//! as base64, JSON as text; RECORD cells nest the same shape and REPEATED
//! cells are lists of `{"v": …}`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use super::error::{Problem, SourceError};
use super::json;
use super::query::{Column, Placeholders};
use super::sql_api::values::{self, BadValue};
use super::sql_api::{self, Failure, Http, Page, Poll, SqlApi};
use crate::config::{self, Settings, Source};
use crate::event::Record;
use crate::param::{Native, Param, ParamKind};

const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// How long one `jobs.query`/`getQueryResults` call waits for the job.
const WAIT_MS: u64 = 10_000;
/// Rows per page asked for (BigQuery also caps a page at 10 MB).
const PAGE_ROWS: u64 = 10_000;
/// A token is renewed this long before BigQuery would refuse it.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

pub struct BigQuery {
    http: Http,
    url: String,
    settings: config::BigQuery,
    timeout_ms: u128,
    token: Option<(String, Instant)>,
    /// The job last run: its id, location and columns.
    job: Option<(String, Option<String>)>,
    fields: Vec<Field>,
}

struct Field {
    name: String,
    repeated: bool,
    kind: Kind,
}

enum Kind {
    Integer,
    Float,
    Decimal,
    Bool,
    String,
    Bytes,
    Date,
    DateTime,
    Time,
    Timestamp,
    Json,
    Record(Vec<Field>),
}

impl BigQuery {
    /// An access token for the service account, fetched when there is none
    /// or it is about to expire.
    async fn token(&mut self, deadline: Instant) -> Result<String, Failure> {
        if let Some((token, until)) = &self.token
            && Instant::now() + TOKEN_MARGIN < *until
        {
            return Ok(token.clone());
        }
        let account = &self.settings.service_account;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let claims = json!({
            "iss": account.client_email,
            "scope": SCOPE,
            "aud": account.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let assertion = account
            .private_key
            .sign(&claims, account.private_key_id.as_deref())
            .map_err(|e| Failure::new(Problem::Authentication, e.to_string()))?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ];
        let reply = self
            .http
            .send(
                |c| c.post(&account.token_uri).form(&form),
                describe_token,
                deadline,
            )
            .await?;
        let token = reply.body["access_token"]
            .as_str()
            .ok_or_else(|| {
                Failure::new(
                    Problem::Authentication,
                    format!("{} answered without an access_token", account.token_uri),
                )
            })?
            .to_string();
        let lifetime = reply.body["expires_in"].as_u64().unwrap_or(3600);
        self.token = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        Ok(token)
    }

    async fn call(
        &mut self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<Value, Failure> {
        let token = self.token(deadline).await?;
        let reply = self
            .http
            .send(|c| build(c).bearer_auth(&token), describe, deadline)
            .await?;
        Ok(reply.body)
    }

    /// `getQueryResults` of the current job, from `page_token` if given.
    async fn results(
        &mut self,
        page_token: Option<&str>,
        deadline: Instant,
    ) -> Result<Value, Failure> {
        let (job, location) = self.job.clone().unwrap_or_default();
        let url = format!(
            "{}/bigquery/v2/projects/{}/queries/{job}",
            self.url, self.settings.project
        );
        let mut query = vec![
            ("timeoutMs", WAIT_MS.to_string()),
            ("maxResults", PAGE_ROWS.to_string()),
        ];
        query.extend(location.map(|l| ("location", l)));
        query.extend(page_token.map(|t| ("pageToken", t.to_string())));
        self.call(|c| c.get(&url).query(&query), deadline).await
    }

    fn rows_page(&self, body: &Value) -> Result<Page, Failure> {
        let rows = body["rows"].as_array().into_iter().flatten();
        let rows = rows
            .map(|row| match record(&self.fields, row) {
                Ok(Value::Object(rec)) => Ok(rec),
                Ok(_) => unreachable!("record() of a row is an object"),
                Err((column, message)) => Err(Failure::value(&column, message)),
            })
            .collect::<Result<Vec<Record>, _>>()?;
        Ok(Page {
            rows,
            next: body["pageToken"].as_str().map(str::to_owned),
        })
    }
}

impl SqlApi for BigQuery {
    const PLACEHOLDERS: Placeholders = Placeholders::Question;
    /// A bare `TIMESTAMP` is an instant here (and Ebb reads it as UTC).
    const BARE_TIMESTAMP: ParamKind = ParamKind::TimestampTz;

    async fn connect(source: &Source) -> Result<BigQuery, SourceError> {
        let Settings::BigQuery(settings) = source.settings.clone() else {
            unreachable!("config gives every bigquery source its settings")
        };
        let mut bq = BigQuery {
            http: Http::new().map_err(|f| f.for_source(&source.name))?,
            url: source.url.clone(),
            settings,
            timeout_ms: source.statement_timeout.as_millis(),
            token: None,
            job: None,
            fields: Vec::new(),
        };
        sql_api::ping(&mut bq, source).await?;
        Ok(bq)
    }

    fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms as u64)
    }

    async fn execute(
        &mut self,
        sql: &str,
        params: &[Param],
        deadline: Instant,
    ) -> Result<(Vec<Column>, Page), Failure> {
        let mut body = json!({
            "query": sql,
            "useLegacySql": false,
            "parameterMode": "POSITIONAL",
            "queryParameters": parameters(params)?,
            "timeoutMs": WAIT_MS,
            "maxResults": PAGE_ROWS,
            "jobTimeoutMs": self.timeout_ms.to_string(),
            "requestId": sql_api::request_id(),
        });
        if let Some(location) = &self.settings.location {
            body["location"] = location.as_str().into();
        }
        let url = format!(
            "{}/bigquery/v2/projects/{}/queries",
            self.url, self.settings.project
        );
        let mut reply = self.call(|c| c.post(&url).json(&body), deadline).await?;
        let job = &reply["jobReference"];
        self.job = Some((
            job["jobId"].as_str().unwrap_or_default().to_string(),
            job["location"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| self.settings.location.clone()),
        ));
        let mut poll = Poll::new();
        while reply["jobComplete"] != Value::Bool(true) {
            if self.job.as_ref().is_none_or(|(id, _)| id.is_empty()) {
                return Err(Failure::new(
                    Problem::Other,
                    "BigQuery answered an unfinished job without a jobReference",
                ));
            }
            poll.wait(deadline).await?;
            reply = self.results(None, deadline).await?;
        }
        let schema = reply["schema"]["fields"].as_array().ok_or_else(|| {
            Failure::new(Problem::Other, "BigQuery's answer has no schema.fields")
        })?;
        self.fields = schema
            .iter()
            .map(|f| field(f, ""))
            .collect::<Result<_, _>>()?;
        let columns = self
            .fields
            .iter()
            .map(|f| Column {
                name: f.name.clone(),
                type_name: type_name(f),
            })
            .collect();
        Ok((columns, self.rows_page(&reply)?))
    }

    async fn page(&mut self, next: &str) -> Result<Page, Failure> {
        let body = self.results(Some(next), sql_api::page_deadline()).await?;
        self.rows_page(&body)
    }

    async fn cancel(&mut self) {
        if let Some((job, location)) = self.job.clone() {
            let url = format!(
                "{}/bigquery/v2/projects/{}/jobs/{job}/cancel",
                self.url, self.settings.project
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            let query: Vec<_> = location.map(|l| ("location", l)).into_iter().collect();
            let _ = self.call(|c| c.post(&url).query(&query), deadline).await;
        }
    }
}

/// The token endpoint's OAuth error body: `{"error", "error_description"}`.
fn describe_token(status: StatusCode, body: &Value) -> (Option<Problem>, String) {
    let message = match (body["error"].as_str(), body["error_description"].as_str()) {
        (Some(e), Some(d)) => format!("the token endpoint refused the service account: {e}: {d}"),
        (Some(e), None) => format!("the token endpoint refused the service account: {e}"),
        _ => format!("the token endpoint refused the service account: {body}"),
    };
    let problem = matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED)
        .then_some(Problem::Authentication);
    (problem, message)
}

/// Google's error body: `{"error": {"message", "errors": [{"reason"}]}}`.
fn describe(_: StatusCode, body: &Value) -> (Option<Problem>, String) {
    let error = &body["error"];
    let message = error["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    let problem = match error["errors"][0]["reason"].as_str().unwrap_or_default() {
        "invalidQuery" | "notFound" | "invalid" => Some(Problem::Sql),
        "accessDenied" => Some(Problem::Permission),
        "authError" | "unauthorized" => Some(Problem::Authentication),
        "timeout" | "jobTimeout" => Some(Problem::Timeout),
        _ => None,
    };
    (problem, message)
}

/// A schema field, or the unsupported type at `path`.
fn field(f: &Value, path: &str) -> Result<Field, Failure> {
    let name = f["name"].as_str().unwrap_or_default().to_string();
    let path = match path {
        "" => name.clone(),
        _ => format!("{path}.{name}"),
    };
    let t = f["type"].as_str().unwrap_or_default();
    let kind = match t {
        "INTEGER" | "INT64" => Kind::Integer,
        "FLOAT" | "FLOAT64" => Kind::Float,
        "NUMERIC" | "BIGNUMERIC" | "DECIMAL" | "BIGDECIMAL" => Kind::Decimal,
        "BOOLEAN" | "BOOL" => Kind::Bool,
        "STRING" => Kind::String,
        "BYTES" => Kind::Bytes,
        "DATE" => Kind::Date,
        "DATETIME" => Kind::DateTime,
        "TIME" => Kind::Time,
        "TIMESTAMP" => Kind::Timestamp,
        "JSON" => Kind::Json,
        "RECORD" | "STRUCT" => Kind::Record(
            f["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|sub| field(sub, &path))
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err(Failure::Unsupported {
                column: path,
                type_name: t.to_string(),
            });
        }
    };
    Ok(Field {
        name,
        repeated: f["mode"] == "REPEATED",
        kind,
    })
}

/// GoogleSQL's spelling of a field's type.
fn type_name(f: &Field) -> String {
    let base = match &f.kind {
        Kind::Integer => "INT64".to_string(),
        Kind::Float => "FLOAT64".to_string(),
        Kind::Decimal => "NUMERIC".to_string(),
        Kind::Bool => "BOOL".to_string(),
        Kind::String => "STRING".to_string(),
        Kind::Bytes => "BYTES".to_string(),
        Kind::Date => "DATE".to_string(),
        Kind::DateTime => "DATETIME".to_string(),
        Kind::Time => "TIME".to_string(),
        Kind::Timestamp => "TIMESTAMP".to_string(),
        Kind::Json => "JSON".to_string(),
        Kind::Record(fields) => format!(
            "STRUCT<{}>",
            fields
                .iter()
                .map(|f| format!("{} {}", f.name, type_name(f)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    match f.repeated {
        true => format!("ARRAY<{base}>"),
        false => base,
    }
}

/// A `{"f": [...]}` row or RECORD cell as a JSON object; errors name the
/// column path.
fn record(fields: &[Field], cell: &Value) -> Result<Value, (String, BadValue)> {
    let cells = cell["f"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = Map::with_capacity(fields.len());
    for (f, c) in fields.iter().zip(cells) {
        let v = cell_value(f, &c["v"]).map_err(|(path, m)| match path.is_empty() {
            true => (f.name.clone(), m),
            false => (format!("{}.{path}", f.name), m),
        })?;
        out.insert(f.name.clone(), v);
    }
    Ok(Value::Object(out))
}

fn cell_value(f: &Field, v: &Value) -> Result<Value, (String, BadValue)> {
    if f.repeated {
        return Ok(Value::Array(
            v.as_array()
                .into_iter()
                .flatten()
                .map(|item| one(f, &item["v"]))
                .collect::<Result<_, _>>()?,
        ));
    }
    one(f, v)
}

fn one(f: &Field, v: &Value) -> Result<Value, (String, BadValue)> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if let Kind::Record(fields) = &f.kind {
        return record(fields, v);
    }
    let text = v
        .as_str()
        .ok_or_else(|| (String::new(), BadValue::NotText(v.clone())))?;
    let scalar = || -> Result<Value, BadValue> {
        Ok(match &f.kind {
            Kind::Integer => values::integer(text)?,
            Kind::Float => values::float(text)?,
            Kind::Decimal => json::decimal(text),
            Kind::Bool => values::boolean(text)?,
            Kind::String => Value::String(text.to_string()),
            Kind::Bytes => values::base64(text)?,
            Kind::Date => values::date(values::parse_date(text)?),
            Kind::DateTime => values::wall_clock(values::parse_wall_clock(text)?),
            Kind::Time => values::time(values::parse_time(text)?),
            Kind::Timestamp => values::instant(values::epoch(text)?),
            Kind::Json => values::nested(text)?,
            Kind::Record(_) => unreachable!("handled above"),
        })
    };
    scalar().map_err(|m| (String::new(), m))
}

/// `queryParameters` for `?` placeholders, in order.
fn parameters(params: &[Param]) -> Result<Value, Failure> {
    params
        .iter()
        .map(|p| {
            let native = sql_api::native(p)?;
            let (kind, value) = match native {
                Native::Int(v) => ("INT64", v.map(|v| v.to_string())),
                Native::Float(v) => ("FLOAT64", v.map(|v| v.to_string())),
                Native::Decimal(v) => ("BIGNUMERIC", v.map(|v| v.to_string())),
                Native::Text(v) => ("STRING", v),
                Native::Bool(v) => ("BOOL", v.map(|v| v.to_string())),
                Native::Timestamp(v) => (
                    "DATETIME",
                    v.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
                ),
                Native::TimestampTz(v) => (
                    "TIMESTAMP",
                    v.map(|t| t.format("%Y-%m-%d %H:%M:%S%.f+00:00").to_string()),
                ),
                Native::Date(v) => ("DATE", v.map(|d| d.to_string())),
            };
            let value = match value {
                Some(v) => json!({ "value": v }),
                None => json!({}),
            };
            Ok(json!({ "parameterType": { "type": kind }, "parameterValue": value }))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_cells_follow_the_schema() {
        let schema = json!([
            {"name": "id", "type": "INTEGER", "mode": "NULLABLE"},
            {"name": "tags", "type": "STRING", "mode": "REPEATED"},
            {"name": "at", "type": "TIMESTAMP"},
            {"name": "addr", "type": "RECORD", "fields": [
                {"name": "zip", "type": "STRING"},
                {"name": "n", "type": "INT64", "mode": "REPEATED"}
            ]}
        ]);
        let fields: Vec<Field> = schema
            .as_array()
            .unwrap()
            .iter()
            .map(|f| field(f, "").unwrap())
            .collect();
        assert_eq!(type_name(&fields[3]), "STRUCT<zip STRING, n ARRAY<INT64>>");
        let row = json!({"f": [
            {"v": "9007199254740993"},
            {"v": [{"v": "a"}, {"v": "b"}]},
            {"v": "1.7145576005E9"},
            {"v": {"f": [{"v": null}, {"v": [{"v": "1"}]}]}}
        ]});
        assert_eq!(
            record(&fields, &row).unwrap(),
            json!({
                "id": "9007199254740993",
                "tags": ["a", "b"],
                "at": "2024-05-01T10:00:00.500Z",
                "addr": {"zip": null, "n": [1]}
            })
        );
        let bad = json!({"f": [{"v": "x"}, {"v": []}, {"v": null}, {"v": {"f": [{"v": null}, {"v": [{"v": "y"}]}]}}]});
        assert_eq!(record(&fields, &bad).unwrap_err().0, "id");
        let bad = json!({"f": [{"v": "1"}, {"v": []}, {"v": null}, {"v": {"f": [{"v": null}, {"v": [{"v": "y"}]}]}}]});
        assert_eq!(record(&fields, &bad).unwrap_err().0, "addr.n");
        assert!(matches!(
            field(&json!({"name": "g", "type": "GEOGRAPHY"}), ""),
            Err(Failure::Unsupported { .. })
        ));
    }
}
