//! `ebb:customerio` against a fake of Customer.io's Track API v2.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::assert_owed;
use crate::support::config::Config;
use crate::support::project::Project;
use crate::support::vendors::customerio::CustomerIo;
use crate::support::warehouse::Warehouse;

/// `config` (a `Config` of the model) into `ebb:customerio` as `action`,
/// with `api_key`, `settings` added to the plugin's config and `sync`
/// lines in the sync.
fn customerio(
    config: Config,
    fake: &CustomerIo,
    api_key: &str,
    action: &str,
    settings: &str,
    sync: &str,
) -> String {
    config
        .vendor(
            "customerio",
            &fake.http.host(),
            &format!(
                r#"site_id = "site", api_key = "{api_key}", endpoint = "{endpoint}"{settings}"#,
                endpoint = fake.http.endpoint()
            ),
        )
        .sync(&format!("action = \"{action}\""))
        .sync(sync)
        .render()
}

#[test]
fn customerio_identifies_people_refuses_one_deletes_and_survives_throttling_and_bad_keys() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let fake = CustomerIo::start("site", "live");
    let people = |api_key: &str, sync: &str| {
        let settings = r#", on_delete = "delete""#;
        customerio(
            Config::new(&wh),
            &fake,
            api_key,
            "identify_person",
            settings,
            sync,
        )
    };

    // A key the workspace does not know: nothing is delivered, the error
    // says so, and every record stays owed.
    project.write_config(&people("wrong", "retry = { max_attempts = 1 }"));
    let run = project.run();
    assert_ne!(run.status(), "success");
    assert_owed(&project, &["1", "2", "3"], &["401"]);
    assert!(fake.entries().is_empty());

    // The right key, behind one 429, with person 2 refused by a 207: the
    // batch is retried, then 1 and 3 are identified and only 2 is owed.
    fake.gate.throttle(1);
    fake.reject(&["2"]);
    project.write_config(&people("live", ""));
    let run = project.run();
    run.assert_status("partial");
    assert_eq!(run.count("retried"), 3, "{:#?}", run.report);
    assert_owed(&project, &["2"], &["Customer.io refused the entry"]);
    let entries = fake.entries();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let first = entries
        .iter()
        .find(|e| e["identifiers"] == json!({"id": "1"}))
        .expect("person 1");
    assert_eq!(
        *first,
        json!({
            "type": "person",
            "action": "identify",
            "identifiers": {"id": "1"},
            "attributes": {"email": "user1@example.com", "plan": "free"}
        })
    );
    assert!(
        entries
            .iter()
            .any(|e| e["identifiers"] == json!({"id": "3"}))
    );

    // Once accepted, 2 is delivered; a deleted row deletes the person.
    fake.reject(&[]);
    wh.exec("DELETE FROM users WHERE id = 1");
    project.run_ok();
    assert!(project.errors().is_empty(), "{:#?}", project.errors());
    let later: Vec<Value> = fake.entries().split_off(2);
    assert_eq!(later.len(), 2, "{later:#?}");
    assert!(
        later.contains(&json!({"type": "person", "action": "delete", "identifiers": {"id": "1"}})),
        "{later:#?}"
    );
    assert!(
        later
            .iter()
            .any(|e| e["action"] == "identify" && e["identifiers"] == json!({"id": "2"})),
        "{later:#?}"
    );
    assert!(fake.problems().is_empty(), "{:#?}", fake.problems());
}

#[test]
fn customerio_identifies_objects_related_to_people_from_a_column() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=4);
    let fake = CustomerIo::start("site", "live");
    let plans = Config::new(&wh)
        .query(
            "SELECT plan AS object_id, COUNT(*) AS seats, group_concat(id) AS cio_relationships \
             FROM users GROUP BY plan ORDER BY plan",
        )
        .primary_key("object_id");
    let settings = r#", object_type_id = "1""#;
    project.write_config(&customerio(
        plans,
        &fake,
        "live",
        "identify_object",
        settings,
        "",
    ));
    project.run_ok();

    let entries = fake.entries();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let free = entries
        .iter()
        .find(|e| e["identifiers"]["object_id"] == "free")
        .expect("the free plan");
    assert_eq!(free["type"], "object");
    assert_eq!(free["action"], "identify");
    assert_eq!(free["identifiers"]["object_type_id"], "1");
    assert_eq!(free["attributes"], json!({"seats": 2}));
    let people: BTreeSet<&str> = free["cio_relationships"]
        .as_array()
        .expect("relationships")
        .iter()
        .map(|r| r["identifiers"]["id"].as_str().expect("a person's id"))
        .collect();
    assert_eq!(people, BTreeSet::from(["1", "3"]));
    assert!(fake.problems().is_empty(), "{:#?}", fake.problems());
}
