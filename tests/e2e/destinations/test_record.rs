//! `ebb test-record`: one record sent through the sync to the vendor, the
//! request shown with its secrets hidden, and nothing written: the next
//! run sends everything as if the test had not happened, under delivery
//! ids of its own.

use super::segment::segment;
use crate::support::project::{Project, SYNC};
use crate::support::vendors::segment::Segment;
use crate::support::warehouse::Warehouse;

#[test]
fn test_record_sends_one_record_shows_the_request_and_writes_nothing() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let fake = Segment::start("wk_live_secret");
    project.write_config(&segment(&wh, &fake, "wk_live_secret", "identify", ""));

    let out = project.ebb_ok(&["test-record", SYNC, "--key", "2"]);
    assert!(
        out.contains(&format!(
            "request 1: POST {}/v1/batch -> 200",
            fake.http.endpoint()
        )),
        "{out}"
    );
    assert!(out.contains("authorization: Basic ****"), "{out}");
    assert!(out.contains("event 2: ok"), "{out}");
    // Basic auth carries the key base64-encoded; neither form is shown.
    assert!(
        !out.contains("wk_live_secret") && !out.contains("d2tfbGl2ZV9zZWNyZXQ6"),
        "{out}"
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["userId"], "2");
    assert_eq!(calls[0]["traits"]["email"], "user2@example.com");
    let tested_id = calls[0]["messageId"].clone();

    // No state was written: the run sends all three, user 2 under an id
    // the vendor has not seen.
    let run = project.run_ok();
    assert_eq!(run.count("added"), 3, "{:#?}", run.report);
    let calls = fake.calls();
    let again = calls[1..].iter().find(|c| c["userId"] == "2").unwrap();
    assert_ne!(again["messageId"], tested_id);
    assert_eq!(project.history().len(), 1);

    // JSON for scripts; a record the state knows goes as an update.
    let tested = project.ebb_json(&["test-record", SYNC, "--key", "3"]);
    assert_eq!(tested["events"][0]["op"], "updated", "{tested:#}");
    assert_eq!(tested["requests"][0]["status"], 200, "{tested:#}");
    assert_eq!(tested["outcomes"][0]["outcome"], "ok", "{tested:#}");
    assert!(fake.problems().is_empty(), "{:#?}", fake.problems());
}

#[test]
fn test_record_says_what_went_wrong() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    let fake = Segment::start("wk_live");

    // Without --key, the first row; a key the vendor refuses fails the
    // command and shows the vendor's answer.
    project.write_config(&segment(&wh, &fake, "wk_wrong", "identify", ""));
    let out = project.ebb(&["test-record", SYNC]);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("-> 401"), "{}", out.stdout);
    assert!(out.stdout.contains("event 1: "), "{}", out.stdout);
    assert!(fake.calls().is_empty());

    // A key the model does not return is named.
    project.write_config(&segment(&wh, &fake, "wk_live", "identify", ""));
    let out = project.ebb(&["test-record", SYNC, "--key", "99"]);
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("returns no row whose `id` is \"99\""),
        "{}",
        out.stderr
    );
    assert!(project.history().is_empty());
}
