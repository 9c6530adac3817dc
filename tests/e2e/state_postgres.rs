//! The lifecycle again with the state in Postgres (`[state] url =
//! "postgres://…?schema=…"`), each test in a schema of its own that Ebb
//! creates and the test drops: changes across runs, owed rows, last sync
//! time, plan, reset, history, errors and dropping them, skipped and
//! abandoned runs; plus what only a shared store has to get right:
//! processes that start together migrate once, and a newer schema is refused.

use crate::support::config::Config;
use crate::support::events::assert_events;
use crate::support::project::{Project, SYNC};
use crate::support::state::PostgresState;
use crate::support::warehouse::Warehouse;
use crate::{
    changes, errors_api, errors_drop, http_delivery, interrupt, last_sync_time, lifecycle, replay,
};

/// The number of migrations this build of Ebb applies to a Postgres store.
const POSTGRES_MIGRATIONS: i64 = 9;

/// A project keeping its state in a fresh Postgres schema, or `None` (after
/// saying so) without a server outside CI.
fn project() -> Option<(PostgresState, Project)> {
    let state = PostgresState::new()?;
    let project = Project::with_state(&state.url());
    Some((state, project))
}

#[test]
fn postgres_state_delivers_exactly_the_changes() {
    let Some((state, project)) = project() else {
        return;
    };
    let wh = Warehouse::sqlite(&project);
    changes::delivers_exactly_the_changes(&project, &wh);
    assert_eq!(
        state.versions(),
        (1..=POSTGRES_MIGRATIONS).collect::<Vec<_>>()
    );
    assert!(
        !project.state_db().exists(),
        "no SQLite state beside a Postgres one"
    );
}

#[test]
fn postgres_state_owed_rows_are_delivered_once_next_run() {
    let Some((_state, project)) = project() else {
        return;
    };
    let wh = Warehouse::sqlite(&project);
    http_delivery::owed_rows_are_delivered_once_next_run(&project, &wh);
}

#[test]
fn postgres_state_owed_rows_page_group_and_compress() {
    let Some((_state, project)) = project() else {
        return;
    };
    let wh = Warehouse::sqlite(&project);
    errors_api::owed_rows_page_group_and_compress_in(&project, &wh);
}

#[test]
fn postgres_state_last_sync_time() {
    let Some((_state, project)) = project() else {
        return;
    };
    last_sync_time::binds_the_previous_runs_start(&project);
}

#[test]
fn postgres_state_plan_reset_and_history() {
    let Some((_state, project)) = project() else {
        return;
    };
    lifecycle::plans_without_sending(&project);
    let Some((_state, project)) = self::project() else {
        return;
    };
    lifecycle::reset_resends_everything(&project);
    let Some((_state, project)) = self::project() else {
        return;
    };
    lifecycle::history_lists_runs(&project);
}

#[test]
fn postgres_state_errors_drop() {
    let Some((_state, project)) = project() else {
        return;
    };
    let wh = Warehouse::sqlite(&project);
    errors_drop::dropped_rows_are_not_sent_again_until_they_change(&project, wh);
    let Some((_state, project)) = self::project() else {
        return;
    };
    let wh = Warehouse::sqlite(&project);
    errors_drop::drop_all_forgets_every_owed_row_and_dropped_deletions(&project, wh);
}

#[test]
fn postgres_state_two_runs_started_together_one_is_skipped() {
    let Some((_state, project)) = project() else {
        return;
    };
    interrupt::two_runs_started_together_one_is_skipped(&project);
}

#[test]
fn postgres_state_a_dead_run_is_taken_over_once_its_heartbeat_is_stale() {
    let Some((state, project)) = project() else {
        return;
    };
    interrupt::a_dead_run_is_taken_over_once_its_heartbeat_is_stale(&project, &|sql| {
        state.exec(sql)
    });
}

#[test]
fn postgres_state_a_late_run_that_was_taken_over_stops() {
    let Some((state, project)) = project() else {
        return;
    };
    interrupt::a_late_run_that_was_taken_over_stops(&project, &|sql| state.exec(sql));
}

#[test]
fn processes_opening_a_new_store_together_migrate_it_once() {
    let Some((state, project)) = project() else {
        return;
    };
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    project.write_config(&Config::new(&wh).render());
    assert_eq!(state.versions(), Vec::<i64>::new());

    for run in project.runs_together(4) {
        let status = run.status().to_owned();
        assert!(
            status == "success" || status == "skipped",
            "every opener runs or is skipped: {}",
            run.report
        );
        run.assert_status(&status);
    }
    assert_eq!(
        state.versions(),
        (1..=POSTGRES_MIGRATIONS).collect::<Vec<_>>()
    );
    assert_eq!(project.history().len(), 4);
}

#[test]
fn a_store_written_by_a_newer_ebb_is_refused() {
    let Some((state, project)) = project() else {
        return;
    };
    let wh = Warehouse::sqlite(&project);
    project.write_config(&Config::new(&wh).render());
    project.run_ok();
    state.exec("INSERT INTO schema_version (version) VALUES (99)");
    let out = project.ebb(&["history", SYNC]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    let expected = format!(
        "the state store (schema `{}`) was written by a newer Ebb (schema 99, this binary knows {POSTGRES_MIGRATIONS}); upgrade ebb",
        state.schema()
    );
    assert!(out.text().contains(&expected), "{}", out.text());
}

#[test]
fn postgres_state_replays_what_a_run_delivered() {
    let Some((_state, project)) = project() else {
        return;
    };
    replay::replay_resends_exactly_what_a_run_delivered(&project);
}

/// A store that an Ebb from before the records' blocks wrote (each
/// snapshot row holding its record) is upgraded in place when it is next
/// opened: the records move into blocks, and the next run's updates and
/// deletions carry them as `previous`.
#[test]
fn an_older_postgres_store_keeps_its_records_through_the_upgrade() {
    let Some((state, project)) = project() else {
        return;
    };
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=10);
    project.write_config(&Config::new(&wh).render());
    project.run_ok();
    project.take_delivered();
    let delivered = state.snapshot(SYNC);
    assert_eq!(delivered.len(), 10);

    // The store as the schema before the blocks left it.
    let mut older = String::from(
        "DROP TRIGGER snapshot_record_replaced ON snapshot; \
         DROP TRIGGER snapshot_record_deleted ON snapshot; \
         DROP FUNCTION snapshot_record_gone(); \
         DROP TABLE record_blocks; DROP TABLE record_block_bytes; \
         ALTER TABLE snapshot ADD COLUMN record TEXT;",
    );
    for (key, record) in &delivered {
        let record = record.to_string().replace('\'', "''");
        older += &format!("UPDATE snapshot SET record = '{record}' WHERE key = '{key}';");
    }
    older += "ALTER TABLE snapshot DROP COLUMN place; \
              ALTER TABLE snapshot ALTER COLUMN record SET NOT NULL; \
              DELETE FROM schema_version WHERE version = 9;";
    state.exec(&older);
    assert_eq!(
        state.versions(),
        (1..POSTGRES_MIGRATIONS).collect::<Vec<_>>()
    );

    changes::change_users(&wh);
    project.run_ok();
    assert_events(&project.take_delivered(), &changes::change_events());
    assert_eq!(
        state.versions(),
        (1..=POSTGRES_MIGRATIONS).collect::<Vec<_>>()
    );
    let after = state.snapshot(SYNC);
    for key in ["1", "6", "10"] {
        assert_eq!(after[key], delivered[key], "the record of {key}");
    }
    assert!(!after.contains_key("5"), "5 was deleted");
}
