//! `ebb:braze` against a fake of Braze's REST API.

use super::assert_owed;
use crate::support::config::Config;
use crate::support::project::Project;
use crate::support::vendors::braze::Braze;
use crate::support::warehouse::Warehouse;

/// `users` into `ebb:braze` as `action`, deleting users of deleted
/// records, with `sync` lines added to the sync.
fn braze(wh: &Warehouse, fake: &Braze, api_key: &str, action: &str, sync: &str) -> String {
    Config::new(wh)
        .vendor(
            "braze",
            &fake.http.host(),
            &format!(
                r#"api_key = "{api_key}", endpoint = "{endpoint}", on_delete = "delete""#,
                endpoint = fake.http.endpoint()
            ),
        )
        .sync(&format!("action = \"{action}\""))
        .sync(sync)
        .render()
}

#[test]
fn braze_tracks_attributes_and_deletes_users_through_bad_keys_throttling_and_refused_objects() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let fake = Braze::start("rk_live");

    // A key Braze does not know: nothing is delivered, the error says what
    // to check, and every record stays owed.
    project.write_config(&braze(
        &wh,
        &fake,
        "rk_wrong",
        "attributes",
        "retry = { max_attempts = 1 }",
    ));
    assert_ne!(project.run().status(), "success");
    assert_owed(&project, &["1", "2", "3"], &["401", "check api_key"]);
    assert!(fake.objects("attributes").is_empty());

    // The right key behind one 429, and Braze refusing user 2's object:
    // retried after the reset, 1 and 3 delivered, only 2 owed.
    fake.gate.throttle(1);
    fake.fail("2", "'email' is not a valid email address");
    project.write_config(&braze(&wh, &fake, "rk_live", "attributes", ""));
    let run = project.run();
    run.assert_status("partial");
    assert_eq!(run.count("retried"), 3, "{:#?}", run.report);
    assert_owed(&project, &["2"], &["not a valid email address"]);
    let attributes = fake.objects("attributes");
    assert_eq!(attributes.len(), 2, "{attributes:#?}");
    let first = attributes
        .iter()
        .find(|a| a["external_id"] == "1")
        .expect("user 1");
    assert_eq!(
        *first,
        serde_json::json!({"external_id": "1", "id": 1, "email": "user1@example.com", "plan": "free"})
    );

    // A deleted record deletes its user; 2 is still refused.
    wh.exec("DELETE FROM users WHERE id = 3");
    project.run().assert_status("partial");
    assert_eq!(fake.deleted(), ["3"]);
    assert_eq!(project.errors().len(), 1);
    assert!(fake.problems().is_empty(), "{:#?}", fake.problems());
}

#[test]
fn braze_tracks_events_named_by_the_mapping() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    let fake = Braze::start("rk_live");
    project.write_config(&braze(
        &wh,
        &fake,
        "rk_live",
        "event",
        r#"mapping = { "name" = { static = "Plan Synced" }, "plan" = "plan" }"#,
    ));
    project.run_ok();
    let events = fake.objects("events");
    assert_eq!(events.len(), 2, "{events:#?}");
    let first = events
        .iter()
        .find(|e| e["external_id"] == "1")
        .expect("user 1");
    assert_eq!(first["name"], "Plan Synced");
    assert_eq!(first["properties"], serde_json::json!({"plan": "free"}));
    assert!(fake.problems().is_empty(), "{:#?}", fake.problems());
}
