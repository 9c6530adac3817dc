//! `ebb:segment` against a fake of Segment's Tracking API.

use serde_json::{Value, json};

use super::assert_owed;
use crate::support::config::Config;
use crate::support::project::Project;
use crate::support::vendors::segment::Segment;
use crate::support::warehouse::Warehouse;

/// `users` into `ebb:segment` as `action`, with `extra` lines in the
/// destination's config table and the sync.
pub(super) fn segment(
    wh: &Warehouse,
    fake: &Segment,
    write_key: &str,
    action: &str,
    sync: &str,
) -> String {
    Config::new(wh)
        .vendor(
            "segment",
            &fake.http.host(),
            &format!(
                r#"write_key = "{write_key}", endpoint = "{endpoint}", on_delete = "track""#,
                endpoint = fake.http.endpoint()
            ),
        )
        .sync(&format!("action = \"{action}\""))
        .sync(sync)
        .render()
}

#[test]
fn segment_identifies_tracks_deletions_and_survives_throttling_and_bad_keys() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let fake = Segment::start("wk_live");

    // A write key the vendor does not know: nothing is delivered, the
    // error says so, and every record stays owed.
    project.write_config(&segment(
        &wh,
        &fake,
        "wk_wrong",
        "identify",
        "retry = { max_attempts = 1 }",
    ));
    let run = project.run();
    assert_ne!(run.status(), "success");
    assert_owed(&project, &["1", "2", "3"], &["401"]);

    // The right key, behind one 429: retried, then all three identified.
    fake.gate.throttle(1);
    project.write_config(&segment(&wh, &fake, "wk_live", "identify", ""));
    let run = project.run_ok();
    assert_eq!(run.count("retried"), 3, "{:#?}", run.report);
    let calls = fake.calls();
    assert_eq!(calls.len(), 3, "{calls:#?}");
    let first = calls.iter().find(|c| c["userId"] == "1").expect("user 1");
    assert_eq!(first["type"], "identify");
    assert_eq!(
        first["traits"],
        json!({"id": 1, "email": "user1@example.com", "plan": "free"})
    );
    let ids: std::collections::HashSet<&str> = calls
        .iter()
        .map(|c| c["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "each change has its own messageId");

    // A deletion becomes a track of "Record Deleted" with the last traits.
    wh.exec("DELETE FROM users WHERE id = 2");
    project.run_ok();
    let calls = fake.calls();
    let deleted: Vec<&Value> = calls.iter().skip(3).collect();
    assert_eq!(deleted.len(), 1, "{deleted:#?}");
    assert_eq!(deleted[0]["type"], "track");
    assert_eq!(deleted[0]["event"], "Record Deleted");
    assert_eq!(deleted[0]["userId"], "2");
    assert!(fake.problems().is_empty(), "{:#?}", fake.problems());
}
