//! The change scenarios again, with Postgres as the source: each test gets
//! its own schema, dropped when it ends.

use crate::changes;
use crate::http_delivery;
use crate::support::config::Config;
use crate::support::project::Project;
use crate::support::warehouse::Warehouse;

#[test]
fn postgres_delivers_exactly_the_changes() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    changes::delivers_exactly_the_changes(&Project::new(), &wh);
}

#[test]
fn postgres_on_added_sends_only_additions() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    changes::on_added_sends_only_additions(&Project::new(), &wh);
}

#[test]
fn postgres_on_deleted_sends_only_deletions() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    changes::on_deleted_sends_only_deletions(&Project::new(), &wh);
}

#[test]
fn postgres_owed_rows_are_delivered_once_next_run() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    http_delivery::owed_rows_are_delivered_once_next_run(&Project::new(), &wh);
}

/// Redshift speaks the Postgres protocol; a `redshift` source runs the
/// change scenario against the local Postgres through the same startup,
/// read-only transaction and timeout statements Redshift accepts.
#[test]
fn redshift_kind_delivers_exactly_the_changes() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    changes::delivers_exactly_the_changes(&Project::new(), &wh.declared_as("redshift"));
}

/// `{{last_sync_time}}` reaches Postgres as the integer it is, also where
/// the function around it (`to_timestamp(double precision)`) would have
/// Postgres guess another type: the second run selects only what changed.
#[test]
fn postgres_binds_last_sync_time_as_an_integer() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    wh.exec(
        "ALTER TABLE users ADD COLUMN updated_at timestamptz DEFAULT now() - interval '1 hour'",
    );
    wh.insert_users(1..=3);
    let project = Project::new();
    project.write_config(
        &Config::new(&wh)
            .query(
                "SELECT id, email, plan FROM users \
                 WHERE updated_at > to_timestamp({{last_sync_time}}) ORDER BY id",
            )
            .render(),
    );
    assert_eq!(project.run_ok().count("extracted"), 3);
    assert_eq!(project.run_ok().count("extracted"), 0);
    wh.exec("UPDATE users SET updated_at = now() + interval '1 day', plan = 'team' WHERE id = 2");
    let third = project.run_ok();
    assert_eq!(third.count("extracted"), 1);
    assert_eq!(third.count("updated"), 1);
}
