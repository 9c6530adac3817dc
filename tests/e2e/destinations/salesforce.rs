//! `ebb:salesforce` against a fake Salesforce org.

use serde_json::json;

use super::assert_owed;
use crate::support::config::Config;
use crate::support::project::Project;
use crate::support::vendors::salesforce::{Org, Salesforce};
use crate::support::warehouse::Warehouse;

const ORG: Org = Org {
    client_id: "cid",
    client_secret: "cs_live",
    refresh_token: "rt_live",
    object: "Contact",
    external_id: "External_Id__c",
};

/// `users` upserted into Contacts by `ebb:salesforce` with `client_secret`,
/// deletions deleted, and `sync` lines added to the sync. No `endpoint`:
/// requests go to the instance URL the token names.
fn salesforce(wh: &Warehouse, fake: &Salesforce, client_secret: &str, sync: &str) -> String {
    Config::new(wh)
        .vendor(
            "salesforce",
            &fake.http.host(),
            &format!(
                r#"login_url = "{login}", client_id = "{id}", client_secret = "{client_secret}", object = "{object}", external_id = "{field}", on_delete = "delete""#,
            login = fake.http.endpoint(),
            id = ORG.client_id,
            object = ORG.object,
            field = ORG.external_id
            ),
        )
        .sync("action = \"upsert\"")
        .sync(r#"mapping = { "Email" = "email", "Plan__c" = "plan" }"#)
        .sync(sync)
        .render()
}

#[test]
fn salesforce_upserts_by_external_id_deletes_and_survives_limits_refusals_and_bad_secrets() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let fake = Salesforce::start(ORG);

    // A secret the org does not know: no token, nothing delivered, every
    // record owed with the OAuth error.
    project.write_config(&salesforce(
        &wh,
        &fake,
        "cs_wrong",
        "retry = { max_attempts = 1 }",
    ));
    let run = project.run();
    assert_ne!(run.status(), "success");
    assert_owed(&project, &["1", "2", "3"], &["invalid_client"]);
    assert_eq!((fake.tokens(), fake.upserted().len()), (0, 0));

    // The right secret, behind one spent request limit, with record 2
    // refused by the org: retried, then 1 and 3 upserted, 2 owed.
    fake.gate.throttle(1);
    fake.fail("2");
    project.write_config(&salesforce(&wh, &fake, ORG.client_secret, ""));
    let run = project.run();
    run.assert_status("partial");
    assert_eq!(run.count("retried"), 3, "{:#?}", run.report);
    assert_eq!(fake.tokens(), 1, "one token for the run");
    let upserted = fake.upserted();
    assert_eq!(upserted.len(), 2, "{upserted:#?}");
    let first = upserted
        .iter()
        .find(|r| r["External_Id__c"] == "1")
        .expect("user 1");
    assert_eq!(
        *first,
        json!({
            "attributes": {"type": "Contact"},
            "External_Id__c": "1",
            "Email": "user1@example.com",
            "Plan__c": "free",
        })
    );
    assert!(upserted.iter().any(|r| r["External_Id__c"] == "3"));
    assert_owed(&project, &["2"], &["REQUIRED_FIELD_MISSING"]);

    // A deleted user's Contact is looked up by external id and deleted.
    wh.exec("DELETE FROM users WHERE id = 3");
    project.run();
    assert_eq!(fake.deleted(), ["3"]);
    assert_eq!(fake.tokens(), 2, "one token a run");
    assert!(fake.problems().is_empty(), "{:#?}", fake.problems());
}
