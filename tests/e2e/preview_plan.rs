//! Looking without touching: `ebb preview` shows a model's first rows and
//! `ebb plan` the mapped events a run would send; neither creates the state
//! store.

use serde_json::{Value, json};

use crate::support::config::Config;
use crate::support::events::{added, assert_events, deleted, updated};
use crate::support::project::Project;
use crate::support::warehouse::{Warehouse, user};

fn assert_no_state(project: &Project, after: &str) {
    assert!(
        !project.state_db().exists(),
        "`ebb {after}` created {}",
        project.state_db().display()
    );
}

#[test]
fn preview_shows_the_first_ten_rows_in_column_order() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=12);
    // Neither alphabetical nor the table's order.
    project.write_config(
        &Config::new(&wh)
            .query("SELECT plan, email, id FROM users ORDER BY id")
            .render(),
    );

    let rows = match project.ebb_json(&["preview", "users"]) {
        Value::Array(rows) => rows,
        other => panic!("preview must print an array: {other}"),
    };
    assert_eq!(rows.len(), 10, "{rows:#?}");
    for (id, row) in (1..).zip(&rows) {
        let columns: Vec<&str> = row
            .as_object()
            .unwrap_or_else(|| panic!("row {id} is not an object: {row}"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(columns, ["plan", "email", "id"], "row {id}: {row}");
        assert_eq!(*row, user(id), "row {id}");
    }
    assert_no_state(&project, "preview");
}

/// As a table, each column's database type and the JSON type it became
/// head the rows.
#[test]
fn preview_table_shows_each_columns_types() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    let project = Project::new();
    wh.insert_users(1..=2);
    project.write_config(
        &Config::new(&wh)
            .query("SELECT id, email, now() AS seen FROM users ORDER BY id")
            .render(),
    );
    let table = project.ebb_ok(&["preview", "users", "--format", "table"]);
    for types in [
        "(int4 → integer)",
        "(text → string)",
        "(timestamptz → string)",
    ] {
        assert!(table.contains(types), "no {types} in\n{table}");
    }
    assert!(table.contains("user2@example.com"), "{table}");
}

/// The sync's mapping: the key, a nested email and a static source.
const MAPPING: &str =
    r#"mapping = { "id" = "id", "contact.email" = "email", "source" = { static = "warehouse" } }"#;

fn mapped(fields: &Value) -> Value {
    json!({ "id": fields["id"], "contact": { "email": fields["email"] }, "source": "warehouse" })
}

#[test]
fn plan_shows_mapped_events_without_a_state_store() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=4);
    project.write_config(&Config::new(&wh).sync(MAPPING).render());

    let all: Vec<Value> = (1..=4).map(|id| added(mapped(&user(id)))).collect();
    assert_events(&project.plan(), &all);
    assert_no_state(&project, "plan");
    assert_events(&project.take_delivered(), &[]);

    project.run_ok();
    assert_events(&project.take_delivered(), &all);
    wh.exec("UPDATE users SET email = 'new2@example.com' WHERE id = 2");
    wh.exec("DELETE FROM users WHERE id = 3");
    let mut two = user(2);
    two["email"] = json!("new2@example.com");
    assert_events(
        &project.plan(),
        &[
            updated(mapped(&two), mapped(&user(2))),
            deleted(mapped(&user(3))),
        ],
    );
    assert_events(&project.take_delivered(), &[]);
}

/// After a first run, two users join, one changes email and one leaves.
fn project_with_changes() -> (Project, Warehouse) {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=4);
    project.write_config(&Config::new(&wh).render());
    project.run_ok();
    project.take_delivered();
    wh.exec("UPDATE users SET email = 'new2@example.com' WHERE id = 2");
    wh.exec("DELETE FROM users WHERE id = 3");
    wh.insert_users(5..=6);
    (project, wh)
}

/// The table leads with counts per op; an update shows only the field it
/// changes, old → new.
#[test]
fn plan_table_counts_each_op_and_shows_what_an_update_changes() {
    let (project, _wh) = project_with_changes();
    let table = project.ebb_ok(&["plan", "users_out"]);
    let first = table.lines().next().unwrap_or_default();
    assert_eq!(
        first, "sync `users_out` would send 4 event(s): 2 added, 1 updated, 1 deleted",
        "{table}"
    );
    let update = table
        .lines()
        .find(|l| l.starts_with("│ updated"))
        .unwrap_or_else(|| panic!("no updated row in\n{table}"));
    assert!(
        update.contains(r#"email: "user2@example.com" → "new2@example.com""#),
        "{table}"
    );
    assert!(
        !update.contains("plan:") && !update.contains("id:"),
        "{table}"
    );
    // An added record shows its fields; a deleted one its key.
    assert!(table.contains(r#"email: "user5@example.com""#), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("│ deleted") && l.contains(" 3 ")),
        "{table}"
    );
    assert!(!table.contains("more; --limit"), "{table}");
    assert_events(&project.take_delivered(), &[]);
}

#[test]
fn plan_limit_lists_the_first_records_and_says_how_many_more() {
    let (project, _wh) = project_with_changes();
    let table = project.ebb_ok(&["plan", "users_out", "--limit", "2"]);
    let listed = table
        .lines()
        .filter(|l| {
            ["added", "updated", "deleted"]
                .iter()
                .any(|op| l.starts_with(&format!("│ {op}")))
        })
        .count();
    assert_eq!(listed, 2, "{table}");
    assert!(table.contains("2 added, 1 updated, 1 deleted"), "{table}");
    assert!(
        table
            .trim_end()
            .ends_with("… and 2 more; --limit to see more"),
        "{table}"
    );

    let plan = project.ebb_json(&["plan", "users_out", "--limit", "2"]);
    assert_eq!(plan["events"].as_array().map(Vec::len), Some(2), "{plan}");
    assert_eq!(plan["truncated"], true, "{plan}");
    assert_eq!(plan["summary"]["total"], 4, "{plan}");
}

/// JSON: one document with the summary, every event (no limit by default),
/// and each update's changes.
#[test]
fn plan_json_has_a_summary_and_each_updates_changes() {
    let (project, _wh) = project_with_changes();
    let plan = project.ebb_json(&["plan", "users_out"]);
    assert_eq!(
        plan["summary"],
        json!({"added": 2, "updated": 1, "deleted": 1, "total": 4}),
        "{plan}"
    );
    assert_eq!(plan["truncated"], false, "{plan}");
    let events = plan["events"].as_array().expect("events");
    assert_eq!(events.len(), 4, "{plan}");
    let update = events
        .iter()
        .find(|e| e["op"] == "updated")
        .unwrap_or_else(|| panic!("no update in {plan}"));
    assert_eq!(update["key"], "2");
    assert_eq!(
        update["changes"],
        json!({"email": {"old": "user2@example.com", "new": "new2@example.com"}}),
        "{plan}"
    );
    assert_eq!(update["event"]["fields"]["email"], "new2@example.com");
    for e in events.iter().filter(|e| e["op"] != "updated") {
        assert!(e.get("changes").is_none(), "{e}");
    }

    let csv = project.ebb_ok(&["plan", "users_out", "--format", "csv"]);
    assert!(csv.starts_with("op,key,changed,fields,previous\n"), "{csv}");
    assert!(csv.contains(r#"updated,2,"[""email""]""#), "{csv}");
    assert_eq!(csv.lines().count(), 5, "{csv}");
}

/// Nested fields (a mapping's `contact.email`) are named by dotted path.
#[test]
fn plan_names_a_nested_change_by_its_dotted_path() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    project.write_config(&Config::new(&wh).sync(MAPPING).render());
    project.run_ok();
    wh.exec("UPDATE users SET email = 'new1@example.com' WHERE id = 1");
    let plan = project.ebb_json(&["plan", "users_out"]);
    assert_eq!(
        plan["events"][0]["changes"],
        json!({"contact.email": {"old": "user1@example.com", "new": "new1@example.com"}}),
        "{plan}"
    );
    let table = project.ebb_ok(&["plan", "users_out"]);
    assert!(
        table.contains(r#"contact.email: "user1@example.com" → "new1@example.com""#),
        "{table}"
    );
}
