//! A sync's `mapping` shapes what the destination receives, in `fields` and
//! in `previous` alike; a mapping that reads a column the model does not
//! return is a config error, caught by `ebb check` as well as `ebb run`.

use serde_json::{Value, json};

use crate::config_errors::rejected_without_touching_state;
use crate::support::config::Config;
use crate::support::events::{added, assert_events, updated};
use crate::support::project::{Project, SYNC};
use crate::support::warehouse::{Warehouse, user};

/// Every kind of rule: a column, a nested target, `{ column = … }`, a path
/// into an object, a whole object, and static values. `pairs` becomes an
/// object through `ebb:unpack-pairs` first.
const MAPPED: &str = r#"transforms = [{ plugin = "ebb:unpack-pairs", config = { field = "pairs" } }]
mapping = { "id" = "id", "traits.email" = "email", "traits.plan" = { column = "plan" }, "traits.country" = "pairs.country", "attributes" = "pairs", "source" = { static = "warehouse" }, "version" = { static = 2 } }"#;

const QUERY_WITH_PAIRS: &str = "SELECT id, email, plan, pairs FROM users ORDER BY id";

fn set_pairs(wh: &Warehouse, id: i64, country: &str) {
    wh.exec(&format!(
        r#"UPDATE users SET pairs = '[["country","{country}"],["seats","{id}"]]' WHERE id = {id}"#
    ));
}

/// What [`MAPPED`] makes of a user's row with the pairs [`set_pairs`] wrote.
fn mapped(fields: &Value, country: &str) -> Value {
    let id = fields["id"].as_i64().expect("id");
    json!({
        "id": id,
        "traits": { "email": fields["email"], "plan": fields["plan"], "country": country },
        "attributes": { "country": country, "seats": id.to_string() },
        "source": "warehouse",
        "version": 2,
    })
}

#[test]
fn mapping_shapes_fields_and_previous() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    for id in 1..=3 {
        set_pairs(&wh, id, "NO");
    }
    project.write_config(
        &Config::new(&wh)
            .query(QUERY_WITH_PAIRS)
            .sync(MAPPED)
            .render(),
    );

    project.run_ok();
    assert_events(
        &project.take_delivered(),
        &(1..=3)
            .map(|id| added(mapped(&user(id), "NO")))
            .collect::<Vec<_>>(),
    );

    wh.exec("UPDATE users SET email = 'new2@example.com' WHERE id = 2");
    set_pairs(&wh, 2, "SE");
    project.run_ok();
    let mut now = user(2);
    now["email"] = json!("new2@example.com");
    assert_events(
        &project.take_delivered(),
        &[updated(mapped(&now, "SE"), mapped(&user(2), "NO"))],
    );
}

#[test]
fn mapping_a_missing_column_fails_run_and_check() {
    let bad = |wh: &Warehouse| {
        Config::new(wh)
            .sync(r#"mapping = { "id" = "id", "traits.phone" = "phone" }"#)
            .render()
    };
    rejected_without_touching_state(bad, &["run", SYNC], &["phone", SYNC]);
    rejected_without_touching_state(bad, &["check"], &["phone", SYNC]);
}

#[test]
fn check_passes_a_good_config_with_a_line_per_sync() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let config = Config::new(&wh)
        .sync(r#"mapping = { "id" = "id", "traits.email" = "email" }"#)
        .render();
    project.write_config(&format!(
        "{config}\n[syncs.users_again]\nmodel = \"users\"\ndestination = \"out\"\n"
    ));

    let stdout = project.ebb_ok(&["check"]);
    for sync in [SYNC, "users_again"] {
        let lines: Vec<&str> = stdout.lines().filter(|l| l.contains(sync)).collect();
        assert_eq!(lines.len(), 1, "one line for sync {sync}:\n{stdout}");
        assert!(
            !lines[0].to_lowercase().contains("error"),
            "sync {sync} is fine:\n{stdout}"
        );
    }
    assert!(
        !project.state_db().exists(),
        "check created the state store"
    );
}
