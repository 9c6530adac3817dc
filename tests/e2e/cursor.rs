//! Cursor models: `cursor = "column"` binds the highest value delivered as
//! `{{cursor}}` (a typed NULL before the first delivery), so each run reads
//! only rows past it. The value is a bind parameter: whatever text the data
//! holds, it cannot change what the query means.

use serde_json::{Value, json};

use crate::support::config::Config;
use crate::support::events::{added, assert_events, updated};
use crate::support::project::Project;
use crate::support::server::{Server, event_id};
use crate::support::warehouse::{Warehouse, user};

const BY_VERSION: &str = "SELECT id, email, plan, version FROM users \
                          WHERE {{cursor}} IS NULL OR version > {{cursor}} ORDER BY id";

fn versioned(id: i64, version: i64) -> Value {
    let mut fields = user(id);
    fields["version"] = json!(version);
    fields
}

fn reads_only_rows_past_the_cursor(project: &Project, wh: &Warehouse) {
    wh.exec("ALTER TABLE users ADD COLUMN version BIGINT");
    wh.insert_users(1..=3);
    wh.exec("UPDATE users SET version = id");
    project.write_config(
        &Config::new(wh)
            .query(BY_VERSION)
            .model("cursor = \"version\"")
            .render(),
    );

    project.run_ok();
    assert_events(
        &project.take_delivered(),
        &(1..=3)
            .map(|id| added(versioned(id, id)))
            .collect::<Vec<_>>(),
    );

    // Numeric order, not text order: 10 is past 3 and becomes the cursor.
    wh.exec("UPDATE users SET plan = 'team', version = 10 WHERE id = 2");
    wh.insert_users([4]);
    wh.exec("UPDATE users SET version = 4 WHERE id = 4");
    project.run_ok();
    let mut team = versioned(2, 10);
    team["plan"] = json!("team");
    assert_events(
        &project.take_delivered(),
        &[updated(team, versioned(2, 2)), added(versioned(4, 4))],
    );

    // A change that does not move the row past the cursor is not read, and
    // a row the model no longer returns is not a deletion.
    wh.exec("UPDATE users SET email = 'quiet@example.com' WHERE id = 1");
    let run = project.run_ok();
    assert_eq!(run.count("extracted"), 0, "only rows past 10 are read");
    assert_events(&project.take_delivered(), &[]);
}

#[test]
fn sqlite_reads_only_rows_past_the_cursor() {
    let project = Project::new();
    reads_only_rows_past_the_cursor(&project, &Warehouse::sqlite(&project));
}

#[test]
fn postgres_reads_only_rows_past_the_cursor() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    reads_only_rows_past_the_cursor(&Project::new(), &wh);
}

/// The highest value of a text cursor is SQL; bound as a parameter it is
/// only compared, so the table survives and the next run works.
fn a_cursor_value_cannot_inject_sql(project: &Project, wh: &Warehouse) {
    wh.exec("ALTER TABLE users ADD COLUMN tag TEXT");
    wh.insert_users(1..=2);
    wh.exec("UPDATE users SET tag = 'a' WHERE id = 1");
    wh.exec("UPDATE users SET tag = 'z''; DROP TABLE users; --' WHERE id = 2");
    project.write_config(
        &Config::new(wh)
            .query(
                "SELECT id, email, plan, tag FROM users \
                 WHERE {{cursor}} IS NULL OR tag > {{cursor}} ORDER BY id",
            )
            .model("cursor = \"tag\"")
            .render(),
    );
    project.run_ok();
    assert_eq!(project.take_delivered().len(), 2);

    wh.insert_users([3]);
    wh.exec("UPDATE users SET tag = 'zz' WHERE id = 3");
    project.run_ok();
    let mut third = user(3);
    third["tag"] = json!("zz");
    assert_events(&project.take_delivered(), &[added(third)]);
}

#[test]
fn sqlite_cursor_value_cannot_inject_sql() {
    let project = Project::new();
    a_cursor_value_cannot_inject_sql(&project, &Warehouse::sqlite(&project));
}

#[test]
fn postgres_cursor_value_cannot_inject_sql() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    a_cursor_value_cannot_inject_sql(&Project::new(), &wh);
}

/// Timestamps with time zone keep their fractional seconds: a row at
/// exactly the cursor is not read again, one half a second later is.
#[test]
fn postgres_timestamptz_cursor_keeps_fractions() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    let project = Project::new();
    wh.exec("ALTER TABLE users ADD COLUMN updated_at TIMESTAMPTZ");
    wh.insert_users(1..=2);
    wh.exec("UPDATE users SET updated_at = '2024-05-01 10:00:00.25+02' WHERE id = 1");
    wh.exec("UPDATE users SET updated_at = '2024-05-01 08:00:00.75Z' WHERE id = 2");
    project.write_config(
        &Config::new(&wh)
            .query(
                "SELECT id, email, plan FROM users \
                 WHERE {{cursor}} IS NULL OR updated_at > {{cursor}} ORDER BY id",
            )
            .model("cursor = \"updated_at\"")
            .render(),
    );
    // The cursor column must be selected, or the run refuses to start.
    let out = project.ebb(&["run", "users_out"]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(
        out.stderr
            .contains("cursor `updated_at` is not a column of the query"),
        "{}",
        out.text()
    );

    project.write_config(
        &Config::new(&wh)
            .query(
                "SELECT id, email, plan, updated_at FROM users \
                 WHERE {{cursor}} IS NULL OR updated_at > {{cursor}} ORDER BY id",
            )
            .model("cursor = \"updated_at\"")
            .render(),
    );
    project.run_ok();
    assert_eq!(project.take_delivered().len(), 2);
    wh.exec("UPDATE users SET plan = 'team', updated_at = '2024-05-01 08:00:00.75Z' WHERE id = 1");
    wh.exec("UPDATE users SET plan = 'team', updated_at = '2024-05-01 08:00:01.25Z' WHERE id = 2");
    project.run_ok();
    let delivered = project.take_delivered();
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    assert_eq!(delivered[0]["id"], "2");
    assert_eq!(
        delivered[0]["fields"]["updated_at"],
        "2024-05-01T08:00:01.25Z"
    );
}

/// A row still owed holds the cursor back: moving past it would mean never
/// reading it again.
#[test]
fn a_rejected_row_holds_the_cursor_back() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    let server = Server::start();
    wh.exec("ALTER TABLE users ADD COLUMN version INTEGER");
    wh.insert_users(1..=2);
    wh.exec("UPDATE users SET version = id");
    project.write_config(
        &Config::new(&wh)
            .query(BY_VERSION)
            .model("cursor = \"version\"")
            .http(&server, &server.host(), 10)
            .render(),
    );
    server.reject("2", "no such account");
    project.run().assert_status("partial");

    server.accept_all();
    let before = server.accepted().len();
    project.run_ok();
    let again: Vec<String> = server.accepted()[before..].iter().map(event_id).collect();
    assert_eq!(again, ["2"], "the rejected row is read and delivered again");
}

/// A cursor the query never uses would read everything every run; a query
/// using `{{cursor}}` without naming the column cannot be bound. Both are
/// config errors, reported before anything runs.
#[test]
fn cursor_and_query_must_agree() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    for (query, cursor, expected) in [
        (
            "SELECT id, email, plan FROM users",
            Some("cursor = \"id\""),
            "models.users.cursor: the query never uses `{{cursor}}`",
        ),
        (
            "SELECT id, email, plan FROM users WHERE id > {{ cursor }}",
            None,
            "models.users: the query uses `{{cursor}}`; set `cursor`",
        ),
    ] {
        let mut config = Config::new(&wh).query(query);
        if let Some(line) = cursor {
            config = config.model(line);
        }
        project.write_config(&config.render());
        let out = project.ebb(&["check"]);
        assert_eq!(out.code, Some(1), "{}", out.text());
        assert!(out.stderr.contains(expected), "{}", out.text());
    }
}
