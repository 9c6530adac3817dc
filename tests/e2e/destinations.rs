//! The first-party destinations against local fakes of their vendors'
//! APIs: what a run sends is what the vendor's reference asks for, the
//! vendor's refusals and throttling are handled, and nothing is lost.
//! Every sync to one destination shares its rate budget.

use serde_json::{Value, json};

use crate::support::config::Config;
use crate::support::project::{Project, SYNC};
use crate::support::server::Server;
use crate::support::serving::{Serving, server_toml};
use crate::support::vendors::segment::Segment;
use crate::support::warehouse::Warehouse;

/// `users` into `ebb:segment` as `action`, with `extra` lines in the
/// destination's config table and the sync.
fn segment(wh: &Warehouse, fake: &Segment, write_key: &str, action: &str, sync: &str) -> String {
    Config::new(wh)
        .destination(&format!(
            r#"[destinations.out]
plugin = "ebb:segment"
allow_hosts = ["{host}"]
config = {{ write_key = "{write_key}", endpoint = "{endpoint}", on_delete = "track" }}
"#,
            host = fake.host(),
            endpoint = fake.endpoint(),
        ))
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
    let errors = project.errors();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(format!("{errors:?}").contains("401"), "{errors:#?}");

    // The right key, behind one 429: retried, then all three identified.
    fake.throttle(1);
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

/// Two syncs to one destination with a budget of 4 requests a second,
/// running at once under `ebb serve`, together send at most 4 a second,
/// and both deliver everything.
#[test]
fn syncs_to_one_destination_share_its_request_budget() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=6);
    let server = Server::start();
    let config = Config::new(&wh)
        .http(&server, &server.host(), 1)
        .destination_setting("rate = { requests_per_sec = 4 }")
        .render()
        .replace("max_in_flight = 1", "max_in_flight = 4");
    project.write_config(&format!(
        "{config}\n[syncs.users_again]\nmodel = \"users\"\ndestination = \"out\"\n{}",
        server_toml()
    ));
    let mut serving = Serving::start(&project);
    let runs = [SYNC, "users_again"].map(|sync| (sync, serving.trigger(sync)));
    for (sync, run) in runs {
        let run = serving.finished(sync, run);
        assert_eq!(run["status"], "success", "{sync}: {run:#}");
    }

    let requests = server.requests();
    assert_eq!(requests.len(), 12, "six rows, one request each, per sync");
    let first = requests.first().unwrap().at;
    let span = requests.last().unwrap().at - first;
    // Slots are 250 ms apart when requests leave; arriving, one may be a
    // few milliseconds late and the next on time, so a window of 1 s may
    // see the fifth slot at its edge, never more.
    for (i, request) in requests.iter().enumerate() {
        let within_a_second = requests[i..]
            .iter()
            .take_while(|r| r.at - request.at < std::time::Duration::from_secs(1))
            .count();
        assert!(
            within_a_second <= 5,
            "{within_a_second} requests within 1 s"
        );
    }
    let per_sec = (requests.len() - 1) as f64 / span.as_secs_f64();
    assert!(per_sec <= 4.0 * 1.05, "{per_sec:.2} requests a second");
}
