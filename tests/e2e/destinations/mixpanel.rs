//! `ebb:mixpanel` against a fake of Mixpanel's ingestion API.

use serde_json::{Value, json};

use super::assert_owed;
use crate::support::config::{Config, USERS_QUERY};
use crate::support::project::Project;
use crate::support::vendors::mixpanel::Mixpanel;
use crate::support::warehouse::Warehouse;

/// The users as events: a name and a time for each.
const EVENTS_QUERY: &str =
    "SELECT id, email, plan, 'Signed Up' AS event, 1714557600 + id AS time FROM users ORDER BY id";

/// `query` into `ebb:mixpanel` as `action`, the service account's secret
/// being `secret`, with `sync` added to the sync.
fn mixpanel(
    wh: &Warehouse,
    fake: &Mixpanel,
    query: &str,
    action: &str,
    secret: &str,
    sync: &str,
) -> String {
    Config::new(wh)
        .query(query)
        .vendor(
            "mixpanel",
            &fake.http.host(),
            &format!(
                r#"project_id = 42, service_account = "sa.ebb", secret = "{secret}", project_token = "tok", endpoint = "{endpoint}""#,
            endpoint = fake.http.endpoint()
            ),
        )
        .sync(&format!("action = \"{action}\""))
        .sync(sync)
        .render()
}

/// The ids of the profiles `updates` made with `operation`, sorted.
fn profiles_with(updates: &[Value], operation: &str) -> Vec<String> {
    let mut ids: Vec<String> = updates
        .iter()
        .filter(|u| u.get(operation).is_some())
        .map(|u| u["$distinct_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn mixpanel_imports_events_through_bad_credentials_throttling_and_refused_records() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let fake = Mixpanel::start("42", "sa.ebb", "s3cret", "tok");

    // A secret Mixpanel does not know: nothing is imported, the error
    // says so, and every record stays owed.
    let once = "retry = { max_attempts = 1 }";
    project.write_config(&mixpanel(&wh, &fake, EVENTS_QUERY, "track", "wrong", once));
    let run = project.run();
    assert_ne!(run.status(), "success");
    assert_owed(&project, &["1", "2", "3"], &["401"]);
    assert!(fake.events().is_empty());

    // The right secret, behind one 429, and Mixpanel refusing user 2's
    // event: retried, then 1 and 3 imported and only 2 owed.
    fake.gate.throttle(1);
    fake.refuse(&["2"]);
    project.write_config(&mixpanel(&wh, &fake, EVENTS_QUERY, "track", "s3cret", ""));
    let run = project.run();
    run.assert_status("partial");
    assert_eq!(run.count("retried"), 3, "{:#?}", run.report);
    assert_owed(
        &project,
        &["2"],
        &["Mixpanel refused the event (properties.distinct_id)"],
    );
    let events = fake.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    let first = events
        .iter()
        .find(|e| e["properties"]["distinct_id"] == "1");
    let first = first.expect("user 1's event");
    assert_eq!(first["event"], "Signed Up");
    let mut properties = first["properties"].clone();
    assert!(
        properties["$insert_id"]
            .as_str()
            .is_some_and(|id| id.len() == 32)
    );
    properties.as_object_mut().unwrap().remove("$insert_id");
    assert_eq!(
        properties,
        json!({"id": 1, "email": "user1@example.com", "plan": "free",
               "time": 1_714_557_601_000_i64, "distinct_id": "1"})
    );

    // Accepted once Mixpanel takes it; a deletion sends no event.
    fake.refuse(&[]);
    project.run_ok();
    assert_eq!(fake.events().len(), 3);
    wh.exec("DELETE FROM users WHERE id = 3");
    project.run_ok();
    assert_eq!(fake.events().len(), 3);
    assert!(project.errors().is_empty());
    assert!(fake.problems().is_empty(), "{:#?}", fake.problems());
}

#[test]
fn mixpanel_sets_user_profiles_finds_the_refused_one_and_deletes() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=4);
    let fake = Mixpanel::start("42", "sa.ebb", "s3cret", "tok");

    // Mixpanel refuses the request holding user 2's update: it is split
    // until only 2 is refused, and the others are set.
    fake.refuse(&["2"]);
    project.write_config(&mixpanel(&wh, &fake, USERS_QUERY, "user", "s3cret", ""));
    project.run().assert_status("partial");
    assert_owed(&project, &["2"], &["Mixpanel refused the profile update"]);
    let updates = fake.profiles();
    assert_eq!(profiles_with(&updates, "$set"), ["1", "3", "4"]);
    let one = updates.iter().find(|u| u["$distinct_id"] == "1").unwrap();
    assert_eq!(
        *one,
        json!({"$token": "tok", "$distinct_id": "1", "$ignore_time": true,
               "$set": {"id": 1, "email": "user1@example.com", "plan": "free"}})
    );

    // Once accepted, 2 is set; user 1 deleted deletes its profile.
    fake.refuse(&[]);
    wh.exec("DELETE FROM users WHERE id = 1");
    project.run_ok();
    let updates: Vec<Value> = fake.profiles().split_off(3);
    assert_eq!(profiles_with(&updates, "$set"), ["2"]);
    assert_eq!(profiles_with(&updates, "$delete"), ["1"]);
    assert!(project.errors().is_empty());
    assert!(fake.problems().is_empty(), "{:#?}", fake.problems());
}
