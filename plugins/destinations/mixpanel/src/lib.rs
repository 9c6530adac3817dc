//! `ebb:mixpanel`: records as Mixpanel events or profiles, through the
//! ingestion API at `{endpoint}` (`https://api.mixpanel.com`, or
//! `https://api-eu.mixpanel.com` for EU data residency).
//!
//! - `track` imports events with `POST /import?strict=1&project_id=…`,
//!   authenticated as a service account (Basic auth). Mixpanel names each
//!   event it refuses by its index in `failed_records` and ingests the
//!   rest, so only those records are rejected ([`events`]).
//! - `user` and `group` update profiles with `POST /engage` and
//!   `POST /groups`: `$set` of the record's fields, `$unset` of those it
//!   lost since the last sync, `$delete` when it is deleted. These calls
//!   carry the project token in each update and answer for a request as a
//!   whole, so a refused request is split to find the records at fault
//!   ([`profiles`]).
//!
//! Credentials are checked per action when a batch is written: events need
//! `project_id`, `service_account` and `secret`, profiles `project_token`.

mod events;
mod profiles;
mod time;

use ebb_sdk::spec::Rate;
use ebb_sdk::{Action, Destination, Error, Event, Outcome, Record, Spec, http};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

/// The most events `/import` takes in one request; profile updates have
/// the same limit at `/engage` and `/groups`.
const MAX_RECORDS: usize = 2000;
/// The most bytes of uncompressed JSON `/import` takes in one request.
const MAX_IMPORT_BYTES: usize = 10_000_000;
/// The most bytes of one event or one profile update.
const MAX_RECORD_BYTES: usize = 1_000_000;
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(60);

struct Mixpanel;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default, deserialize_with = "project_id")]
    project_id: Option<String>,
    project_token: Option<String>,
    service_account: Option<String>,
    secret: Option<String>,
    group_key: Option<String>,
    #[serde(default = "default_endpoint")]
    endpoint: String,
    #[serde(default)]
    on_delete: OnDelete,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
enum OnDelete {
    /// A deleted record's profile is deleted (`$delete`).
    #[default]
    Delete,
    /// Nothing is sent; the record counts as synced.
    Skip,
}

fn default_endpoint() -> String {
    "https://api.mixpanel.com".to_owned()
}

impl Config {
    /// `{endpoint}{path}`, whatever slashes the endpoint ends with.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.trim_end_matches('/'))
    }
}

/// A setting `action` needs, or the error saying to add it.
fn needs<'a>(value: &'a Option<String>, key: &str, action: &str) -> Result<&'a str, Error> {
    value.as_deref().ok_or_else(|| {
        Error::invalid_config(format!(
            "the {action} action needs `{key}` in the destination's config"
        ))
    })
}

/// A project id as TOML users write it: `12345` or `"12345"`.
fn project_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct Id;
    impl Visitor<'_> for Id {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a project id: a number, or a string of digits")
        }
        fn visit_u64<E: de::Error>(self, id: u64) -> Result<Self::Value, E> {
            Ok(Some(id.to_string()))
        }
        fn visit_str<E: de::Error>(self, id: &str) -> Result<Self::Value, E> {
            Ok(Some(id.to_owned()))
        }
    }
    deserializer.deserialize_any(Id)
}

impl Destination for Mixpanel {
    type Config = Config;

    fn spec() -> Spec {
        Spec {
            config_schema: json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "project_id": {
                        "type": ["string", "integer"],
                        "description": "the project's id (Project Settings); needed by track"
                    },
                    "service_account": {
                        "type": "string", "minLength": 1,
                        "description": "the username of a service account with the Owner or Admin role; needed by track"
                    },
                    "secret": {
                        "type": "string", "minLength": 1,
                        "description": "that service account's secret; use ${env:…}"
                    },
                    "project_token": {
                        "type": "string", "minLength": 1,
                        "description": "the project token; needed by user and group; use ${env:…}"
                    },
                    "group_key": {
                        "type": "string", "minLength": 1,
                        "description": "the group key of group profiles (as in Project Settings), unless records carry `$group_key`"
                    },
                    "endpoint": {
                        "type": "string",
                        "description": "base URL (default https://api.mixpanel.com; EU: https://api-eu.mixpanel.com)"
                    },
                    "on_delete": {
                        "enum": ["delete", "skip"], "default": "delete",
                        "description": "what a deleted record does to its user or group profile; deleted records send no event"
                    }
                }
            }),
            actions: vec![
                Action::new("track", "events, imported with /import"),
                Action::new("user", "user profiles, set with /engage"),
                Action::new("group", "group profiles, set with /groups"),
            ],
            max_batch_records: MAX_RECORDS,
            max_batch_bytes: MAX_IMPORT_BYTES,
            hosts: vec!["api.mixpanel.com".to_owned()],
            // Mixpanel's limit per project: about 30,000 events a second.
            rate: Some(Rate {
                requests_per_sec: None,
                records_per_sec: Some(30_000.0),
            }),
            ..Spec::new("mixpanel", env!("CARGO_PKG_VERSION"))
        }
    }

    fn validate(config: &Config) -> Result<(), Vec<String>> {
        let mut problems: Vec<String> = http::url_problem("endpoint", &config.endpoint)
            .into_iter()
            .collect();
        if let Some(id) = &config.project_id
            && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()))
        {
            problems.push(format!(
                "project_id must be the project's numeric id (Project Settings), got {id:?}"
            ));
        }
        let settings = [
            ("project_token", &config.project_token),
            ("service_account", &config.service_account),
            ("secret", &config.secret),
            ("group_key", &config.group_key),
        ];
        for (key, value) in settings {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                problems.push(format!("{key} is empty; set it or leave it out"));
            }
        }
        if config.service_account.is_some() != config.secret.is_some() {
            problems.push("service_account and secret go together: set both or neither".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn write(config: &Config, action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        match action {
            "track" => events::write(config, &batch),
            "user" => profiles::write(config, profiles::Kind::User, &batch),
            "group" => profiles::write(config, profiles::Kind::Group, &batch),
            other => Err(Error::invalid_config(format!(
                "unknown action {other:?}: use track, user or group"
            ))),
        }
    }
}

/// One record's share of a request: the JSON of the objects it sends
/// (comma-separated) and how many there are.
struct Item {
    /// The record's index in the batch.
    index: usize,
    json: String,
    objects: usize,
}

/// Cuts `items` into requests of at most `max_objects` objects and
/// `max_bytes` bytes of JSON array, in order.
fn requests(items: Vec<Item>, max_objects: usize, max_bytes: usize) -> Vec<Vec<Item>> {
    let mut requests: Vec<Vec<Item>> = Vec::new();
    let (mut objects, mut bytes) = (0, 2);
    for item in items {
        let full = objects + item.objects > max_objects || bytes + item.json.len() + 1 > max_bytes;
        if full || requests.is_empty() {
            requests.push(Vec::new());
            (objects, bytes) = (0, 2);
        }
        objects += item.objects;
        bytes += item.json.len() + 1;
        requests
            .last_mut()
            .expect("a request was just opened")
            .push(item);
    }
    requests
}

/// The JSON array of the items' objects.
fn body(items: &[Item]) -> String {
    let joined: Vec<&str> = items.iter().map(|item| item.json.as_str()).collect();
    format!("[{}]", joined.join(","))
}

/// Every record of `items` failed with `error`.
fn fail(items: &[Item], error: Error, outcomes: &mut [Outcome]) {
    for item in items {
        outcomes[item.index] = Outcome::from(error.clone());
    }
}

/// Removes field `name` from `fields` and gives it as text: a string as it
/// is, a number or boolean written out; `None` when absent or null.
fn take_text(fields: &mut Record, name: &str) -> Option<String> {
    match fields.remove(name)? {
        Value::Null => None,
        Value::String(text) => Some(text),
        other => Some(other.to_string()),
    }
}

/// Rejects a record whose JSON is over Mixpanel's 1 MB for one object.
fn check_size(what: &str, json: &str) -> Result<(), Error> {
    if json.len() > MAX_RECORD_BYTES {
        return Err(Error::rejected(format!(
            "the {what} is {} bytes, over Mixpanel's limit of 1 MB; send fewer or shorter fields",
            json.len()
        )));
    }
    Ok(())
}

ebb_sdk::export_destination!(Mixpanel);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::testing;

    #[test]
    fn configs_are_checked_naming_the_key() {
        assert_eq!(testing::validate::<Mixpanel>(json!({})), Ok(()));
        assert_eq!(
            testing::validate::<Mixpanel>(json!({"project_id": 42, "project_token": "t"})),
            Ok(())
        );
        let problems = testing::validate::<Mixpanel>(json!({
            "endpoint": "ftp://mixpanel.example?key=s3cret",
            "project_id": "my-project",
            "project_token": " ",
            "service_account": "sa",
        }))
        .unwrap_err();
        assert_eq!(
            problems,
            [
                r#"endpoint must start with http:// or https://, got "ftp://mixpanel.example?…""#,
                r#"project_id must be the project's numeric id (Project Settings), got "my-project""#,
                "project_token is empty; set it or leave it out",
                "service_account and secret go together: set both or neither",
            ]
        );
        let problems = testing::validate::<Mixpanel>(json!({"project_id": true})).unwrap_err();
        assert!(
            problems[0].starts_with("invalid config: project_id: "),
            "{problems:?}"
        );
        let problems = testing::validate::<Mixpanel>(json!({"token": "t"})).unwrap_err();
        assert!(
            problems[0].contains("unknown field `token`"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_spec_describes_every_key() {
        let spec = testing::spec::<Mixpanel>().unwrap();
        assert_eq!(spec.max_batch_records, 2000);
        assert_eq!(spec.hosts, ["api.mixpanel.com"]);
        let keys = spec.config_schema["properties"].as_object().unwrap();
        for key in [
            "project_id",
            "service_account",
            "secret",
            "project_token",
            "group_key",
            "endpoint",
            "on_delete",
        ] {
            assert!(keys[key]["description"].is_string(), "{key}");
        }
        let actions: Vec<&str> = spec.actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(actions, ["track", "user", "group"]);
    }

    #[test]
    fn an_unknown_action_fails_the_batch() {
        let error = testing::write::<Mixpanel>(json!({}), "alias", vec![]).unwrap_err();
        assert_eq!(
            error.message,
            r#"unknown action "alias": use track, user or group"#
        );
    }

    #[test]
    fn requests_are_cut_by_objects_and_bytes() {
        let item = |index, json: &str, objects| Item {
            index,
            json: json.to_owned(),
            objects,
        };
        let items = vec![item(0, "{}", 1), item(1, "{},{}", 2), item(2, "{}", 1)];
        let cut: Vec<Vec<usize>> = requests(items, 3, 100)
            .iter()
            .map(|r| r.iter().map(|i| i.index).collect())
            .collect();
        assert_eq!(cut, [vec![0, 1], vec![2]]);
        let items = vec![item(0, "{\"a\":1}", 1), item(1, "{\"b\":2}", 1)];
        let cut = requests(items, 10, 12);
        assert_eq!(cut.len(), 2);
        assert!(cut.iter().all(|r| body(r).len() <= 12));
        assert_eq!(body(&cut[0]).parse::<Value>().unwrap(), json!([{"a": 1}]));
    }
}
