//! `ebb:hubspot` against a fake of HubSpot's CRM v3 batch API.

use serde_json::json;

use super::assert_owed;
use crate::support::config::Config;
use crate::support::project::Project;
use crate::support::vendors::hubspot::Hubspot;
use crate::support::warehouse::Warehouse;

/// `users` into `ebb:hubspot` as contacts matched on `email`, with the
/// private app token `token` and `extra` lines in the sync.
fn hubspot(wh: &Warehouse, fake: &Hubspot, token: &str, extra: &str) -> String {
    Config::new(wh)
        .vendor(
            "hubspot",
            &fake.http.host(),
            &format!(
                r#"token = "{token}", object = "contacts", id_property = "email", endpoint = "{endpoint}", on_delete = "archive""#,
            endpoint = fake.http.endpoint()
            ),
        )
        .sync("action = \"upsert\"")
        .sync(r#"mapping = { "email" = "email", "plan" = "plan" }"#)
        .sync(extra)
        .render()
}

#[test]
fn hubspot_upserts_archives_and_survives_bad_tokens_throttling_and_refused_records() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let fake = Hubspot::start("pat-live");

    // A token HubSpot does not know: nothing is delivered, the error says
    // so, and every record stays owed.
    project.write_config(&hubspot(
        &wh,
        &fake,
        "pat-wrong",
        "retry = { max_attempts = 1 }",
    ));
    let run = project.run();
    assert_ne!(run.status(), "success");
    assert_owed(&project, &["1", "2", "3"], &["401", "`token`"]);
    assert!(fake.upserted().is_empty());

    // The right token, behind one 429 (waited out as HubSpot's rate
    // headers ask) and with user 3's record refused: retried, then users
    // 1 and 2 upserted and only user 3 owed.
    fake.gate.throttle(1);
    fake.fail("user3@example.com");
    project.write_config(&hubspot(&wh, &fake, "pat-live", ""));
    let run = project.run();
    run.assert_status("partial");
    assert_eq!(run.count("retried"), 3, "{:#?}", run.report);
    assert_owed(&project, &["3"], &["VALIDATION_ERROR"]);
    let mut upserted = fake.upserted();
    upserted.sort_by_key(|input| input["id"].to_string());
    assert_eq!(
        upserted,
        [
            json!({"idProperty": "email", "id": "user1@example.com",
                   "properties": {"email": "user1@example.com", "plan": "free"}}),
            json!({"idProperty": "email", "id": "user2@example.com",
                   "properties": {"email": "user2@example.com", "plan": "pro"}}),
        ]
    );

    // A deleted user's contact is archived; user 3 is still refused.
    wh.exec("DELETE FROM users WHERE id = 2");
    project.run().assert_status("partial");
    assert_eq!(
        fake.archived(),
        [json!({"email": "user2@example.com", "plan": "pro"})]
    );
    assert_eq!(project.errors().len(), 1);
    assert!(fake.problems().is_empty(), "{:#?}", fake.problems());
}
