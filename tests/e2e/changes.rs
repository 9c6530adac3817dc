//! The core promise: each run delivers exactly the changes since the last
//! committed one, with the right `op`, `fields` and `previous`, and `on`
//! filters what is sent without holding back what is committed.
//! The scenarios take the warehouse so `postgres_source` reuses them.

use serde_json::{Value, json};

use crate::support::config::Config;
use crate::support::events::{added, assert_events, deleted, updated};
use crate::support::project::{Project, Run};
use crate::support::warehouse::{Warehouse, user};

/// Users 2 and 3 move to the enterprise plan, 4 changes email, 5 and 8
/// leave, 11 joins.
pub fn change_users(wh: &Warehouse) {
    wh.exec("UPDATE users SET plan = 'enterprise' WHERE id IN (2, 3)");
    wh.exec("UPDATE users SET email = 'new4@example.com' WHERE id = 4");
    wh.exec("DELETE FROM users WHERE id IN (5, 8)");
    wh.insert_users([11]);
}

/// `user(id)` with one field replaced.
pub fn with(mut fields: Value, key: &str, value: &str) -> Value {
    fields[key] = json!(value);
    fields
}

/// The six events [`change_users`] causes after users 1–10 were synced.
pub fn change_events() -> Vec<Value> {
    vec![
        updated(with(user(2), "plan", "enterprise"), user(2)),
        updated(with(user(3), "plan", "enterprise"), user(3)),
        updated(with(user(4), "email", "new4@example.com"), user(4)),
        deleted(user(5)),
        deleted(user(8)),
        added(user(11)),
    ]
}

pub fn all_added(ids: impl IntoIterator<Item = i64>) -> Vec<Value> {
    ids.into_iter().map(|id| added(user(id))).collect()
}

pub fn assert_counts(run: &Run, expected: &[(&str, u64)]) {
    for (name, want) in expected {
        assert_eq!(
            run.count(name),
            *want,
            "count {name:?} in run report {}",
            run.report
        );
    }
}

/// How many rows a run reads: all `rows` of the model, or, when the
/// warehouse finds the changes itself, only the `changed` ones.
pub fn read(wh: &Warehouse, rows: u64, changed: u64) -> u64 {
    match wh.reads_every_row() {
        true => rows,
        false => changed,
    }
}

pub fn delivers_exactly_the_changes(project: &Project, wh: &Warehouse) {
    wh.insert_users(1..=10);
    project.write_config(&Config::new(wh).render());

    let first = project.run_ok();
    assert_counts(
        &first,
        &[
            ("extracted", 10),
            ("added", 10),
            ("updated", 0),
            ("deleted", 0),
        ],
    );
    assert_counts(
        &first,
        &[("sent", 10), ("ok", 10), ("rejected", 0), ("failed", 0)],
    );
    assert_events(&project.take_delivered(), &all_added(1..=10));

    let idle = project.run_ok();
    assert_counts(
        &idle,
        &[
            ("extracted", read(wh, 10, 0)),
            ("added", 0),
            ("updated", 0),
            ("deleted", 0),
            ("sent", 0),
        ],
    );
    assert_events(&project.take_delivered(), &[]);

    change_users(wh);
    let change = project.run_ok();
    assert_counts(
        &change,
        &[
            // Deleted keys are found, not read.
            ("extracted", read(wh, 9, 4)),
            ("added", 1),
            ("updated", 3),
            ("deleted", 2),
        ],
    );
    assert_counts(
        &change,
        &[("sent", 6), ("ok", 6), ("rejected", 0), ("failed", 0)],
    );
    assert_events(&project.take_delivered(), &change_events());

    let after = project.run_ok();
    assert_counts(&after, &[("extracted", read(wh, 9, 0)), ("sent", 0)]);
    assert_events(&project.take_delivered(), &[]);
}

pub fn on_added_sends_only_additions(project: &Project, wh: &Warehouse) {
    wh.insert_users(1..=10);
    project.write_config(&Config::new(wh).sync(r#"on = ["added"]"#).render());

    project.run_ok();
    assert_events(&project.take_delivered(), &all_added(1..=10));

    change_users(wh);
    let change = project.run_ok();
    assert_counts(
        &change,
        &[("added", 1), ("updated", 3), ("deleted", 2), ("sent", 1)],
    );
    assert_events(&project.take_delivered(), &[added(user(11))]);

    // The filtered changes were committed: nothing is pending any more.
    project.run_ok();
    assert_events(&project.take_delivered(), &[]);
}

pub fn on_deleted_sends_only_deletions(project: &Project, wh: &Warehouse) {
    wh.insert_users(1..=10);
    project.write_config(&Config::new(wh).sync(r#"on = ["deleted"]"#).render());

    let first = project.run_ok();
    assert_counts(&first, &[("added", 10), ("sent", 0)]);
    assert_events(&project.take_delivered(), &[]);

    change_users(wh);
    let change = project.run_ok();
    assert_counts(
        &change,
        &[("added", 1), ("updated", 3), ("deleted", 2), ("sent", 2)],
    );
    assert_events(
        &project.take_delivered(),
        &[deleted(user(5)), deleted(user(8))],
    );

    // Filtered additions and updates were committed, so deleting them now
    // reports the fields they had after the change.
    wh.exec("DELETE FROM users WHERE id IN (2, 11)");
    let last = project.run_ok();
    assert_counts(
        &last,
        &[("added", 0), ("updated", 0), ("deleted", 2), ("sent", 2)],
    );
    assert_events(
        &project.take_delivered(),
        &[
            deleted(with(user(2), "plan", "enterprise")),
            deleted(user(11)),
        ],
    );
}

#[test]
fn sqlite_delivers_exactly_the_changes() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    delivers_exactly_the_changes(&project, &wh);
}

#[test]
fn sqlite_on_added_sends_only_additions() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    on_added_sends_only_additions(&project, &wh);
}

#[test]
fn sqlite_on_deleted_sends_only_deletions() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    on_deleted_sends_only_deletions(&project, &wh);
}

#[test]
fn history_as_csv_has_every_count() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=10);
    project.write_config(&Config::new(&wh).render());
    project.run_ok();
    change_users(&wh);
    project.run_ok();
    let csv = project.ebb_ok(&["history", crate::support::project::SYNC, "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "run_id,status,started_at,finished_at,extracted,added,updated,deleted,sent,ok,rejected,failed,retried,dropped,filtered,error,kind,detail"
    );
    // Newest first: 1 added, 3 updated, 2 deleted, all 6 sent.
    let newest: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(
        newest[4..15],
        ["9", "1", "3", "2", "6", "6", "0", "0", "0", "0", "0"],
        "{csv}"
    );
}
