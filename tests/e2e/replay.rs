//! `ebb replay SYNC --run N` sends again exactly the events run N
//! delivered, as the destination received them, and changes nothing in the
//! state: the next run still sends only what changed. Only the sync's last
//! `[state] keep_runs` runs keep their events. The scenario takes the
//! project so `state_postgres` runs it again with the state in Postgres.

use serde_json::Value;

use crate::changes::{all_added, change_events, change_users};
use crate::support::config::Config;
use crate::support::events::assert_events;
use crate::support::project::{Project, SYNC};
use crate::support::server::Server;
use crate::support::warehouse::Warehouse;

/// Replays `run` and returns its report and what the endpoint accepted.
fn replay(project: &Project, server: &Server, run: i64) -> (Value, Vec<Value>) {
    let before = server.accepted().len();
    let report = project.ebb_json(&["replay", SYNC, "--run", &run.to_string()]);
    (report, server.accepted()[before..].to_vec())
}

pub fn replay_resends_exactly_what_a_run_delivered(project: &Project) {
    let wh = Warehouse::sqlite(project);
    wh.insert_users(1..=10);
    let server = Server::start();
    let config = Config::new(&wh).http(&server, &server.host(), 4).render();
    project.write_config(&format!("[state]\nkeep_runs = 2\n{config}"));

    let first = project.run_ok();
    assert_events(&server.accepted(), &all_added(1..=10));
    change_users(&wh);
    let second = project.run_ok();
    let second_delivered = server.accepted()[10..].to_vec();
    assert_events(&second_delivered, &change_events());

    let (report, sent) = replay(project, &server, first.run_id());
    assert_eq!(
        (report["sent"].as_u64(), report["ok"].as_u64()),
        (Some(10), Some(10)),
        "{report}"
    );
    assert_eq!(
        sent,
        server.accepted()[..10],
        "the same events, in the same order"
    );
    let (_, sent) = replay(project, &server, second.run_id());
    assert_eq!(sent, second_delivered);

    // The state is untouched: nothing changed, so nothing is sent.
    let third = project.run_ok();
    assert_eq!(third.count("sent"), 0, "{}", third.report);

    // Runs 2 and 3 are the last two: run 1's events are no longer kept.
    let refused = project.ebb(&["replay", SYNC, "--run", &first.run_id().to_string()]);
    assert_eq!(refused.code, Some(1), "{}", refused.text());
    assert!(
        refused.text().contains("keep_runs"),
        "names the setting: {}",
        refused.text()
    );
    let (_, sent) = replay(project, &server, second.run_id());
    assert_eq!(sent, second_delivered);
}

#[test]
fn replay_resends_exactly_what_a_run_delivered_with_sqlite_state() {
    replay_resends_exactly_what_a_run_delivered(&Project::new());
}
