//! The change scenarios again, with Postgres as the source: each test gets
//! its own schema, dropped when it ends.

use crate::changes;
use crate::http_delivery;
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
