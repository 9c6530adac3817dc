//! `ebb:hubspot`: records as HubSpot CRM objects (contacts, companies,
//! deals, custom objects), created or updated in batches by
//! `POST {endpoint}/crm/v3/objects/{object}/batch/upsert` with a private
//! app's access token as the Bearer credential.
//!
//! HubSpot matches each input on `id_property`, a property with unique
//! values (`email` for contacts, a custom unique property otherwise): its
//! value is the record's field of that name, else the record's key, so an
//! upsert sent twice changes nothing. Every other field is a property, sent
//! as the string HubSpot's reference gives properties: numbers and booleans
//! as text, null as `""` (which clears the property), a list of plain
//! values as HubSpot's multi-select `a;b`. A nested object has no property
//! to go to and is refused for its record alone, as is a value over
//! HubSpot's 65,536 characters.
//!
//! A request holds at most 100 inputs (HubSpot's batch limit) and never
//! the same id twice (HubSpot refuses the whole batch then; the later one
//! goes in a later request, so the last change wins). A 207 answer names
//! the inputs it refused by id in each error's `context`: those records are
//! rejected, the rest delivered. An error that names no input of the
//! request cannot be pinned on one, so it rejects every record of the
//! request; upserts being idempotent, sending the delivered ones again next
//! run is harmless.
//!
//! A deleted record is skipped, or with `on_delete = "archive"` moved to
//! HubSpot's recycling bin. The archive endpoint takes HubSpot's own object
//! ids only, so the ids are first read by `id_property` with
//! `POST …/batch/read`; a record HubSpot does not have is already gone.
//!
//! A 429 is retried after the wait HubSpot's rate headers imply (see
//! [`rate_limit_wait_ms`]).

use ebb_sdk::http::{self, Response};
use ebb_sdk::spec::Rate;
use ebb_sdk::{Action, Destination, Error, ErrorKind, Event, Op, Outcome, Record, Spec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// HubSpot's limits: inputs in one batch request, characters in one
/// property value.
const MAX_INPUTS: usize = 100;
const MAX_VALUE_CHARS: usize = 65_536;

struct Hubspot;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    token: String,
    object: String,
    id_property: String,
    #[serde(default = "default_endpoint")]
    endpoint: String,
    #[serde(default)]
    on_delete: OnDelete,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum OnDelete {
    /// Nothing is sent; the record counts as synced.
    #[default]
    Skip,
    /// The HubSpot object is archived (moved to the recycling bin).
    Archive,
}

fn default_endpoint() -> String {
    "https://api.hubapi.com".to_owned()
}

/// One input of a batch upsert, as HubSpot's reference spells it.
#[derive(Serialize)]
struct Input {
    #[serde(rename = "idProperty")]
    id_property: String,
    id: String,
    properties: Map<String, Value>,
}

/// A record of the batch and the `id_property` value naming it in HubSpot.
type Named = (usize, String);

impl Destination for Hubspot {
    type Config = Config;

    fn spec() -> Spec {
        Spec {
            config_schema: json!({
                "type": "object",
                "required": ["token", "object", "id_property"],
                "additionalProperties": false,
                "properties": {
                    "token": { "type": "string", "minLength": 1, "description": "a private app's access token, with write access to the object; use ${env:…}" },
                    "object": { "type": "string", "minLength": 1, "description": "the object type: contacts, companies, deals, or a custom object's name or 2-… id" },
                    "id_property": { "type": "string", "minLength": 1, "description": "the unique property HubSpot matches records on (email for contacts); its value is the record's field of that name, else the record's key" },
                    "endpoint": { "type": "string", "description": "base URL (default https://api.hubapi.com)" },
                    "on_delete": { "enum": ["skip", "archive"], "default": "skip", "description": "skip: a deleted record sends nothing; archive: its HubSpot object is archived" }
                }
            }),
            actions: vec![Action::new(
                "upsert",
                "create or update HubSpot objects, matched on id_property",
            )],
            max_batch_records: MAX_INPUTS,
            hosts: vec!["api.hubapi.com".to_owned()],
            // A private app on Professional and Enterprise: 190 requests
            // per 10 seconds.
            rate: Some(Rate::requests(19.0)),
            ..Spec::new("hubspot", env!("CARGO_PKG_VERSION"))
        }
    }

    fn validate(config: &Config) -> Result<(), Vec<String>> {
        let mut problems: Vec<String> = http::url_problem("endpoint", &config.endpoint)
            .into_iter()
            .collect();
        if config.token.trim().is_empty() {
            problems.push(
                "token is empty: set it to a private app's access token, token = \"${env:HUBSPOT_TOKEN}\""
                    .to_owned(),
            );
        }
        let object = &config.object;
        if object.is_empty()
            || !object
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            problems.push(format!(
                "object must be a HubSpot object type (contacts, companies, deals, or a custom \
                 object's name or 2-… id), got {object:?}"
            ));
        }
        if config.id_property.trim().is_empty() {
            problems.push(
                "id_property is empty: name the unique property HubSpot matches records on (email for contacts)"
                    .to_owned(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn write(config: &Config, _action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        let mut outcomes = vec![Outcome::Ok; batch.len()];
        let mut upserts = Vec::new();
        let mut deletions = Vec::new();
        for (i, event) in batch.iter().enumerate() {
            let planned = match (event.op, config.on_delete) {
                (Op::Deleted, OnDelete::Skip) => continue,
                (Op::Deleted, OnDelete::Archive) => {
                    let fields = event.previous.as_ref().unwrap_or(&event.fields);
                    id_value(config, fields, &event.id).map(|id| deletions.push((i, id)))
                }
                _ => input(config, event).map(|input| upserts.push((i, input))),
            };
            if let Err(error) = planned {
                outcomes[i] = Outcome::Reject(error);
            }
        }
        for request in requests(upserts) {
            upsert(config, &request, &mut outcomes);
        }
        for request in deletions.chunks(MAX_INPUTS) {
            archive(config, request, &mut outcomes);
        }
        Ok(outcomes)
    }
}

/// The upsert input an event becomes; `properties` always carries
/// `id_property`, so an object HubSpot creates has it.
fn input(config: &Config, event: &Event) -> Result<Input, Error> {
    let id = id_value(config, &event.fields, &event.id)?;
    let mut properties = Map::new();
    for (name, value) in &event.fields {
        properties.insert(name.clone(), Value::String(property(name, value)?));
    }
    properties
        .entry(config.id_property.clone())
        .or_insert_with(|| Value::String(id.clone()));
    Ok(Input {
        id_property: config.id_property.clone(),
        id,
        properties,
    })
}

/// The value of `id_property` naming the record in HubSpot: the field of
/// that name when the record has one, else the record's key.
fn id_value(config: &Config, fields: &Record, key: &str) -> Result<String, Error> {
    let name = &config.id_property;
    match fields.get(name) {
        None => Ok(key.to_owned()),
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        Some(other) => Err(Error::rejected(format!(
            "`{name}` is {other}, but HubSpot matches records on it (id_property): give the \
             record a value, or leave `{name}` out of the mapping to match on the record's key"
        ))),
    }
}

/// A field as the string HubSpot takes for a property.
fn property(name: &str, value: &Value) -> Result<String, Error> {
    let text = match value {
        Value::Array(items) => items
            .iter()
            .map(plain)
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(";")),
        value => plain(value),
    };
    let Some(text) = text else {
        return Err(Error::rejected(format!(
            "`{name}` holds a nested object or list, which no HubSpot property takes: map its parts to \
             properties of their own (mapping = {{ \"city\" = \"{name}.city\" }})"
        )));
    };
    let chars = text.chars().count();
    if chars > MAX_VALUE_CHARS {
        return Err(Error::rejected(format!(
            "`{name}` is {chars} characters long, over HubSpot's limit of {MAX_VALUE_CHARS} for a property value"
        )));
    }
    Ok(text)
}

/// A plain JSON value as text (null clears a property, so it is `""`);
/// `None` for an object or a list.
fn plain(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some(String::new()),
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// The inputs cut into requests HubSpot accepts: at most 100 each, and no
/// id twice in one (the later input starts a new request, so the last
/// change is applied last).
fn requests(inputs: Vec<(usize, Input)>) -> Vec<Vec<(usize, Input)>> {
    let mut requests: Vec<Vec<(usize, Input)>> = Vec::new();
    for (i, input) in inputs {
        let fits = requests.last().is_some_and(|request| {
            request.len() < MAX_INPUTS && !request.iter().any(|(_, o)| same_id(&o.id, &input.id))
        });
        if !fits {
            requests.push(Vec::new());
        }
        if let Some(request) = requests.last_mut() {
            request.push((i, input));
        }
    }
    requests
}

/// Whether two `id_property` values name one HubSpot object: HubSpot keeps
/// emails in lower case, so case does not count.
fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Upserts one request's inputs, writing each record's outcome.
fn upsert(config: &Config, request: &[(usize, Input)], outcomes: &mut [Outcome]) {
    let inputs: Vec<&Input> = request.iter().map(|(_, input)| input).collect();
    let named: Vec<(usize, &str)> = request
        .iter()
        .map(|(i, input)| (*i, input.id.as_str()))
        .collect();
    let response = match send(config, "upsert", &json!({ "inputs": inputs })) {
        Ok(response) => response,
        Err(error) => return fail(&named, &error, outcomes),
    };
    if response.status != 207 {
        return;
    }
    match response.json::<BatchAnswer>() {
        Ok(answer) => reject_named(&answer.errors, &named, outcomes),
        Err(error) => fail(&named, &error, outcomes),
    }
}

/// Archives the HubSpot objects of deleted records: their object ids are
/// read by `id_property` first, as the archive endpoint takes no other.
fn archive(config: &Config, records: &[Named], outcomes: &mut [Outcome]) {
    let read = json!({
        "idProperty": config.id_property,
        "properties": [config.id_property],
        "inputs": id_inputs(records.iter().map(|(_, id)| id.as_str())),
    });
    let found = match send(config, "read", &read).and_then(|r| r.json::<BatchAnswer>()) {
        Ok(found) => found,
        Err(error) => return fail(records, &error, outcomes),
    };
    // A record HubSpot does not have is already gone: nothing to archive.
    let targets: Vec<(usize, &str)> = records
        .iter()
        .filter_map(|(i, id)| {
            let object = found.results.iter().find(|object| {
                object
                    .properties
                    .get(&config.id_property)
                    .and_then(Value::as_str)
                    .is_some_and(|value| same_id(value, id))
            })?;
            Some((*i, object.id.as_str()))
        })
        .collect();
    if targets.is_empty() {
        return;
    }
    let inputs = id_inputs(targets.iter().map(|(_, id)| *id));
    if let Err(error) = send(config, "archive", &json!({ "inputs": inputs })) {
        fail(&targets, &error, outcomes);
    }
}

/// `[{"id": …}]` for each distinct id, the inputs of a read or an archive.
fn id_inputs<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<Value> {
    let mut distinct: Vec<&str> = Vec::new();
    for id in ids {
        if !distinct.contains(&id) {
            distinct.push(id);
        }
    }
    distinct.into_iter().map(|id| json!({ "id": id })).collect()
}

/// What HubSpot's batch endpoints answer, of what Ebb reads: the objects
/// found (read) and the inputs refused (a 207).
#[derive(Deserialize, Default)]
#[serde(default)]
struct BatchAnswer {
    results: Vec<Object>,
    errors: Vec<BatchError>,
}

#[derive(Deserialize)]
struct Object {
    id: String,
    #[serde(default)]
    properties: Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BatchError {
    category: String,
    message: String,
    /// The inputs concerned, under `id` or `ids`, with other details.
    context: Map<String, Value>,
}

impl BatchError {
    /// The input ids this error names.
    fn ids(&self) -> impl Iterator<Item = &str> {
        ["id", "ids"]
            .into_iter()
            .filter_map(|key| self.context.get(key)?.as_array())
            .flatten()
            .filter_map(Value::as_str)
    }

    fn describe(&self) -> String {
        format!("HubSpot refused it: {} ({})", self.message, self.category)
    }
}

/// Rejects the records a 207's errors name; an error naming none of the
/// request's inputs rejects every record not rejected already.
fn reject_named(errors: &[BatchError], named: &[(usize, &str)], outcomes: &mut [Outcome]) {
    let mut unplaced = Vec::new();
    for error in errors {
        let mut placed = false;
        for (i, id) in named {
            if error.ids().any(|named| same_id(named, id)) {
                outcomes[*i] = Outcome::Reject(Error::rejected(error.describe()));
                placed = true;
            }
        }
        if !placed {
            unplaced.push(error.describe());
        }
    }
    if unplaced.is_empty() {
        return;
    }
    let error = Error::rejected(format!(
        "{}; HubSpot did not say which record, so every record of the request is sent again next run",
        unplaced.join("; ")
    ));
    for (i, _) in named {
        if outcomes[*i] == Outcome::Ok {
            outcomes[*i] = Outcome::Reject(error.clone());
        }
    }
}

/// POSTs `body` to `{endpoint}/crm/v3/objects/{object}/batch/{operation}`;
/// a non-2xx answer is the error it stands for, told in HubSpot's terms.
fn send(config: &Config, operation: &str, body: &Value) -> Result<Response, Error> {
    let url = format!(
        "{}/crm/v3/objects/{}/batch/{operation}",
        config.endpoint.trim_end_matches('/'),
        config.object
    );
    let response = http::post(url).bearer(&config.token).json(body).send()?;
    match response.error() {
        None => Ok(response),
        Some(error) => Err(explain(config, &response, error)),
    }
}

/// Adds what to do to an auth error, and HubSpot's wait to a 429.
fn explain(config: &Config, response: &Response, error: Error) -> Error {
    match error.kind {
        ErrorKind::Auth => Error::auth(format!(
            "{}: check that `token` is a private app's access token with write access to {}",
            error.message, config.object
        )),
        ErrorKind::RateLimited => error.with_retry_after_ms(rate_limit_wait_ms(response)),
        _ => error,
    }
}

/// How long a 429 asks to wait: `Retry-After` when HubSpot sends it, else
/// what its rate headers imply. With no request left in the rolling window
/// (`X-HubSpot-RateLimit-Remaining: 0`), one whole window
/// (`…-Interval-Milliseconds`) clears every request that filled it; with
/// some left, another limit refused the request, and one request's share
/// of the window (interval / `…-Max`) is enough. `None` (no headers) leaves
/// the wait to the host's backoff.
fn rate_limit_wait_ms(response: &Response) -> Option<u64> {
    if let Some(wait) = response.retry_after_ms() {
        return Some(wait);
    }
    let header = |name: &str| response.header(name)?.trim().parse::<u64>().ok();
    let interval = header("x-hubspot-ratelimit-interval-milliseconds")?;
    let remaining = header("x-hubspot-ratelimit-remaining");
    let max = header("x-hubspot-ratelimit-max");
    Some(match (remaining, max) {
        (Some(remaining), Some(max)) if remaining > 0 && max > 0 => interval.div_ceil(max),
        _ => interval,
    })
}

/// The same error for every record of a request.
fn fail<T>(records: &[(usize, T)], error: &Error, outcomes: &mut [Outcome]) {
    for (i, _) in records {
        outcomes[*i] = Outcome::from(error.clone());
    }
}

ebb_sdk::export_destination!(Hubspot);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::testing::{self, MockHttp, Reply};

    fn config() -> Value {
        json!({ "token": "pat-1", "object": "contacts", "id_property": "email", "endpoint": "https://hs.example/" })
    }

    fn archiving() -> Value {
        let mut config = config();
        config["on_delete"] = "archive".into();
        config
    }

    fn inputs(request: &http::Request) -> Vec<Value> {
        request.body_json::<Value>().unwrap()["inputs"]
            .as_array()
            .unwrap()
            .clone()
    }

    #[test]
    fn upserts_by_id_property_with_properties_as_strings() {
        let mock = MockHttp::new().respond(200, r#"{"status":"COMPLETE","results":[]}"#);
        let batch = vec![
            testing::event(
                Op::Added,
                "1",
                json!({"email": "ada@example.com", "age": 36, "vip": true, "bio": null, "tags": ["a", 2]}),
            ),
            testing::event(Op::Updated, "grace@example.com", json!({"plan": "pro"})),
        ];
        let outcomes = testing::write::<Hubspot>(config(), "upsert", batch);
        assert_eq!(outcomes, Ok(vec![Outcome::Ok, Outcome::Ok]));
        let request = &mock.requests()[0];
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.url(),
            "https://hs.example/crm/v3/objects/contacts/batch/upsert"
        );
        assert!(request.query_pairs().is_empty());
        assert_eq!(request.header("authorization"), Some("Bearer pat-1"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            inputs(request),
            [
                json!({"idProperty": "email", "id": "ada@example.com", "properties":
                    {"email": "ada@example.com", "age": "36", "vip": "true", "bio": "", "tags": "a;2"}}),
                json!({"idProperty": "email", "id": "grace@example.com", "properties":
                    {"plan": "pro", "email": "grace@example.com"}}),
            ]
        );
    }

    #[test]
    fn records_hubspot_cannot_take_are_refused_alone() {
        let mock = MockHttp::new().respond(200, "{}");
        let batch = vec![
            testing::event(Op::Added, "1", json!({"address": {"city": "Paris"}})),
            testing::event(Op::Added, "2", json!({"email": null})),
            testing::event(
                Op::Added,
                "3",
                json!({"bio": "x".repeat(MAX_VALUE_CHARS + 1)}),
            ),
            testing::event(Op::Added, "4", json!({"email": "ok@example.com"})),
        ];
        let outcomes = testing::write::<Hubspot>(config(), "upsert", batch).unwrap();
        let refused = |i: usize, says: &str| {
            assert!(
                matches!(&outcomes[i], Outcome::Reject(e) if e.message.contains(says)),
                "{i}: {:?}",
                outcomes[i]
            )
        };
        refused(0, "`address` holds a nested object");
        refused(1, "`email` is null, but HubSpot matches records on it");
        refused(2, "over HubSpot's limit of 65536");
        assert_eq!(outcomes[3], Outcome::Ok);
        let sent = inputs(&mock.requests()[0]);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["id"], "ok@example.com");
    }

    #[test]
    fn requests_hold_at_most_100_inputs_and_no_id_twice() {
        let mock = MockHttp::new().route(
            http::Method::POST,
            "/crm/v3/objects/contacts/batch/upsert",
            Reply::status(200),
        );
        let mut batch: Vec<Event> = (0..150)
            .map(|i| testing::event(Op::Added, i.to_string(), json!({"n": i})))
            .collect();
        batch.insert(1, testing::event(Op::Added, "X", json!({"email": "0"})));
        let outcomes = testing::write::<Hubspot>(config(), "upsert", batch).unwrap();
        assert!(outcomes.iter().all(|o| *o == Outcome::Ok));
        let sizes: Vec<usize> = mock.requests().iter().map(|r| inputs(r).len()).collect();
        // "0" again starts a second request; 100 inputs fill it.
        assert_eq!(sizes, [1, 100, 50]);
        assert_eq!(inputs(&mock.requests()[1])[0]["properties"]["email"], "0");
        assert_eq!(Hubspot::spec().max_batch_records, 100);
    }

    #[test]
    fn a_multi_status_answer_rejects_the_records_it_names() {
        let answer = json!({
            "status": "COMPLETE",
            "results": [{"id": "101", "properties": {"email": "b@example.com"}}],
            "numErrors": 1,
            "errors": [{"status": "error", "category": "VALIDATION_ERROR",
                        "message": "Property values were not valid: age", "context": {"id": ["A@example.com"]}}]
        });
        let mock = MockHttp::new().reply(Reply::status(207).json(&answer));
        let batch = vec![
            testing::event(Op::Added, "a@example.com", json!({"age": "old"})),
            testing::event(Op::Added, "b@example.com", json!({"age": 3})),
        ];
        let outcomes = testing::write::<Hubspot>(config(), "upsert", batch.clone()).unwrap();
        assert_eq!(
            outcomes[0],
            Outcome::Reject(Error::rejected(
                "HubSpot refused it: Property values were not valid: age (VALIDATION_ERROR)"
            ))
        );
        assert_eq!(outcomes[1], Outcome::Ok);

        // An error naming no input rejects the whole request.
        let vague = json!({"status": "COMPLETE", "numErrors": 1,
                           "errors": [{"status": "error", "category": "INTERNAL", "message": "oops"}]});
        drop(mock);
        let _mock = MockHttp::new().reply(Reply::status(207).json(&vague));
        let outcomes = testing::write::<Hubspot>(config(), "upsert", batch).unwrap();
        for outcome in outcomes {
            assert!(
                matches!(&outcome, Outcome::Reject(e) if e.message.contains("did not say which record")),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn a_refused_token_fails_the_request_as_an_auth_error() {
        let _mock = MockHttp::new().respond(
            401,
            r#"{"status":"error","message":"Authentication credentials not found.","category":"INVALID_AUTHENTICATION"}"#,
        );
        let batch = vec![testing::event(Op::Added, "a@example.com", json!({}))];
        let outcomes = testing::write::<Hubspot>(config(), "upsert", batch).unwrap();
        let [Outcome::Reject(error)] = &outcomes[..] else {
            panic!("{outcomes:?}");
        };
        assert_eq!(error.kind, ErrorKind::Auth);
        assert!(error.message.contains("HTTP 401"), "{}", error.message);
        assert!(
            error.message.contains("check that `token`"),
            "{}",
            error.message
        );
        assert!(!error.message.contains("pat-1"), "{}", error.message);
    }

    #[test]
    fn a_429_waits_what_hubspot_rate_headers_imply() {
        let limited = |remaining: &str| {
            Reply::status(429)
                .header("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")
                .header("X-HubSpot-RateLimit-Max", "190")
                .header("X-HubSpot-RateLimit-Remaining", remaining)
                .json(&json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                              "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}))
        };
        let _mock = MockHttp::new()
            .reply(limited("0"))
            .reply(limited("12"))
            .reply(limited("0").header("Retry-After", "3"))
            .respond(429, "");
        for wait in [Some(10_000), Some(53), Some(3_000), None] {
            let batch = vec![testing::event(Op::Added, "a@example.com", json!({}))];
            let outcomes = testing::write::<Hubspot>(config(), "upsert", batch).unwrap();
            let [Outcome::Retry(error)] = &outcomes[..] else {
                panic!("{outcomes:?}");
            };
            assert_eq!(
                (error.kind, error.retry_after_ms),
                (ErrorKind::RateLimited, wait)
            );
        }
    }

    #[test]
    fn server_errors_are_retried() {
        let _mock = MockHttp::new()
            .respond(502, "bad gateway")
            .reply(Reply::network_error("connection reset"));
        for _ in 0..2 {
            let batch = vec![testing::event(Op::Added, "a@example.com", json!({}))];
            let outcomes = testing::write::<Hubspot>(config(), "upsert", batch).unwrap();
            assert!(
                matches!(&outcomes[0], Outcome::Retry(e) if e.kind == ErrorKind::Transient),
                "{outcomes:?}"
            );
        }
    }

    #[test]
    fn deletions_are_skipped_by_default() {
        let mock = MockHttp::new();
        let batch = vec![testing::deleted("7", json!({"email": "gone@example.com"}))];
        let outcomes = testing::write::<Hubspot>(config(), "upsert", batch);
        assert_eq!(outcomes, Ok(vec![Outcome::Ok]));
        assert!(mock.requests().is_empty());
    }

    #[test]
    fn deletions_archive_the_objects_read_by_id_property() {
        let found = json!({"status": "COMPLETE", "results": [
            {"id": "501", "properties": {"email": "gone@example.com", "hs_object_id": "501"}}
        ], "numErrors": 1, "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some CONTACT objects", "context": {"ids": ["never@example.com"]}}]});
        let mock = MockHttp::new()
            .reply(Reply::status(207).json(&found))
            .respond(204, "");
        let batch = vec![
            testing::deleted("7", json!({"email": "Gone@example.com"})),
            testing::deleted("8", json!({"email": "never@example.com"})),
            testing::event(Op::Added, "new@example.com", json!({})),
        ];
        let mock = mock.route(
            http::Method::POST,
            "/crm/v3/objects/contacts/batch/upsert",
            Reply::status(200),
        );
        let outcomes = testing::write::<Hubspot>(archiving(), "upsert", batch).unwrap();
        assert_eq!(outcomes, [Outcome::Ok, Outcome::Ok, Outcome::Ok]);
        let requests = mock.requests();
        let paths: Vec<&str> = requests.iter().map(|r| r.path()).collect();
        assert_eq!(
            paths,
            [
                "/crm/v3/objects/contacts/batch/upsert",
                "/crm/v3/objects/contacts/batch/read",
                "/crm/v3/objects/contacts/batch/archive"
            ]
        );
        assert_eq!(
            requests[1].body_json::<Value>().unwrap(),
            json!({"idProperty": "email", "properties": ["email"],
                   "inputs": [{"id": "Gone@example.com"}, {"id": "never@example.com"}]})
        );
        assert_eq!(inputs(&requests[2]), [json!({"id": "501"})]);
    }

    #[test]
    fn a_failed_lookup_fails_the_deletions() {
        let _mock = MockHttp::new().respond(503, "");
        let batch = vec![testing::deleted("7", json!({"email": "gone@example.com"}))];
        let outcomes = testing::write::<Hubspot>(archiving(), "upsert", batch).unwrap();
        assert!(matches!(&outcomes[0], Outcome::Retry(_)), "{outcomes:?}");
    }

    #[test]
    fn config_problems_name_their_key() {
        assert_eq!(testing::validate::<Hubspot>(config()), Ok(()));
        let problems = testing::validate::<Hubspot>(json!({
            "token": " ", "object": "contacts/../x", "id_property": "", "endpoint": "hs.example"
        }))
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        for (problem, key) in problems
            .iter()
            .zip(["endpoint", "token", "object", "id_property"])
        {
            assert!(problem.starts_with(key), "{problem}");
        }
        let missing = testing::validate::<Hubspot>(json!({"token": "t"})).unwrap_err();
        assert_eq!(missing, ["invalid config: missing field `object`"]);
        let spec = testing::spec::<Hubspot>().unwrap();
        assert_eq!(spec.hosts, ["api.hubapi.com"]);
        let keys = spec.config_schema["properties"].as_object().unwrap();
        assert!(keys.values().all(|key| key["description"].is_string()));
    }
}
