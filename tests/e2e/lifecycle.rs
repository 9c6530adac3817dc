//! The operator's commands around runs: `plan` shows what would be sent and
//! changes nothing, `reset` forgets what was synced, `history` lists runs.
//! The scenarios take the project so `state_postgres` runs them again with
//! the state in Postgres.

use serde_json::Value;

use crate::changes::{all_added, with};
use crate::support::config::Config;
use crate::support::events::{added, assert_events, deleted, updated};
use crate::support::project::{Project, SYNC};
use crate::support::server::Server;
use crate::support::warehouse::{Warehouse, user};
use crate::transform_limits::{names_the_transform, transform};

#[test]
fn plan_shows_pending_events_and_sends_nothing() {
    plans_without_sending(&Project::new());
}

#[test]
fn reset_makes_the_next_run_send_everything_as_added() {
    reset_resends_everything(&Project::new());
}

#[test]
fn history_lists_runs_newest_first_with_statuses() {
    history_lists_runs(&Project::new());
}

pub fn plans_without_sending(project: &Project) {
    let wh = Warehouse::sqlite(project);
    wh.insert_users(1..=4);
    project.write_config(&Config::new(&wh).render());

    assert_events(&project.plan(), &all_added(1..=4));
    assert_events(&project.plan(), &all_added(1..=4));
    assert_events(&project.take_delivered(), &[]);

    project.run_ok();
    assert_events(&project.take_delivered(), &all_added(1..=4));

    wh.exec("UPDATE users SET plan = 'enterprise' WHERE id = 2");
    wh.exec("DELETE FROM users WHERE id = 3");
    let pending = [
        updated(with(user(2), "plan", "enterprise"), user(2)),
        deleted(user(3)),
    ];
    assert_events(&project.plan(), &pending);
    assert_events(&project.take_delivered(), &[]);

    project.run_ok();
    assert_events(&project.take_delivered(), &pending);
    assert_events(&project.plan(), &[]);
}

pub fn reset_resends_everything(project: &Project) {
    let wh = Warehouse::sqlite(project);
    wh.insert_users(1..=4);
    project.write_config(&Config::new(&wh).render());
    project.run_ok();
    wh.exec("UPDATE users SET plan = 'enterprise' WHERE id = 2");
    project.run_ok();
    project.take_delivered();

    project.ebb_ok(&["reset", SYNC]);
    project.run_ok();
    assert_events(
        &project.take_delivered(),
        &[
            added(user(1)),
            added(with(user(2), "plan", "enterprise")),
            added(user(3)),
            added(user(4)),
        ],
    );
    project.run_ok();
    assert_events(&project.take_delivered(), &[]);
}

pub fn history_lists_runs(project: &Project) {
    let wh = Warehouse::sqlite(project);
    wh.insert_users(1..=4);
    let server = Server::start();
    let http = Config::new(&wh).http(&server, &server.host(), 10);

    server.reject("2", "bad email");
    project.write_config(&http.render());
    let partial = project.run();
    partial.assert_status("partial");

    project.write_config(
        &Config::new(&wh)
            .http(&server, &server.host(), 10)
            .sync(&transform("trap"))
            .render(),
    );
    let failed = project.run();
    failed.assert_status("failed");

    server.accept_all();
    project.write_config(&http.render());
    let success = project.run_ok();

    let history = project.history();
    let summary: Vec<(i64, &str)> = history
        .iter()
        .map(|run| {
            (
                run["run_id"].as_i64().expect("run_id"),
                run["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (success.run_id(), "success"),
            (failed.run_id(), "failed"),
            (partial.run_id(), "partial"),
        ],
        "{history:#?}"
    );
    for run in &history {
        assert!(run["started_at"].is_string(), "{run}");
        assert!(run["finished_at"].is_string(), "{run}");
    }
    assert_eq!(history[0]["error"], Value::Null);
    assert!(
        history[1]["error"]
            .as_str()
            .is_some_and(names_the_transform),
        "{}",
        history[1]
    );
    assert_eq!(history[2]["counts"]["extracted"], 4);
    assert_eq!(history[2]["counts"]["rejected"], 1);
    assert_eq!(
        history[0]["counts"]["ok"], 1,
        "only the refused row was owed"
    );
}
