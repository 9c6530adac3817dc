//! `ebb:customerio`: records as people or objects in Customer.io, sent as
//! entries of the Track API v2 batch call, `POST {endpoint}/api/v2/batch`,
//! with the workspace's site id and Track API key as Basic auth.
//!
//! `identify_person` identifies a person by `id` (or `email`, `cio_id`: the
//! `identifier` setting), `identify_object` an object of the configured
//! `object_type_id` by `object_id`; either identifier is the field of that
//! name when the record has one, else the record's key. The other fields
//! become `attributes`; an object's `cio_relationships` field names the
//! people it relates to. A deleted record is skipped, or sent as a
//! `delete` of that person or object when `on_delete = "delete"`.
//!
//! An entry over Customer.io's 32 KB is refused on its own, and a request
//! is cut to stay under 500 KB. Customer.io answers a batch with some bad
//! entries `207` and a list of `batch_index`es; exactly those records are
//! refused, the rest are delivered.

use ebb_sdk::batch::{self, Entries};
use ebb_sdk::spec::Rate;
use ebb_sdk::{Action, Destination, Error, Event, Op, Outcome, Record, Spec, http};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Customer.io's limits: one entry, and one request of entries.
const MAX_ENTRY_BYTES: usize = 32 * 1024;
const MAX_BATCH_BYTES: usize = 500 * 1024;

/// The field an object record may fill with the people it relates to.
const RELATIONSHIPS: &str = "cio_relationships";

struct CustomerIo;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    site_id: String,
    api_key: String,
    #[serde(default)]
    region: Region,
    /// Overrides the region's host when set.
    endpoint: Option<String>,
    #[serde(default)]
    identifier: Identifier,
    object_type_id: Option<String>,
    #[serde(default)]
    on_delete: OnDelete,
}

/// The data center a workspace lives in; each has its own Track API host.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Region {
    #[default]
    Us,
    Eu,
}

/// Which of a person's identifiers the record's key (or field) is.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Identifier {
    #[default]
    Id,
    Email,
    CioId,
}

impl Identifier {
    fn name(self) -> &'static str {
        match self {
            Identifier::Id => "id",
            Identifier::Email => "email",
            Identifier::CioId => "cio_id",
        }
    }
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum OnDelete {
    /// Nothing is sent; the record counts as synced.
    #[default]
    Skip,
    /// The person or object is deleted in Customer.io.
    Delete,
}

/// What a sync's action identifies.
#[derive(Clone, Copy)]
enum Entity<'a> {
    Person,
    Object { type_id: &'a str },
}

impl Config {
    /// The base URL requests go to: `endpoint`, else the region's host.
    fn base(&self) -> &str {
        let base = match (&self.endpoint, self.region) {
            (Some(endpoint), _) => endpoint,
            (None, Region::Us) => "https://track.customer.io",
            (None, Region::Eu) => "https://track-eu.customer.io",
        };
        base.trim_end_matches('/')
    }

    fn entity(&self, action: &str) -> Result<Entity<'_>, Error> {
        match action {
            "identify_person" => Ok(Entity::Person),
            "identify_object" => match &self.object_type_id {
                Some(type_id) => Ok(Entity::Object { type_id }),
                None => Err(Error::invalid_config(
                    "identify_object needs `object_type_id` in the destination's config: \
                     the id of the object type (\"1\" for the first type you created)",
                )),
            },
            other => Err(Error::invalid_config(format!(
                "unknown action {other:?}; use identify_person or identify_object"
            ))),
        }
    }
}

impl Destination for CustomerIo {
    type Config = Config;

    fn spec() -> Spec {
        Spec {
            config_schema: json!({
                "type": "object",
                "required": ["site_id", "api_key"],
                "additionalProperties": false,
                "properties": {
                    "site_id": { "type": "string", "minLength": 1, "description": "the workspace's Site ID (Settings → API Credentials → Track API keys); use ${env:…}" },
                    "api_key": { "type": "string", "minLength": 1, "description": "the Track API key paired with the Site ID; use ${env:…}" },
                    "region": { "enum": ["us", "eu"], "default": "us", "description": "the workspace's data center: us sends to https://track.customer.io, eu to https://track-eu.customer.io" },
                    "endpoint": { "type": "string", "description": "base URL, overriding region (default https://track.customer.io)" },
                    "identifier": { "enum": ["id", "email", "cio_id"], "default": "id", "description": "which person identifier the record's key (or the field of that name) is" },
                    "object_type_id": { "type": "string", "minLength": 1, "description": "the object type identify_object writes, as Customer.io numbers them (\"1\")" },
                    "on_delete": { "enum": ["skip", "delete"], "default": "skip", "description": "skip sends nothing for a deleted record; delete deletes the person or object" }
                }
            }),
            actions: vec![
                Action::new(
                    "identify_person",
                    "create or update people; their fields become attributes",
                ),
                Action::new(
                    "identify_object",
                    "create or update objects of object_type_id, with relationships to people",
                ),
            ],
            // The API counts bytes, not entries; 1000 small entries fit.
            max_batch_records: 1000,
            max_batch_bytes: MAX_BATCH_BYTES,
            hosts: vec!["track.customer.io".to_owned()],
            // Customer.io's fair-use rate for the Track API.
            rate: Some(Rate::requests(100.0)),
            ..Spec::new("customerio", env!("CARGO_PKG_VERSION"))
        }
    }

    fn validate(config: &Config) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (key, value) in [("site_id", &config.site_id), ("api_key", &config.api_key)] {
            if value.trim().is_empty() {
                problems.push(format!(
                    "{key} is empty; copy it from Customer.io's Track API keys page"
                ));
            }
        }
        if let Some(endpoint) = &config.endpoint {
            problems.extend(http::url_problem("endpoint", endpoint));
        }
        if config
            .object_type_id
            .as_ref()
            .is_some_and(|id| id.trim().is_empty())
        {
            problems
                .push("object_type_id is empty; give the object type's id, such as \"1\"".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn write(config: &Config, action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        let entity = config.entity(action)?;
        Ok(batch::packed(
            &batch,
            MAX_BATCH_BYTES,
            |event| entry(config, entity, event),
            |entries, outcomes| send(config, entries, outcomes),
        ))
    }
}

/// The batch entry an event becomes, as JSON; `None` when nothing is sent.
fn entry(config: &Config, entity: Entity, event: &Event) -> Result<Option<String>, Error> {
    let deleted = event.op == Op::Deleted;
    if deleted && config.on_delete == OnDelete::Skip {
        return Ok(None);
    }
    let mut fields = match (&event.previous, deleted) {
        (Some(previous), true) => previous.clone(),
        _ => event.fields.clone(),
    };
    let (kind, identifiers) = match entity {
        Entity::Person => {
            let name = config.identifier.name();
            let value = identifier(&mut fields, name, &event.id)?;
            ("person", json!({ name: value }))
        }
        Entity::Object { type_id } => {
            let object_id = identifier(&mut fields, "object_id", &event.id)?;
            (
                "object",
                json!({ "object_type_id": type_id, "object_id": object_id }),
            )
        }
    };
    let mut entry = Map::new();
    entry.insert("type".into(), kind.into());
    entry.insert("identifiers".into(), identifiers);
    if deleted {
        entry.insert("action".into(), "delete".into());
    } else {
        entry.insert("action".into(), "identify".into());
        if let Entity::Object { .. } = entity
            && let Some(people) = fields.remove(RELATIONSHIPS)
            && !people.is_null()
        {
            let people = relationships(people, config.identifier)?;
            entry.insert(RELATIONSHIPS.into(), people);
        }
        entry.insert("attributes".into(), Value::Object(fields));
    }
    let text = Value::Object(entry).to_string();
    if text.len() > MAX_ENTRY_BYTES {
        return Err(Error::rejected(format!(
            "the {kind} entry is {} bytes, over Customer.io's limit of 32 KB; send fewer or shorter fields",
            text.len()
        )));
    }
    Ok(Some(text))
}

/// The identifier `name` of a record: its field of that name (taken out of
/// the attributes), else its key.
fn identifier(fields: &mut Record, name: &str, key: &str) -> Result<String, Error> {
    match fields.remove(name) {
        None => Ok(key.to_owned()),
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text),
        Some(Value::Number(number)) => Ok(number.to_string()),
        Some(other) => Err(Error::rejected(format!(
            "`{name}` is {other}, which cannot identify a record in Customer.io; \
             map a column with a non-empty text or number to it"
        ))),
    }
}

/// `cio_relationships` as Customer.io takes it: one entry per person. A
/// field may hold a list of people's identifiers, relationship objects
/// (`{"identifiers": …, "relationship_attributes": …}`, passed as they
/// are) or both, or a comma-separated text of identifiers.
fn relationships(people: Value, identifier: Identifier) -> Result<Value, Error> {
    let person = |value: Value| -> Result<Value, Error> {
        let id = match value {
            Value::Object(_) => return Ok(value),
            Value::String(text) => text.trim().to_owned(),
            Value::Number(number) => number.to_string(),
            other => {
                return Err(Error::rejected(format!(
                    "`{RELATIONSHIPS}` holds {other}; give people's identifiers or relationship objects"
                )));
            }
        };
        Ok(json!({ "identifiers": { identifier.name(): id } }))
    };
    let listed = match people {
        Value::Array(items) => items,
        Value::String(text) => text
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(Value::from)
            .collect(),
        single => vec![single],
    };
    listed
        .into_iter()
        .map(person)
        .collect::<Result<_, _>>()
        .map(Value::Array)
}

/// Sends the entries in one request, writing the outcome of those not
/// delivered.
fn send(config: &Config, entries: Entries, outcomes: &mut [Outcome]) {
    let body = format!("{{\"batch\":{}}}", entries.json_array());
    let sent = http::post(format!("{}/api/v2/batch", config.base()))
        .basic_auth(&config.site_id, &config.api_key)
        .header("content-type", "application/json")
        .body(body)
        .send();
    let failure = match sent {
        Ok(response) if response.status == 207 => {
            for (n, error) in refused(&response, entries.len()) {
                if let Some(i) = entries.index(n) {
                    outcomes[i] = Outcome::Reject(error);
                }
            }
            return;
        }
        Ok(response) => response.error(),
        Err(error) => Some(error),
    };
    if let Some(error) = failure {
        entries.fail(error, outcomes);
    }
}

/// A `207` answer: `{"errors": [{"batch_index", "reason", "field",
/// "message"}]}`, one per refused entry.
#[derive(Deserialize)]
struct Partial {
    errors: Vec<EntryError>,
}

#[derive(Deserialize)]
struct EntryError {
    batch_index: usize,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    field: String,
    #[serde(default)]
    message: String,
}

/// The entries a `207` refused (by position in the request) and why. An
/// answer that does not say which refuses all `sent`, to be sent again
/// next run (identifying again is harmless).
fn refused(response: &http::Response, sent: usize) -> Vec<(usize, Error)> {
    let Ok(partial) = response.json::<Partial>() else {
        let error = Error::rejected(format!(
            "Customer.io refused part of the batch (HTTP 207) without naming the entries: {}",
            response.body_snippet()
        ));
        return (0..sent).map(|index| (index, error.clone())).collect();
    };
    partial
        .errors
        .into_iter()
        .filter(|e| e.batch_index < sent)
        .map(|e| {
            let said: Vec<&str> = [&e.reason, &e.field, &e.message]
                .into_iter()
                .map(String::as_str)
                .filter(|part| !part.is_empty())
                .collect();
            let error = Error::rejected(format!(
                "Customer.io refused the entry: {}",
                said.join(": ")
            ));
            (e.batch_index, error)
        })
        .collect()
}

ebb_sdk::export_destination!(CustomerIo);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::ErrorKind;
    use ebb_sdk::testing::{self, MockHttp, Reply};

    fn config() -> Value {
        json!({ "site_id": "site", "api_key": "key", "endpoint": "https://cio.example" })
    }

    fn with(mut config: Value, key: &str, value: &str) -> Value {
        config[key] = value.into();
        config
    }

    fn sent(mock: &MockHttp) -> Vec<Value> {
        mock.requests()
            .iter()
            .flat_map(|r| {
                r.body_json::<Value>().unwrap()["batch"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .collect()
    }

    #[test]
    fn identify_person_posts_a_batch_with_basic_auth() {
        let mock = MockHttp::new().respond(200, "{}");
        let batch = vec![testing::event(
            Op::Added,
            "42",
            json!({"id": 42, "email": "ada@example.com", "plan": "pro"}),
        )];
        let outcomes = testing::write::<CustomerIo>(config(), "identify_person", batch);
        assert_eq!(outcomes, Ok(vec![Outcome::Ok]));
        let request = &mock.requests()[0];
        assert_eq!(request.method(), &http::Method::POST);
        assert_eq!(request.url(), "https://cio.example/api/v2/batch");
        assert!(request.query_pairs().is_empty());
        // base64("site:key")
        assert_eq!(request.header("authorization"), Some("Basic c2l0ZTprZXk="));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            sent(&mock),
            [json!({
                "type": "person",
                "action": "identify",
                "identifiers": {"id": "42"},
                "attributes": {"email": "ada@example.com", "plan": "pro"}
            })]
        );
    }

    #[test]
    fn the_region_picks_the_host_unless_an_endpoint_is_given() {
        let mock = MockHttp::new().respond(200, "{}").respond(200, "{}");
        let account = json!({ "site_id": "site", "api_key": "key" });
        for config in [account.clone(), with(account, "region", "eu")] {
            let batch = vec![testing::event(Op::Added, "1", json!({}))];
            testing::write::<CustomerIo>(config, "identify_person", batch).unwrap();
        }
        let urls: Vec<String> = mock.requests().iter().map(|r| r.url().into()).collect();
        assert_eq!(
            urls,
            [
                "https://track.customer.io/api/v2/batch",
                "https://track-eu.customer.io/api/v2/batch"
            ]
        );
    }

    #[test]
    fn people_can_be_identified_by_email_from_their_field() {
        let mock = MockHttp::new().respond(200, "{}");
        let batch = vec![
            testing::event(Op::Added, "1", json!({"email": "a@example.com", "n": 1})),
            testing::event(Op::Added, "2", json!({"email": null, "n": 2})),
        ];
        let config = with(config(), "identifier", "email");
        let outcomes = testing::write::<CustomerIo>(config, "identify_person", batch).unwrap();
        assert_eq!(outcomes[0], Outcome::Ok);
        assert!(
            matches!(&outcomes[1], Outcome::Reject(e) if e.message.starts_with("`email` is null")),
            "{outcomes:?}"
        );
        assert_eq!(
            sent(&mock),
            [json!({
                "type": "person",
                "action": "identify",
                "identifiers": {"email": "a@example.com"},
                "attributes": {"n": 1}
            })]
        );
    }

    #[test]
    fn identify_object_sends_its_type_and_relationships() {
        let mock = MockHttp::new().respond(200, "{}");
        let batch = vec![
            testing::event(
                Op::Added,
                "acme",
                json!({"name": "Acme", "cio_relationships": "42, 43"}),
            ),
            testing::event(
                Op::Updated,
                "7",
                json!({"object_id": "globex", "cio_relationships": [44, {"identifiers": {"id": "45"}, "relationship_attributes": {"role": "admin"}}]}),
            ),
            testing::event(Op::Added, "8", json!({"cio_relationships": true})),
        ];
        let config = with(config(), "object_type_id", "1");
        let outcomes = testing::write::<CustomerIo>(config, "identify_object", batch).unwrap();
        assert_eq!(outcomes[..2], [Outcome::Ok, Outcome::Ok]);
        assert!(
            matches!(&outcomes[2], Outcome::Reject(e) if e.message.contains("`cio_relationships` holds true")),
            "{outcomes:?}"
        );
        assert_eq!(
            sent(&mock),
            [
                json!({
                    "type": "object",
                    "action": "identify",
                    "identifiers": {"object_type_id": "1", "object_id": "acme"},
                    "attributes": {"name": "Acme"},
                    "cio_relationships": [{"identifiers": {"id": "42"}}, {"identifiers": {"id": "43"}}]
                }),
                json!({
                    "type": "object",
                    "action": "identify",
                    "identifiers": {"object_type_id": "1", "object_id": "globex"},
                    "attributes": {},
                    "cio_relationships": [
                        {"identifiers": {"id": "44"}},
                        {"identifiers": {"id": "45"}, "relationship_attributes": {"role": "admin"}}
                    ]
                })
            ]
        );
    }

    #[test]
    fn identify_object_without_a_type_fails_the_batch() {
        let _mock = MockHttp::new();
        let batch = vec![testing::event(Op::Added, "acme", json!({}))];
        let error = testing::write::<CustomerIo>(config(), "identify_object", batch).unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidConfig);
        assert!(
            error.message.contains("`object_type_id`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn deletions_are_skipped_or_deleted() {
        let mock = MockHttp::new().respond(200, "{}");
        let gone = || vec![testing::deleted("7", json!({"email": "x@example.com"}))];
        assert_eq!(
            testing::write::<CustomerIo>(config(), "identify_person", gone()),
            Ok(vec![Outcome::Ok])
        );
        assert!(mock.requests().is_empty());

        let deleting = with(with(config(), "on_delete", "delete"), "identifier", "email");
        testing::write::<CustomerIo>(deleting.clone(), "identify_person", gone()).unwrap();
        let objects = with(deleting, "object_type_id", "2");
        let mock = mock.respond(200, "{}");
        testing::write::<CustomerIo>(objects, "identify_object", gone()).unwrap();
        assert_eq!(
            sent(&mock),
            [
                json!({"type": "person", "action": "delete", "identifiers": {"email": "x@example.com"}}),
                json!({"type": "object", "action": "delete", "identifiers": {"object_type_id": "2", "object_id": "7"}})
            ]
        );
    }

    #[test]
    fn a_207_refuses_exactly_the_entries_it_names() {
        let mock = MockHttp::new().reply(Reply::status(207).json(&json!({
            "errors": [{"batch_index": 1, "reason": "invalid", "field": "identifiers.id", "message": "id cannot be longer than 150 bytes"}]
        })));
        let batch = vec![
            testing::event(Op::Added, "1", json!({})),
            testing::event(Op::Added, "2", json!({"x": "x".repeat(40_000)})),
            testing::event(Op::Added, "3", json!({})),
            testing::event(Op::Added, "4", json!({})),
        ];
        let outcomes = testing::write::<CustomerIo>(config(), "identify_person", batch).unwrap();
        assert_eq!(sent(&mock).len(), 3, "the oversize entry is not sent");
        assert_eq!(outcomes[0], Outcome::Ok);
        assert!(matches!(&outcomes[1], Outcome::Reject(e) if e.message.contains("32 KB")));
        // Entry 1 of the request is record 3: the oversize one was not sent.
        assert_eq!(
            outcomes[2],
            Outcome::Reject(Error::rejected(
                "Customer.io refused the entry: invalid: identifiers.id: id cannot be longer than 150 bytes"
            ))
        );
        assert_eq!(outcomes[3], Outcome::Ok);
    }

    #[test]
    fn a_207_that_names_no_entry_refuses_them_all() {
        let _mock = MockHttp::new().respond(207, "oops");
        let batch = vec![testing::event(Op::Added, "1", json!({}))];
        let outcomes = testing::write::<CustomerIo>(config(), "identify_person", batch).unwrap();
        assert!(
            matches!(&outcomes[0], Outcome::Reject(e) if e.message.contains("without naming the entries: oops")),
            "{outcomes:?}"
        );
    }

    #[test]
    fn requests_stay_under_500_kb() {
        let mock = MockHttp::new().route(http::Method::POST, "/api/v2/batch", Reply::status(200));
        let batch: Vec<Event> = (0..40)
            .map(|i| testing::event(Op::Added, i.to_string(), json!({"x": "y".repeat(30_000)})))
            .collect();
        let outcomes = testing::write::<CustomerIo>(config(), "identify_person", batch).unwrap();
        assert!(outcomes.iter().all(|o| *o == Outcome::Ok));
        let requests = mock.requests();
        assert!(requests.len() >= 3, "{} requests", requests.len());
        assert!(requests.iter().all(|r| r.body().len() < MAX_BATCH_BYTES));
        assert_eq!(sent(&mock).len(), 40);
    }

    #[test]
    fn failures_answer_for_the_batch() {
        let _mock = MockHttp::new()
            .respond(401, "")
            .reply(Reply::status(429).header("Retry-After", "3"))
            .respond(503, "unavailable")
            .reply(
                Reply::status(400)
                    .json(&json!({"errors": [{"reason": "invalid", "message": "bad JSON"}]})),
            );
        let outcome = || {
            let batch = vec![testing::event(Op::Added, "1", json!({}))];
            let outcomes = testing::write::<CustomerIo>(config(), "identify_person", batch);
            outcomes.unwrap().remove(0)
        };
        let Outcome::Reject(auth) = outcome() else {
            panic!("a 401 is not retried")
        };
        assert_eq!(auth.kind, ErrorKind::Auth);
        assert!(auth.message.contains("401"), "{}", auth.message);
        assert_eq!(
            outcome(),
            Outcome::Retry(Error::rate_limited("HTTP 429", Some(3000)))
        );
        assert!(matches!(outcome(), Outcome::Retry(e) if e.kind == ErrorKind::Transient));
        assert!(
            matches!(outcome(), Outcome::Reject(e) if e.kind == ErrorKind::Rejected && e.message.contains("bad JSON"))
        );
    }

    #[test]
    fn config_problems_name_their_key() {
        assert_eq!(testing::validate::<CustomerIo>(config()), Ok(()));
        let problems = testing::validate::<CustomerIo>(json!({
            "site_id": " ", "api_key": "", "endpoint": "track.customer.io", "object_type_id": ""
        }))
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        for (problem, key) in
            problems
                .iter()
                .zip(["site_id", "api_key", "endpoint", "object_type_id"])
        {
            assert!(problem.starts_with(key), "{problem}");
        }
        let problems = testing::validate::<CustomerIo>(with(config(), "region", "ap")).unwrap_err();
        assert!(
            problems[0].contains("region: unknown variant `ap`"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_spec_describes_every_key() {
        let spec = testing::spec::<CustomerIo>().unwrap();
        assert_eq!(spec.hosts, ["track.customer.io"]);
        let keys = spec.config_schema["properties"].as_object().unwrap();
        assert_eq!(keys.len(), 7);
        for (key, schema) in keys {
            assert!(
                schema["description"].is_string(),
                "{key} has no description"
            );
        }
    }
}
