//! `user` and `group`: each record updates one profile, with
//! `POST /engage?verbose=1&ip=0` (users) or `POST /groups?verbose=1&ip=0`
//! (groups), the project token in every update.
//!
//! A profile is named by `$distinct_id` (users) or `$group_key` and
//! `$group_id` (groups): fields of those names when the record has them,
//! else the record's key (and the `group_key` setting). The other fields
//! are `$set`; fields the last delivered record had and this one lacks are
//! `$unset` in a second update. A deleted record's profile gets `$delete`
//! unless `on_delete = "skip"`. User updates carry `$ignore_time`, so a
//! sync does not move the profile's "last seen"; `ip=0` keeps Mixpanel
//! from placing profiles where Ebb runs.
//!
//! These endpoints answer for a request as a whole: `verbose=1` makes that
//! answer `{"status": 1, "error": null}` or `{"status": 0, "error": "…"}`,
//! naming no record. A refused request is split in halves and each is sent
//! again, down to the records at fault, which are rejected; the rest are
//! delivered. Every update is idempotent, so sending one twice is harmless.

use crate::{
    Config, Item, MAX_RECORDS, OnDelete, TIMEOUT, body, check_size, fail, needs, requests,
    take_text,
};
use ebb_sdk::{Error, Event, Op, Outcome, Record, http};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The most bytes of one request of profile updates: the ingestion API's
/// limit before `/import` allowed 10 MB, kept for profiles.
const MAX_PROFILE_BYTES: usize = 2_000_000;
/// The most requests one batch may spend finding the records at fault, so
/// a batch refused for a reason common to all its records (most often a
/// wrong project token) stops splitting early.
const SPLIT_REQUESTS: usize = 40;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::User => "/engage",
            Kind::Group => "/groups",
        }
    }

    /// The field holding the profile's id.
    fn id(self) -> &'static str {
        match self {
            Kind::User => "$distinct_id",
            Kind::Group => "$group_id",
        }
    }

    /// The fields that name a profile rather than describe it.
    fn identity(self) -> &'static [&'static str] {
        match self {
            Kind::User => &["$distinct_id"],
            Kind::Group => &["$group_key", "$group_id"],
        }
    }
}

/// The verbose answer of `/engage` and `/groups`.
#[derive(Deserialize)]
struct Verbose {
    status: i64,
    #[serde(default)]
    error: Option<String>,
}

/// How Mixpanel answered one request.
enum Answer {
    Accepted,
    /// `status: 0`: some update of the request is at fault.
    Refused(Error),
    /// Anything else (auth, rate limit, 5xx, the network) answers for all.
    Failed(Error),
}

pub fn write(config: &Config, kind: Kind, batch: &[Event]) -> Result<Vec<Outcome>, Error> {
    let token = needs(&config.project_token, "project_token", kind.name())?;
    let mut outcomes = vec![Outcome::Ok; batch.len()];
    let mut items = Vec::new();
    for (index, event) in batch.iter().enumerate() {
        match updates(config, kind, token, event) {
            Ok(updates) if updates.is_empty() => {}
            Ok(updates) => items.push(Item {
                index,
                objects: updates.len(),
                json: updates.join(","),
            }),
            Err(error) => outcomes[index] = Outcome::Reject(error),
        }
    }
    let url = config.url(kind.path());
    let mut budget = SPLIT_REQUESTS;
    for request in requests(items, MAX_RECORDS, MAX_PROFILE_BYTES) {
        send(&url, &request, &mut outcomes, &mut budget);
    }
    Ok(outcomes)
}

/// The updates (as JSON) a record's change makes to its profile.
fn updates(config: &Config, kind: Kind, token: &str, event: &Event) -> Result<Vec<String>, Error> {
    let deleted = event.op == Op::Deleted;
    if deleted && config.on_delete == OnDelete::Skip {
        return Ok(Vec::new());
    }
    let record = match (&event.previous, deleted) {
        (Some(previous), true) => previous,
        _ => &event.fields,
    };
    let mut fields = record.clone();
    let profile = profile(config, kind, token, &event.id, &mut fields)?;
    let update = |operation: &str, value: Value| {
        let mut update = profile.clone();
        update.insert(operation.into(), value);
        if kind == Kind::User {
            update.insert("$ignore_time".into(), true.into());
        }
        let json = Value::Object(update).to_string();
        check_size("profile update", &json).map(|()| json)
    };
    if deleted {
        return Ok(vec![update("$delete", "".into())?]);
    }
    let lost = lost_fields(kind, event.previous.as_ref(), record);
    let mut updates = vec![update("$set", Value::Object(fields))?];
    if !lost.is_empty() {
        updates.push(update("$unset", lost.into())?);
    }
    Ok(updates)
}

/// The `$token` and the names of the profile a record updates, taking the
/// naming fields out of `fields`.
fn profile(
    config: &Config,
    kind: Kind,
    token: &str,
    key: &str,
    fields: &mut Record,
) -> Result<Map<String, Value>, Error> {
    let mut profile = Map::new();
    profile.insert("$token".into(), token.into());
    if kind == Kind::Group {
        let Some(group_key) = take_text(fields, "$group_key").or_else(|| config.group_key.clone())
        else {
            return Err(Error::rejected(
                "a group profile needs its group key: set `group_key` in the destination's \
                 config, or map a column to `$group_key`",
            ));
        };
        profile.insert("$group_key".into(), group_key.into());
    }
    let id = take_text(fields, kind.id()).unwrap_or_else(|| key.to_owned());
    profile.insert(kind.id().into(), id.into());
    Ok(profile)
}

/// The fields `previous` had that `record` lacks, in order; never the
/// fields that name the profile.
fn lost_fields(kind: Kind, previous: Option<&Record>, record: &Record) -> Vec<Value> {
    previous
        .into_iter()
        .flat_map(|previous| previous.keys())
        .filter(|name| !record.contains_key(*name) && !kind.identity().contains(&name.as_str()))
        .map(|name| name.clone().into())
        .collect()
}

/// Sends `items` in one request and writes their outcomes. A refused
/// request of several records is split in halves, each sent again, while
/// `budget` allows another two requests; past it, the records of a refused
/// request are rejected together.
fn send(url: &str, items: &[Item], outcomes: &mut [Outcome], budget: &mut usize) {
    match answer(url, items) {
        Answer::Accepted => {}
        Answer::Refused(_) if items.len() > 1 && *budget >= 2 => {
            *budget -= 2;
            let (left, right) = items.split_at(items.len() / 2);
            send(url, left, outcomes, budget);
            send(url, right, outcomes, budget);
        }
        Answer::Refused(error) | Answer::Failed(error) => fail(items, error, outcomes),
    }
}

fn answer(url: &str, items: &[Item]) -> Answer {
    let sent = http::post(url)
        .query("verbose", "1")
        .query("ip", "0")
        .header("content-type", "application/json")
        .body(body(items))
        .timeout(TIMEOUT)
        .send();
    let response = match sent {
        Ok(response) => response,
        Err(error) => return Answer::Failed(error),
    };
    if let Some(error) = response.error() {
        return Answer::Failed(error);
    }
    match response.json::<Verbose>() {
        Ok(Verbose { status: 1, .. }) => Answer::Accepted,
        Ok(Verbose { error, .. }) => Answer::Refused(Error::rejected(format!(
            "Mixpanel refused the profile update: {}",
            error.as_deref().unwrap_or("no reason given")
        ))),
        Err(error) => Answer::Failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mixpanel;
    use ebb_sdk::ErrorKind;
    use ebb_sdk::testing::{self, MockHttp, Reply};
    use serde_json::json;

    const OK: &str = r#"{"status": 1, "error": null}"#;

    fn config() -> Value {
        json!({"project_token": "tok", "endpoint": "https://mp.example", "group_key": "company_id"})
    }

    fn sent(mock: &MockHttp) -> Vec<Value> {
        mock.requests()
            .iter()
            .flat_map(|r| r.body_json::<Vec<Value>>().unwrap())
            .collect()
    }

    fn updated(id: &str, fields: Value, previous: Value) -> Event {
        let mut event = testing::event(Op::Updated, id, fields);
        event.previous = previous.as_object().cloned();
        event
    }

    #[test]
    fn users_are_set_and_lost_fields_unset() {
        let mock = MockHttp::new().respond(200, OK);
        let batch = vec![
            testing::event(
                Op::Added,
                "1",
                json!({"$email": "ada@example.com", "plan": "pro"}),
            ),
            updated(
                "2",
                json!({"$distinct_id": "u-2", "plan": "free"}),
                json!({"$distinct_id": "u-2", "plan": "pro", "trial": true}),
            ),
        ];
        let outcomes = testing::write::<Mixpanel>(config(), "user", batch);
        assert_eq!(outcomes, Ok(vec![Outcome::Ok, Outcome::Ok]));
        let request = &mock.requests()[0];
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.url(), "https://mp.example/engage?verbose=1&ip=0");
        assert_eq!(request.header("authorization"), None);
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            sent(&mock),
            [
                json!({"$token": "tok", "$distinct_id": "1", "$ignore_time": true,
                       "$set": {"$email": "ada@example.com", "plan": "pro"}}),
                json!({"$token": "tok", "$distinct_id": "u-2", "$ignore_time": true,
                       "$set": {"plan": "free"}}),
                json!({"$token": "tok", "$distinct_id": "u-2", "$ignore_time": true,
                       "$unset": ["trial"]}),
            ]
        );
    }

    #[test]
    fn groups_need_a_group_key() {
        let mock = MockHttp::new().respond(200, OK);
        let batch = vec![
            testing::event(Op::Added, "acme", json!({"name": "Acme"})),
            testing::event(
                Op::Added,
                "7",
                json!({"$group_key": "team_id", "$group_id": 70}),
            ),
        ];
        let outcomes = testing::write::<Mixpanel>(config(), "group", batch).unwrap();
        assert_eq!(outcomes, [Outcome::Ok, Outcome::Ok]);
        assert_eq!(mock.requests()[0].path(), "/groups");
        assert_eq!(
            sent(&mock),
            [
                json!({"$token": "tok", "$group_key": "company_id", "$group_id": "acme", "$set": {"name": "Acme"}}),
                json!({"$token": "tok", "$group_key": "team_id", "$group_id": "70", "$set": {}}),
            ]
        );

        let mut keyless = config();
        keyless.as_object_mut().unwrap().remove("group_key");
        let batch = vec![testing::event(Op::Added, "acme", json!({}))];
        let outcomes = testing::write::<Mixpanel>(keyless, "group", batch).unwrap();
        assert!(
            matches!(&outcomes[0], Outcome::Reject(e) if e.message.contains("set `group_key`"))
        );
    }

    #[test]
    fn deletions_delete_the_profile_or_are_skipped() {
        let gone = || {
            vec![testing::deleted(
                "3",
                json!({"$distinct_id": "u-3", "plan": "pro"}),
            )]
        };
        let mock = MockHttp::new().respond(200, OK);
        testing::write::<Mixpanel>(config(), "user", gone()).unwrap();
        assert_eq!(
            sent(&mock),
            [json!({"$token": "tok", "$distinct_id": "u-3", "$ignore_time": true, "$delete": ""})]
        );

        let mut skip = config();
        skip["on_delete"] = "skip".into();
        let outcomes = testing::write::<Mixpanel>(skip, "user", gone());
        assert_eq!(outcomes, Ok(vec![Outcome::Ok]));
        assert_eq!(mock.requests().len(), 1);
    }

    #[test]
    fn a_refused_request_is_split_down_to_the_records_at_fault() {
        // Four users; the request, its first half and the record "2" are
        // refused, everything else accepted.
        let refused = r#"{"status": 0, "error": "$set is not a JSON object"}"#;
        let mock = MockHttp::new()
            .respond(200, refused) // 1 2 3 4
            .respond(200, refused) // 1 2
            .respond(200, OK) //      1
            .respond(200, refused) // 2
            .respond(200, OK); //     3 4
        let batch = (1..=4)
            .map(|i| testing::event(Op::Added, i.to_string(), json!({"n": i})))
            .collect();
        let outcomes = testing::write::<Mixpanel>(config(), "user", batch).unwrap();
        assert_eq!(outcomes[0], Outcome::Ok);
        assert_eq!(
            outcomes[1],
            Outcome::Reject(Error::rejected(
                "Mixpanel refused the profile update: $set is not a JSON object"
            ))
        );
        assert_eq!(outcomes[2..], [Outcome::Ok, Outcome::Ok]);
        let ids: Vec<Vec<String>> = mock
            .requests()
            .iter()
            .map(|r| {
                let updates = r.body_json::<Vec<Value>>().unwrap();
                updates
                    .iter()
                    .map(|u| u["$distinct_id"].as_str().unwrap().to_owned())
                    .collect()
            })
            .collect();
        assert_eq!(
            ids,
            [
                vec!["1", "2", "3", "4"],
                vec!["1", "2"],
                vec!["1"],
                vec!["2"],
                vec!["3", "4"]
            ]
        );
    }

    #[test]
    fn splitting_stops_when_its_budget_is_spent() {
        let mock = MockHttp::new().route(
            http::Method::POST,
            "/engage",
            Reply::status(200).body(r#"{"status": 0, "error": "invalid token"}"#),
        );
        let batch = (0..1000)
            .map(|i| testing::event(Op::Added, i.to_string(), json!({})))
            .collect();
        let outcomes = testing::write::<Mixpanel>(config(), "user", batch).unwrap();
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Outcome::Reject(e) if e.message.ends_with("invalid token")))
        );
        assert_eq!(mock.requests().len(), 1 + SPLIT_REQUESTS);
    }

    #[test]
    fn failures_answer_for_the_request() {
        let _mock = MockHttp::new()
            .reply(Reply::status(401).json(&json!({"error": "Invalid token", "status": "error"})))
            .reply(Reply::status(429).header("Retry-After", "5"))
            .respond(503, "unavailable")
            .respond(200, "<html>");
        let write = || {
            let batch = vec![
                testing::event(Op::Added, "1", json!({})),
                testing::event(Op::Added, "2", json!({})),
            ];
            testing::write::<Mixpanel>(config(), "user", batch).unwrap()
        };
        let auth = write();
        assert!(
            auth.iter()
                .all(|o| matches!(o, Outcome::Reject(e) if e.kind == ErrorKind::Auth)),
            "{auth:?}"
        );
        let limited = write();
        assert!(
            limited
                .iter()
                .all(|o| matches!(o, Outcome::Retry(e) if e.retry_after_ms == Some(5000))),
            "{limited:?}"
        );
        let down = write();
        assert!(
            down.iter()
                .all(|o| matches!(o, Outcome::Retry(e) if e.kind == ErrorKind::Transient)),
            "{down:?}"
        );
        let garbled = write();
        assert!(
            garbled.iter().all(
                |o| matches!(o, Outcome::Reject(e) if e.message.contains("not the JSON expected"))
            ),
            "{garbled:?}"
        );

        let error = testing::write::<Mixpanel>(json!({}), "group", vec![]).unwrap_err();
        assert_eq!(
            error.message,
            "the group action needs `project_token` in the destination's config"
        );
    }
}
