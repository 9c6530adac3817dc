//! `{{last_sync_time}}` is bound (as an integer, never spliced text) to the
//! start of the previous successful run in unix seconds, 0 the first time.
//! A model using it is incremental: rows it leaves out are unchanged.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::config::Config;
use crate::support::events::{added, assert_events, deleted, updated};
use crate::support::project::Project;
use crate::support::warehouse::{Warehouse, user};

const QUERY: &str = "SELECT id, email, plan, {{last_sync_time}} AS since FROM users \
                     WHERE updated_at > {{last_sync_time}} ORDER BY id";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn user_since(id: i64, since: i64) -> Value {
    let mut fields = user(id);
    fields["since"] = json!(since);
    fields
}

#[test]
fn last_sync_time_is_the_previous_successful_runs_start() {
    binds_the_previous_runs_start(&Project::new());
}

pub fn binds_the_previous_runs_start(project: &Project) {
    let wh = Warehouse::sqlite(project);
    wh.exec("ALTER TABLE users ADD COLUMN updated_at INTEGER");
    wh.insert_users(1..=4);
    wh.exec(&format!("UPDATE users SET updated_at = {}", now() + 86_400));
    // Never newer than 0: the first run must bind 0 as an integer (as text,
    // SQLite would compare every integer as smaller and select nothing).
    wh.exec("UPDATE users SET updated_at = -1 WHERE id = 4");
    project.write_config(&Config::new(&wh).query(QUERY).render());

    let before_first = now();
    project.run_ok();
    let after_first = now();
    assert_events(
        &project.take_delivered(),
        &(1..=3)
            .map(|id| added(user_since(id, 0)))
            .collect::<Vec<_>>(),
    );

    // User 3 now looks older than the first run: if the bound time moved
    // forward the second run no longer selects it, and (the model being
    // incremental, so a missing row means unchanged, not deleted) sends
    // nothing for it; selected rows change because `since` does.
    wh.exec(&format!(
        "UPDATE users SET updated_at = {} WHERE id = 3",
        before_first - 1000
    ));
    project.run_ok();
    let delivered = project.take_delivered();
    let since = delivered
        .iter()
        .find(|e| e["id"] == "1")
        .and_then(|e| e["fields"]["since"].as_i64())
        .unwrap_or_else(|| panic!("no update for user 1 with an integer since: {delivered:#?}"));
    assert!(
        (before_first..=after_first).contains(&since),
        "last_sync_time {since} is not the first run's start (between {before_first} and {after_first})"
    );
    assert_events(
        &delivered,
        &[
            updated(user_since(1, since), user_since(1, 0)),
            updated(user_since(2, since), user_since(2, 0)),
        ],
    );
}

/// A template commented out or quoted is text: the model reads every row,
/// so a row that is gone is deleted, and `check` says the model is full.
#[test]
fn a_template_in_a_comment_or_string_leaves_the_model_full() {
    for query in [
        "SELECT id, email, plan FROM users -- WHERE updated_at > {{last_sync_time}}\nORDER BY id",
        "SELECT id, email, plan FROM users /* WHERE updated_at > {{ last_sync_time }} */ ORDER BY id",
        "SELECT id, email, plan FROM users WHERE email <> '{{last_sync_time}}' ORDER BY id",
    ] {
        let project = Project::new();
        let wh = Warehouse::sqlite(&project);
        wh.insert_users(1..=3);
        project.write_config(&Config::new(&wh).query(query).render());

        let check = project.ebb_ok(&["check"]);
        assert!(
            check.contains(
                "model `users`: ok (full: the query uses no {{last_sync_time}} or {{cursor}} outside comments and strings; deletions are detected)"
            ),
            "{query}\n{check}"
        );
        project.run_ok();
        project.take_delivered();
        wh.exec("DELETE FROM users WHERE id = 2");
        project.run_ok();
        assert_events(&project.take_delivered(), &[deleted(user(2))]);
    }
}

/// A template in the query's SQL makes the model incremental, and `check`
/// says where: a row it leaves out is not deleted.
#[test]
fn a_template_in_the_sql_makes_the_model_incremental() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.exec("ALTER TABLE users ADD COLUMN updated_at INTEGER");
    wh.insert_users(1..=3);
    wh.exec("UPDATE users SET updated_at = 1");
    project.write_config(
        &Config::new(&wh)
            .query(
                "SELECT id, email, plan FROM users -- {{cursor}} is not used\n\
                 WHERE updated_at > {{last_sync_time}}\nORDER BY id",
            )
            .render(),
    );
    let check = project.ebb_ok(&["check"]);
    assert!(
        check.contains(
            "model `users`: ok (incremental: the query uses {{last_sync_time}} at line 2; deletions are not detected)"
        ),
        "{check}"
    );
    project.run_ok();
    assert_events(
        &project.take_delivered(),
        &(1..=3).map(|id| added(user(id))).collect::<Vec<_>>(),
    );
    wh.exec("DELETE FROM users WHERE id = 2");
    project.run_ok();
    assert_events(&project.take_delivered(), &[]);
}
