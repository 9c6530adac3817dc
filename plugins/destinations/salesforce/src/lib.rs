//! `ebb:salesforce`: records upserted into one sObject by an external id
//! field, up to 200 a request, with sObject Collections
//! (`PATCH /services/data/vNN.N/composite/sobjects/{object}/{external_id}`,
//! `allOrNone: false`), each record's result mapped back to its event.
//!
//! Authentication is OAuth 2.0: the client credentials flow, or the refresh
//! token flow when `refresh_token` is set. The host keeps one plugin
//! instance per in-flight slot for a whole run, so the access token is
//! fetched once per instance and kept in its state; a request answered 401
//! (`INVALID_SESSION_ID`) fetches a new one and is sent once more. Requests
//! go to `endpoint`, or else to the `instance_url` the token came with.
//!
//! A deleted record is skipped, or with `on_delete = "delete"` deleted:
//! sObject Collections delete by Salesforce id, so the ids are first looked
//! up by external id with one SOQL query a batch. Salesforce answers a
//! spent API allocation with 403 `REQUEST_LIMIT_EXCEEDED`, which is retried
//! like a 429.

use std::cell::RefCell;
use std::collections::HashMap;

use ebb_sdk::http::{self, RequestBuilder, Response};
use ebb_sdk::{Action, Destination, Error, Event, Op, Outcome, Spec};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// sObject Collections take at most 200 records (or ids) a request.
const MAX_RECORDS: usize = 200;
/// Salesforce documents no body limit for sObject Collections; 2 MB keeps
/// 200 records a request small enough to finish well within the 20 s past
/// which a request counts against the org's 25 long-running ones.
const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// The longest `IN (…)` list of a lookup query, in bytes before encoding:
/// percent-encoded it stays under the 16 KB Salesforce allows a URI.
const MAX_SOQL_LIST: usize = 3000;
/// Record errors that say "try again" rather than "this record is wrong".
const RETRYABLE: [&str; 1] = ["UNABLE_TO_LOCK_ROW"];
/// What a config without credentials is told.
const NO_GRANT: &str =
    "set client_secret (client credentials flow) or refresh_token (refresh token flow)";
/// A record error meaning it is already gone, which is what a delete wants.
const ALREADY_DELETED: &str = "ENTITY_IS_DELETED";

struct Salesforce;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_login_url")]
    login_url: String,
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    object: String,
    external_id: String,
    #[serde(default = "default_api_version")]
    api_version: String,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    on_delete: OnDelete,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum OnDelete {
    /// Nothing is sent; the record counts as synced.
    #[default]
    Skip,
    /// The record with the external id is deleted in Salesforce.
    Delete,
}

fn default_login_url() -> String {
    "https://login.salesforce.com".to_owned()
}

fn default_api_version() -> String {
    "62.0".to_owned()
}

impl Destination for Salesforce {
    type Config = Config;

    fn spec() -> Spec {
        Spec {
            config_schema: json!({
                "type": "object",
                "required": ["client_id", "object", "external_id"],
                "additionalProperties": false,
                "properties": {
                    "login_url": { "type": "string", "default": "https://login.salesforce.com", "description": "where tokens come from: https://login.salesforce.com, https://test.salesforce.com for a sandbox, or your My Domain URL (needed for client credentials)" },
                    "client_id": { "type": "string", "minLength": 1, "description": "the connected app's consumer key" },
                    "client_secret": { "type": "string", "description": "the connected app's consumer secret; use ${env:…}" },
                    "refresh_token": { "type": "string", "description": "a refresh token: uses the refresh token flow instead of client credentials; use ${env:…}" },
                    "object": { "type": "string", "minLength": 1, "description": "the sObject's API name, such as Contact or Customer__c" },
                    "external_id": { "type": "string", "minLength": 1, "description": "the API name of its external id field, such as External_Id__c; its value is the record's key unless a mapped field gives it" },
                    "api_version": { "type": "string", "default": "62.0", "description": "the REST API version, such as 62.0" },
                    "endpoint": { "type": "string", "description": "base URL of the org (its instance URL); default: the instance_url the token comes with" },
                    "on_delete": { "enum": ["skip", "delete"], "default": "skip", "description": "what a deleted record does: nothing, or delete the Salesforce record" }
                }
            }),
            actions: vec![Action::new(
                "upsert",
                "create or update records of `object` by `external_id`",
            )],
            max_batch_records: MAX_RECORDS,
            max_batch_bytes: MAX_BATCH_BYTES,
            hosts: vec!["login.salesforce.com".to_owned()],
            ..Spec::new("salesforce", env!("CARGO_PKG_VERSION"))
        }
    }

    fn validate(config: &Config) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let urls = [
            ("login_url", Some(&config.login_url)),
            ("endpoint", config.endpoint.as_ref()),
        ];
        for (key, url) in urls {
            problems.extend(url.and_then(|url| http::url_problem(key, url)));
        }
        if config.client_id.is_empty() {
            problems.push("client_id is empty; set the connected app's consumer key".into());
        }
        if grant(config).is_none() {
            problems.push(NO_GRANT.into());
        }
        for (key, name) in [
            ("object", &config.object),
            ("external_id", &config.external_id),
        ] {
            if !is_api_name(name) {
                problems.push(format!(
                    "{key} must be an API name (letters, digits and _, starting with a letter) such as Contact or External_Id__c, got {name:?}"
                ));
            }
        }
        if !is_version(&config.api_version) {
            problems.push(format!(
                "api_version must be a version such as 62.0, got {:?}",
                config.api_version
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn write(config: &Config, _action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        let mut outcomes = vec![Outcome::Ok; batch.len()];
        let (deleted, present): (Vec<usize>, Vec<usize>) =
            (0..batch.len()).partition(|&i| batch[i].op == Op::Deleted);
        for chunk in present.chunks(MAX_RECORDS) {
            upsert(config, &batch, chunk, &mut outcomes);
        }
        if config.on_delete == OnDelete::Delete {
            for chunk in deleted.chunks(MAX_RECORDS) {
                delete(config, &batch, chunk, &mut outcomes);
            }
        }
        Ok(outcomes)
    }
}

fn is_api_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_version(version: &str) -> bool {
    version.split_once('.').is_some_and(|(major, minor)| {
        [major, minor]
            .iter()
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
    })
}

// Authentication: the OAuth token and the requests that carry it.

/// The OAuth grant the config asks for: its form fields but the client's.
fn grant(config: &Config) -> Option<Vec<(&'static str, &str)>> {
    let secret = given(&config.client_secret).map(|s| ("client_secret", s));
    match given(&config.refresh_token) {
        Some(token) => Some(
            [("grant_type", "refresh_token"), ("refresh_token", token)]
                .into_iter()
                .chain(secret)
                .collect(),
        ),
        None => secret.map(|secret| vec![("grant_type", "client_credentials"), secret]),
    }
}

/// A secret the config sets to something (`${env:…}` of an unset
/// variable may leave it empty).
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// An access token and the org it opens.
#[derive(Clone, Deserialize)]
struct Session {
    access_token: String,
    instance_url: String,
}

thread_local! {
    /// The instance's session, with the login URL and client it is for. A
    /// component runs on one thread, so this is the instance's state; unit
    /// tests each run on a thread of their own, so they share nothing.
    static SESSION: RefCell<Option<(String, Session)>> = const { RefCell::new(None) };
}

/// The kept session, or a new one when there is none or `renew` is set.
fn session(config: &Config, renew: bool) -> Result<Session, Error> {
    let key = format!("{} {}", config.login_url, config.client_id);
    let kept = SESSION.with_borrow(|kept| {
        kept.as_ref()
            .filter(|(for_key, _)| !renew && *for_key == key)
            .map(|(_, session)| session.clone())
    });
    if let Some(session) = kept {
        return Ok(session);
    }
    let session = fetch_token(config)?;
    SESSION.set(Some((key, session.clone())));
    Ok(session)
}

/// `POST {login_url}/services/oauth2/token` with the config's grant.
fn fetch_token(config: &Config) -> Result<Session, Error> {
    let grant = grant(config).ok_or_else(|| Error::invalid_config(NO_GRANT))?;
    let url = format!(
        "{}/services/oauth2/token",
        config.login_url.trim_end_matches('/')
    );
    let form = grant
        .into_iter()
        .chain([("client_id", config.client_id.as_str())]);
    let response = http::post(url).form(form).send()?;
    if let Some(error) = response.error() {
        return Err(token_error(&response, error));
    }
    response.json()
}

/// An OAuth error body: `{"error": "invalid_client", "error_description": "…"}`.
#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// A refused grant (400 or 401 with an OAuth error) is an auth error that
/// says what to check; anything else keeps its status's meaning.
fn token_error(response: &Response, error: Error) -> Error {
    match response.json::<OAuthError>() {
        Ok(oauth) if matches!(response.status, 400 | 401) => Error::auth(format!(
            "Salesforce refused the OAuth grant: {}: {}; check client_id, client_secret or \
             refresh_token, and login_url (client credentials need your My Domain URL)",
            oauth.error, oauth.error_description
        )),
        _ => error,
    }
}

/// Sends the request `build` makes for the org's data URL
/// (`…/services/data/vNN.N`) with the session's token; answered 401, it
/// is sent once more with a new token. A non-2xx answer is an error.
fn send(config: &Config, build: impl Fn(&str) -> RequestBuilder) -> Result<Response, Error> {
    let mut response = send_as(config, &session(config, false)?, &build)?;
    if response.status == 401 {
        response = send_as(config, &session(config, true)?, &build)?;
    }
    match failure(&response) {
        Some(error) => Err(error),
        None => Ok(response),
    }
}

fn send_as(
    config: &Config,
    session: &Session,
    build: impl Fn(&str) -> RequestBuilder,
) -> Result<Response, Error> {
    let base = config.endpoint.as_deref().unwrap_or(&session.instance_url);
    let data = format!(
        "{}/services/data/v{}",
        base.trim_end_matches('/'),
        config.api_version
    );
    build(&data).bearer(&session.access_token).send()
}

/// A REST API error: `[{"message": "…", "errorCode": "…"}]`.
#[derive(Deserialize)]
struct ApiError {
    #[serde(rename = "errorCode")]
    error_code: String,
}

/// The error a non-2xx answer stands for: `REQUEST_LIMIT_EXCEEDED` (403)
/// is a rate limit, the rest as their status says.
fn failure(response: &Response) -> Option<Error> {
    let error = response.error()?;
    let errors: Vec<ApiError> = serde_json::from_slice(&response.body).unwrap_or_default();
    if errors
        .iter()
        .any(|e| e.error_code == "REQUEST_LIMIT_EXCEEDED")
    {
        return Some(Error::rate_limited(
            format!(
                "Salesforce's API request limit is reached ({}); the org's allocation is shared by all its integrations",
                response.body_snippet()
            ),
            response.retry_after_ms(),
        ));
    }
    Some(error)
}

// Upserts and deletes.

/// One record's result, from an upsert or a delete.
#[derive(Deserialize)]
struct SaveResult {
    success: bool,
    #[serde(default)]
    errors: Vec<SaveError>,
}

#[derive(Deserialize)]
struct SaveError {
    #[serde(rename = "statusCode")]
    status_code: String,
    message: String,
    #[serde(default)]
    fields: Vec<String>,
}

/// The external id value of an event: its mapped field, else (for a
/// deletion) its last delivered one, else the record's key.
fn external_id(config: &Config, event: &Event) -> Value {
    [Some(&event.fields), event.previous.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|fields| fields.get(&config.external_id).filter(|v| !v.is_null()))
        .cloned()
        .unwrap_or_else(|| event.id.clone().into())
}

/// The sObject an event becomes: its fields, the external id and the type.
fn record(config: &Config, event: &Event) -> Value {
    let attributes = json!({ "type": config.object });
    let mut record = Map::new();
    record.insert("attributes".into(), attributes.clone());
    record.insert(config.external_id.clone(), external_id(config, event));
    record.extend(event.fields.clone());
    // Set again, so a field named `attributes` cannot change the type.
    record.insert("attributes".into(), attributes);
    Value::Object(record)
}

/// Upserts the events at `indexes` in one request.
fn upsert(config: &Config, batch: &[Event], indexes: &[usize], outcomes: &mut [Outcome]) {
    let records: Vec<Value> = indexes.iter().map(|&i| record(config, &batch[i])).collect();
    let body = json!({ "allOrNone": false, "records": records });
    let path = format!(
        "composite/sobjects/{}/{}",
        config.object, config.external_id
    );
    let results = send(config, |data| {
        http::patch(format!("{data}/{path}")).json(&body)
    })
    .and_then(|response| results(&response, indexes.len()));
    match results {
        Ok(results) => {
            for (&i, result) in indexes.iter().zip(&results) {
                outcomes[i] = outcome(result);
            }
        }
        Err(error) => fail(outcomes, indexes, &error),
    }
}

/// Deletes the Salesforce records of the deleted events at `indexes`: their
/// ids looked up by external id, then deleted in one request. A record
/// Salesforce does not have is already where a delete would leave it.
fn delete(config: &Config, batch: &[Event], indexes: &[usize], outcomes: &mut [Outcome]) {
    let values: Vec<Value> = indexes
        .iter()
        .map(|&i| external_id(config, &batch[i]))
        .collect();
    let found = match lookup(config, &values) {
        Ok(found) => found,
        Err(error) => return fail(outcomes, indexes, &error),
    };
    let targets: Vec<(usize, &String)> = indexes
        .iter()
        .zip(&values)
        .filter_map(|(&i, value)| found.get(&match_key(value)).map(|id| (i, id)))
        .collect();
    if targets.is_empty() {
        return;
    }
    let ids: Vec<&str> = targets.iter().map(|(_, id)| id.as_str()).collect();
    let ids = ids.join(",");
    let sent: Vec<usize> = targets.iter().map(|&(i, _)| i).collect();
    let results = send(config, |data| {
        http::delete(format!("{data}/composite/sobjects"))
            .query("ids", &ids)
            .query("allOrNone", "false")
    })
    .and_then(|response| results(&response, sent.len()));
    match results {
        Ok(results) => {
            for (&i, result) in sent.iter().zip(&results) {
                let gone = result
                    .errors
                    .iter()
                    .any(|e| e.status_code == ALREADY_DELETED);
                outcomes[i] = if gone { Outcome::Ok } else { outcome(result) };
            }
        }
        Err(error) => fail(outcomes, &sent, &error),
    }
}

/// The Salesforce ids of the records whose external id is one of `values`,
/// keyed by [`match_key`], with as few queries as the URI limit allows.
fn lookup(config: &Config, values: &[Value]) -> Result<HashMap<String, String>, Error> {
    let field = &config.external_id;
    let mut found = HashMap::new();
    let mut literals = values.iter().map(soql_literal).peekable();
    while literals.peek().is_some() {
        let mut list: Vec<String> = Vec::new();
        let mut bytes = 0;
        while let Some(literal) =
            literals.next_if(|l| list.is_empty() || bytes + l.len() < MAX_SOQL_LIST)
        {
            bytes += literal.len() + 1;
            list.push(literal);
        }
        let soql = format!(
            "SELECT Id, {field} FROM {} WHERE {field} IN ({})",
            config.object,
            list.join(",")
        );
        let response = send(config, |data| {
            http::get(format!("{data}/query")).query("q", &soql)
        })?;
        let answer: QueryResult = response.json()?;
        for record in answer.records {
            if let (Some(Value::String(id)), Some(value)) = (record.get("Id"), record.get(field)) {
                found.insert(match_key(value), id.clone());
            }
        }
    }
    Ok(found)
}

/// A query's answer: `{"totalSize": n, "done": true, "records": […]}`.
#[derive(Deserialize)]
struct QueryResult {
    records: Vec<Map<String, Value>>,
}

/// A value as a SOQL literal: numbers as they are, anything else quoted.
fn soql_literal(value: &Value) -> String {
    let text = match value {
        Value::Number(n) => return n.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for c in text.chars() {
        match c {
            '\'' | '\\' | '"' => quoted.extend(['\\', c]),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            _ => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

/// How an external id is compared with the one Salesforce answers: as
/// text, ignoring case, as Salesforce matches external ids.
fn match_key(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_lowercase(),
        other => other.to_string().to_lowercase(),
    }
}

/// The per-record results of a 2xx answer, one per record sent, in order.
fn results(response: &Response, expected: usize) -> Result<Vec<SaveResult>, Error> {
    let results: Vec<SaveResult> = response.json()?;
    if results.len() != expected {
        return Err(Error::internal(format!(
            "Salesforce answered {} results for {expected} records",
            results.len()
        )));
    }
    Ok(results)
}

/// A record's outcome: delivered, retried for a lock, or refused quoting
/// Salesforce's reasons.
fn outcome(result: &SaveResult) -> Outcome {
    if result.success {
        return Outcome::Ok;
    }
    let reasons: Vec<String> = result
        .errors
        .iter()
        .map(|e| match e.fields.as_slice() {
            [] => format!("{}: {}", e.status_code, e.message),
            fields => format!(
                "{}: {} (fields: {})",
                e.status_code,
                e.message,
                fields.join(", ")
            ),
        })
        .collect();
    let message = format!("Salesforce refused the record: {}", reasons.join("; "));
    if result
        .errors
        .iter()
        .any(|e| RETRYABLE.contains(&e.status_code.as_str()))
    {
        Outcome::Retry(Error::transient(message))
    } else {
        Outcome::Reject(Error::rejected(message))
    }
}

fn fail(outcomes: &mut [Outcome], indexes: &[usize], error: &Error) {
    for &i in indexes {
        outcomes[i] = Outcome::from(error.clone());
    }
}

ebb_sdk::export_destination!(Salesforce);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::ErrorKind;
    use ebb_sdk::testing::{self, MockHttp, Reply};
    use http::Method;

    const TOKEN_PATH: &str = "/services/oauth2/token";
    const UPSERT_PATH: &str = "/services/data/v62.0/composite/sobjects/Contact/External_Id__c";

    fn config() -> Value {
        json!({
            "login_url": "https://login.example",
            "client_id": "cid",
            "client_secret": "cs",
            "object": "Contact",
            "external_id": "External_Id__c",
        })
    }

    /// A token endpoint handing out `token` for the org at `https://org.example`.
    fn token(token: &str) -> Reply {
        Reply::status(200).json(&json!({
            "access_token": token,
            "instance_url": "https://org.example",
            "token_type": "Bearer",
        }))
    }

    fn ok(n: usize) -> Reply {
        let results: Vec<Value> = (0..n)
            .map(|i| json!({"id": format!("003{i}"), "success": true, "created": true, "errors": []}))
            .collect();
        Reply::status(200).json(&results)
    }

    fn contacts(ids: impl IntoIterator<Item = usize>) -> Vec<Event> {
        ids.into_iter()
            .map(|i| {
                testing::event(
                    Op::Added,
                    i.to_string(),
                    json!({"LastName": format!("L{i}")}),
                )
            })
            .collect()
    }

    fn upserts(mock: &MockHttp) -> Vec<http::Request> {
        mock.requests()
            .into_iter()
            .filter(|r| r.path() != TOKEN_PATH)
            .collect()
    }

    #[test]
    fn upserts_by_external_id_with_a_client_credentials_token() {
        let mock = MockHttp::new()
            .route(Method::POST, TOKEN_PATH, token("t1"))
            .reply(ok(2));
        let mut batch = contacts([1]);
        batch.push(testing::event(
            Op::Updated,
            "2",
            json!({"LastName": "Lovelace", "External_Id__c": "ada"}),
        ));
        let outcomes = testing::write::<Salesforce>(config(), "upsert", batch);
        assert_eq!(outcomes, Ok(vec![Outcome::Ok, Outcome::Ok]));

        let requests = mock.requests();
        let grant = &requests[0];
        assert_eq!(grant.url(), "https://login.example/services/oauth2/token");
        assert_eq!(
            grant.form_pairs(),
            [
                ("grant_type".to_owned(), "client_credentials".to_owned()),
                ("client_secret".to_owned(), "cs".to_owned()),
                ("client_id".to_owned(), "cid".to_owned()),
            ]
        );
        let upsert = &requests[1];
        assert_eq!(upsert.method(), Method::PATCH);
        assert_eq!(upsert.url(), format!("https://org.example{UPSERT_PATH}"));
        assert_eq!(upsert.header("authorization"), Some("Bearer t1"));
        assert_eq!(
            upsert.body_json::<Value>().unwrap(),
            json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Contact"}, "External_Id__c": "1", "LastName": "L1"},
                {"attributes": {"type": "Contact"}, "External_Id__c": "ada", "LastName": "Lovelace"},
            ]})
        );
    }

    #[test]
    fn the_token_is_fetched_once_and_endpoint_overrides_the_instance() {
        let mock = MockHttp::new()
            .route(Method::POST, TOKEN_PATH, token("t1"))
            .route(Method::PATCH, UPSERT_PATH, ok(1));
        let mut config = config();
        config["refresh_token"] = "rt".into();
        config["endpoint"] = "https://acme.my.example/".into();
        for _ in 0..2 {
            let outcomes = testing::write::<Salesforce>(config.clone(), "upsert", contacts([1]));
            assert_eq!(outcomes, Ok(vec![Outcome::Ok]));
        }
        let requests = mock.requests();
        assert_eq!(requests.len(), 3, "one token, two upserts");
        assert_eq!(
            requests[0].form_pairs(),
            [
                ("grant_type".to_owned(), "refresh_token".to_owned()),
                ("refresh_token".to_owned(), "rt".to_owned()),
                ("client_secret".to_owned(), "cs".to_owned()),
                ("client_id".to_owned(), "cid".to_owned()),
            ]
        );
        assert_eq!(
            requests[2].url(),
            format!("https://acme.my.example{UPSERT_PATH}")
        );
    }

    #[test]
    fn an_expired_session_is_renewed_once() {
        let expired = Reply::status(401).json(
            &json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
        );
        let mock = MockHttp::new()
            .reply(token("old"))
            .reply(expired.clone())
            .reply(token("new"))
            .reply(ok(1))
            .reply(expired.clone())
            .reply(token("newer"))
            .reply(expired);
        let outcomes = testing::write::<Salesforce>(config(), "upsert", contacts([1]));
        assert_eq!(outcomes, Ok(vec![Outcome::Ok]));
        let auth: Vec<_> = mock
            .requests()
            .iter()
            .map(|r| r.header("authorization").map(str::to_owned))
            .collect();
        assert_eq!(auth[1].as_deref(), Some("Bearer old"));
        assert_eq!(auth[3].as_deref(), Some("Bearer new"));

        // Refused again with a new token: an auth error, not a loop.
        let outcomes = testing::write::<Salesforce>(config(), "upsert", contacts([1])).unwrap();
        assert!(
            matches!(&outcomes[0], Outcome::Reject(e) if e.kind == ErrorKind::Auth && e.message.contains("INVALID_SESSION_ID")),
            "{outcomes:?}"
        );
    }

    #[test]
    fn a_refused_grant_rejects_the_batch_without_sending_it() {
        let mock = MockHttp::new().reply(Reply::status(400).json(
            &json!({"error": "invalid_client", "error_description": "invalid client credentials"}),
        ));
        let outcomes = testing::write::<Salesforce>(config(), "upsert", contacts([1, 2])).unwrap();
        for outcome in &outcomes {
            assert!(
                matches!(outcome, Outcome::Reject(e) if e.kind == ErrorKind::Auth
                    && e.message.contains("invalid_client: invalid client credentials")),
                "{outcome:?}"
            );
        }
        assert_eq!(mock.requests().len(), 1);
    }

    #[test]
    fn each_result_answers_for_its_own_record() {
        let _mock = MockHttp::new()
            .route(Method::POST, TOKEN_PATH, token("t"))
            .reply(Reply::status(200).json(&json!([
                {"id": "0031", "success": true, "created": false, "errors": []},
                {"success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING",
                    "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]},
                {"success": false, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW",
                    "message": "unable to obtain exclusive access to this record", "fields": []}]},
            ])));
        let outcomes =
            testing::write::<Salesforce>(config(), "upsert", contacts([1, 2, 3])).unwrap();
        assert_eq!(outcomes[0], Outcome::Ok);
        assert_eq!(
            outcomes[1],
            Outcome::Reject(Error::rejected(
                "Salesforce refused the record: REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] (fields: LastName)"
            ))
        );
        assert!(matches!(&outcomes[2], Outcome::Retry(e) if e.kind == ErrorKind::Transient));
    }

    #[test]
    fn limits_and_outages_retry_the_batch() {
        let _mock = MockHttp::new()
            .route(Method::POST, TOKEN_PATH, token("t"))
            .reply(Reply::status(403).json(
                &json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
            ))
            .reply(Reply::status(429).header("Retry-After", "5"))
            .respond(503, "down")
            .reply(Reply::status(400).json(
                &json!([{"message": "sObject type 'Contct' is not supported.", "errorCode": "INVALID_TYPE"}]),
            ));
        let kinds: Vec<Outcome> = (0..4)
            .map(|_| {
                testing::write::<Salesforce>(config(), "upsert", contacts([1]))
                    .unwrap()
                    .remove(0)
            })
            .collect();
        assert!(
            matches!(&kinds[0], Outcome::Retry(e) if e.kind == ErrorKind::RateLimited && e.message.contains("request limit")),
            "{kinds:?}"
        );
        assert_eq!(
            kinds[1],
            Outcome::Retry(Error::rate_limited("HTTP 429", Some(5000)))
        );
        assert!(matches!(&kinds[2], Outcome::Retry(e) if e.kind == ErrorKind::Transient));
        assert!(matches!(&kinds[3], Outcome::Reject(e) if e.message.contains("INVALID_TYPE")));
    }

    #[test]
    fn batches_are_sent_200_records_a_request() {
        let mock = MockHttp::new()
            .route(Method::POST, TOKEN_PATH, token("t"))
            .reply(ok(200))
            .reply(ok(200))
            .reply(ok(50));
        let outcomes = testing::write::<Salesforce>(config(), "upsert", contacts(0..450)).unwrap();
        assert!(outcomes.iter().all(|o| *o == Outcome::Ok));
        let sizes: Vec<usize> = upserts(&mock)
            .iter()
            .map(|r| {
                r.body_json::<Value>().unwrap()["records"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(sizes, [200, 200, 50]);
        let spec = testing::spec::<Salesforce>().unwrap();
        assert_eq!(
            (spec.max_batch_records, spec.max_batch_bytes),
            (200, MAX_BATCH_BYTES)
        );
    }

    #[test]
    fn deletions_are_skipped_by_default() {
        let mock = MockHttp::new();
        let outcomes = testing::write::<Salesforce>(
            config(),
            "upsert",
            vec![testing::deleted("1", json!({}))],
        );
        assert_eq!(outcomes, Ok(vec![Outcome::Ok]));
        assert!(mock.requests().is_empty());
    }

    #[test]
    fn deletions_look_up_ids_then_delete_them() {
        let mock = MockHttp::new()
            .route(Method::POST, TOKEN_PATH, token("t"))
            .reply(Reply::status(200).json(&json!({"totalSize": 2, "done": true, "records": [
                {"attributes": {"type": "Contact"}, "Id": "0031", "External_Id__c": "1"},
                {"attributes": {"type": "Contact"}, "Id": "0033", "External_Id__c": "O'Neil"},
            ]})))
            .reply(Reply::status(200).json(&json!([
                {"id": "0031", "success": true, "errors": []},
                {"success": false, "errors": [{"statusCode": "DELETE_FAILED", "message": "in use", "fields": []}]},
            ])));
        let mut config = config();
        config["on_delete"] = "delete".into();
        let batch = vec![
            testing::deleted("1", json!({})),
            testing::deleted("2", json!({})),
            testing::deleted("3", json!({"External_Id__c": "o'neil"})),
        ];
        let outcomes = testing::write::<Salesforce>(config, "upsert", batch).unwrap();
        assert_eq!(outcomes[..2], [Outcome::Ok, Outcome::Ok], "2 was not there");
        assert!(
            matches!(&outcomes[2], Outcome::Reject(e) if e.message.contains("DELETE_FAILED: in use"))
        );

        let requests = upserts(&mock);
        assert_eq!(requests[0].path(), "/services/data/v62.0/query");
        assert_eq!(
            requests[0].query("q").as_deref(),
            Some(
                "SELECT Id, External_Id__c FROM Contact WHERE External_Id__c IN ('1','2','o\\'neil')"
            )
        );
        assert_eq!(requests[1].method(), Method::DELETE);
        assert_eq!(
            requests[1].path(),
            "/services/data/v62.0/composite/sobjects"
        );
        assert_eq!(requests[1].query("ids").as_deref(), Some("0031,0033"));
        assert_eq!(requests[1].query("allOrNone").as_deref(), Some("false"));
        assert_eq!(requests[1].header("authorization"), Some("Bearer t"));
    }

    #[test]
    fn long_lookups_are_split_to_fit_the_uri() {
        let mock = MockHttp::new()
            .route(Method::POST, TOKEN_PATH, token("t"))
            .route(
                Method::GET,
                "/services/data/v62.0/query",
                Reply::status(200).json(&json!({"records": []})),
            );
        let mut config = config();
        config["on_delete"] = "delete".into();
        let batch: Vec<Event> = (0..200)
            .map(|i| testing::deleted(format!("{i:0>40}"), json!({})))
            .collect();
        let outcomes = testing::write::<Salesforce>(config, "upsert", batch).unwrap();
        assert!(outcomes.iter().all(|o| *o == Outcome::Ok));
        let queries = upserts(&mock);
        assert!(queries.len() >= 3, "{} queries", queries.len());
        assert!(queries.iter().all(|q| q.url().len() < 16 * 1024));
    }

    #[test]
    fn configs_are_checked_naming_the_key() {
        assert_eq!(testing::validate::<Salesforce>(config()), Ok(()));
        let mut bad = config();
        bad["client_secret"] = "".into();
        bad["object"] = "Contact; DROP".into();
        bad["api_version"] = "v62".into();
        bad["endpoint"] = "org.example".into();
        let problems = testing::validate::<Salesforce>(bad).unwrap_err();
        for key in ["endpoint", "client_secret", "object", "api_version"] {
            assert!(
                problems.iter().any(|p| p.contains(key)),
                "{key}: {problems:?}"
            );
        }
        let spec = testing::spec::<Salesforce>().unwrap();
        let properties = spec.config_schema["properties"].as_object().unwrap();
        assert_eq!(properties.len(), 9);
        assert!(properties.values().all(|p| p["description"].is_string()));
    }
}
