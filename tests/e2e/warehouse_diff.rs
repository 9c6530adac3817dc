//! `diff = "warehouse"`: Postgres finds the changes against a snapshot
//! table Ebb keeps in the warehouse, and only changed rows reach Ebb. The
//! change, delivery and drop scenarios run again in this mode; the tests
//! here cover what is particular to it. Each test keeps the snapshot table
//! in its own schema (`diff_schema`), dropped when it ends.

use crate::changes::{self, all_added, with};
use crate::errors_drop;
use crate::http_delivery;
use crate::support::config::Config;
use crate::support::events::{assert_events, updated};
use crate::support::project::{Project, SYNC};
use crate::support::warehouse::{Warehouse, user};

fn warehouse() -> Option<Warehouse> {
    Warehouse::postgres().map(Warehouse::diffing_in_warehouse)
}

/// Rows of the sync in the snapshot table, and how many carry a record.
fn snapshot_rows(wh: &Warehouse) -> (i64, i64) {
    let schema = wh.schema().expect("Postgres");
    let count = |filter: &str| {
        wh.scalar(&format!(
            "SELECT count(*) FROM {schema}.snapshots WHERE sync = '{SYNC}' {filter}"
        ))
    };
    (count(""), count("AND record::jsonb ? 'email'"))
}

fn snapshot_table_exists(wh: &Warehouse) -> bool {
    let schema = wh.schema().expect("Postgres");
    wh.scalar(&format!(
        "SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}' AND tablename = 'snapshots'"
    )) == 1
}

#[test]
fn warehouse_diff_delivers_exactly_the_changes() {
    let Some(wh) = warehouse() else { return };
    changes::delivers_exactly_the_changes(&Project::new(), &wh);
}

#[test]
fn warehouse_diff_on_added_sends_only_additions() {
    let Some(wh) = warehouse() else { return };
    changes::on_added_sends_only_additions(&Project::new(), &wh);
}

#[test]
fn warehouse_diff_on_deleted_sends_only_deletions() {
    let Some(wh) = warehouse() else { return };
    changes::on_deleted_sends_only_deletions(&Project::new(), &wh);
}

#[test]
fn warehouse_diff_owed_rows_are_delivered_once_next_run() {
    let Some(wh) = warehouse() else { return };
    http_delivery::owed_rows_are_delivered_once_next_run(&Project::new(), &wh);
}

#[test]
fn warehouse_diff_dropped_rows_are_not_sent_again_until_they_change() {
    let Some(wh) = warehouse() else { return };
    errors_drop::dropped_rows_are_not_sent_again_until_they_change(&Project::new(), wh);
}

#[test]
fn warehouse_diff_drop_all_forgets_every_owed_row_and_dropped_deletions() {
    let Some(wh) = warehouse() else { return };
    errors_drop::drop_all_forgets_every_owed_row_and_dropped_deletions(&Project::new(), wh);
}

/// The snapshot is the warehouse's table, not the state store's: a plan
/// before the first run creates nothing, a run fills the table with key,
/// fingerprint and record, and `ebb reset` empties it, so the next run
/// sends every row again.
#[test]
fn the_snapshot_lives_in_the_warehouse_and_reset_forgets_it() {
    let Some(wh) = warehouse() else { return };
    let project = Project::new();
    wh.insert_users(1..=5);
    project.write_config(&Config::new(&wh).render());

    assert_events(&project.plan(), &all_added(1..=5));
    assert!(!snapshot_table_exists(&wh), "a plan writes nothing");

    project.run_ok();
    assert_events(&project.take_delivered(), &all_added(1..=5));
    assert_eq!(snapshot_rows(&wh), (5, 5));
    let state_rows =
        crate::support::state::sqlite_scalar(&project.state_db(), "SELECT count(*) FROM snapshot");
    assert_eq!(
        state_rows, 0,
        "the state store keeps no snapshot of its own"
    );

    wh.exec("UPDATE users SET plan = 'team' WHERE id = 3");
    assert_events(
        &project.plan(),
        &[updated(with(user(3), "plan", "team"), user(3))],
    );
    project.run_ok();
    project.take_delivered();

    let out = project.ebb_ok(&["reset", SYNC]);
    assert!(out.contains("reset"), "{out}");
    assert_eq!(snapshot_rows(&wh), (0, 0));
    let again = project.run_ok();
    assert_eq!(again.count("added"), 5, "{}", again.report);
    project.take_delivered();
}

/// A key the model returns twice is a row error, whichever of its rows
/// matches the snapshot: none is sent, the snapshot keeps what was last
/// delivered, and the key goes out once it is unique again.
#[test]
fn a_repeated_key_is_a_row_error_even_when_one_copy_is_unchanged() {
    let Some(wh) = warehouse() else { return };
    let project = Project::new();
    wh.insert_users(1..=4);
    wh.exec("CREATE VIEW twice AS SELECT id, email, plan FROM users");
    project.write_config(&Config::new(&wh).query("SELECT * FROM twice").render());
    project.run_ok();
    project.take_delivered();

    // User 2's first row is the one delivered; the second differs.
    wh.exec(
        "CREATE OR REPLACE VIEW twice AS SELECT id, email, plan FROM users \
         UNION ALL SELECT id, 'other@example.com', plan FROM users WHERE id = 2",
    );
    project.run().assert_status("failed");
    assert_events(&project.take_delivered(), &[]);
    let errors = project.errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["key"], "2");
    let message = errors[0]["error"].as_str().unwrap_or_default();
    assert!(message.contains("returned by 2 rows"), "{message}");

    wh.exec("CREATE OR REPLACE VIEW twice AS SELECT id, email, plan FROM users");
    let fixed = project.run_ok();
    assert_eq!(fixed.count("sent"), 0, "{}", fixed.report);
    assert!(project.errors().is_empty());
}

/// A model with a column Postgres cannot hash by type (`json`) is
/// fingerprinted by its text instead, and still diffs.
#[test]
fn a_model_with_a_json_column_is_fingerprinted_by_its_text() {
    let Some(wh) = warehouse() else { return };
    let project = Project::new();
    wh.insert_users(1..=3);
    project.write_config(
        &Config::new(&wh)
            .query("SELECT id, email, json_build_object('plan', plan) AS extra FROM users")
            .render(),
    );
    assert_eq!(project.run_ok().count("added"), 3);
    project.take_delivered();
    wh.exec("UPDATE users SET plan = 'team' WHERE id = 2");
    let run = project.run_ok();
    assert_eq!(
        (run.count("extracted"), run.count("updated")),
        (1, 1),
        "{}",
        run.report
    );
    let delivered = project.take_delivered();
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    assert_eq!(delivered[0]["fields"]["extra"]["plan"], "team");
    assert_eq!(delivered[0]["previous"]["extra"]["plan"], "pro");
}

/// An incremental model is compared only on the rows it returns: keys it
/// does not return are not deletions.
#[test]
fn an_incremental_model_reports_no_deletions() {
    let Some(wh) = warehouse() else { return };
    let project = Project::new();
    wh.exec(
        "ALTER TABLE users ADD COLUMN updated_at timestamptz DEFAULT now() - interval '1 hour'",
    );
    wh.insert_users(1..=3);
    project.write_config(
        &Config::new(&wh)
            .query(
                "SELECT id, email, plan FROM users \
                 WHERE updated_at > to_timestamp({{last_sync_time}}) ORDER BY id",
            )
            .render(),
    );
    project.run_ok();
    assert_events(&project.take_delivered(), &all_added(1..=3));

    wh.exec("UPDATE users SET updated_at = now() + interval '1 day', plan = 'team' WHERE id = 2");
    let run = project.run_ok();
    assert_eq!(run.count("deleted"), 0, "{}", run.report);
    assert_events(
        &project.take_delivered(),
        &[updated(with(user(2), "plan", "team"), user(2))],
    );
}

/// The join is on the key's text, so a key whose text Ebb and Postgres
/// write differently is refused before anything runs, naming the fix.
#[test]
fn a_key_that_does_not_join_alike_is_refused() {
    let Some(wh) = warehouse() else { return };
    let project = Project::new();
    wh.insert_users(1..=2);
    project.write_config(
        &Config::new(&wh)
            .query("SELECT now()::timestamp AS at, id, email FROM users")
            .primary_key("at")
            .render(),
    );
    let out = project.ebb(&["run", SYNC]);
    assert_ne!(out.code, Some(0), "{}", out.text());
    let text = out.text();
    assert!(
        text.contains("`at` must be an integer, text or uuid column, not timestamp"),
        "{text}"
    );
    assert!(!snapshot_table_exists(&wh));
}

/// Only Postgres sources can find changes themselves.
#[test]
fn diff_in_the_warehouse_needs_a_postgres_source() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    project.write_config(&Config::new(&wh).model("diff = \"warehouse\"").render());
    let out = project.ebb(&["check"]);
    assert_ne!(out.code, Some(0), "{}", out.text());
    let text = out.text();
    assert!(
        text.contains(
            "models.users.diff: \"warehouse\" needs a Postgres source, and `wh` is of kind sqlite"
        ),
        "{text}"
    );
}
