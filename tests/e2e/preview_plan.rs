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
