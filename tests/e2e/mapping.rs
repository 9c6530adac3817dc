//! A sync's `mapping` shapes what the destination receives, in `fields` and
//! in `previous` alike: numeric segments index arrays, `"*" = "*"` passes
//! every field and `{ ignore = true }` takes one out. A mapping that reads
//! or ignores a column the model does not return is a config error, caught
//! by `ebb check` as well as `ebb run`.

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

/// A Postgres `users` table with a `meta` JSON column: user 1 has two
/// tags, user 2 none, user 3 a `meta` without tags.
fn users_with_tags() -> Option<Warehouse> {
    let wh = Warehouse::postgres()?;
    wh.insert_users(1..=3);
    wh.exec("ALTER TABLE users ADD COLUMN meta jsonb");
    wh.exec(r#"UPDATE users SET meta = '{"tags": ["vip", "beta"]}' WHERE id = 1"#);
    wh.exec(r#"UPDATE users SET meta = '{"tags": []}' WHERE id = 2"#);
    wh.exec(r#"UPDATE users SET meta = '{"tier": 3}' WHERE id = 3"#);
    Some(wh)
}

#[test]
fn array_indexes_pick_elements_and_a_missing_one_leaves_its_target_out() {
    let Some(wh) = users_with_tags() else {
        return;
    };
    let project = Project::new();
    project.write_config(
        &Config::new(&wh)
            .query("SELECT id, meta FROM users ORDER BY id")
            .sync(r#"mapping = { "id" = "id", "traits.tags" = "meta.tags.0", "traits.second" = "meta.tags.1" }"#)
            .render(),
    );

    let checked = project.ebb_ok(&["check"]);
    assert!(
        checked
            .lines()
            .any(|l| l.contains(SYNC) && !l.to_lowercase().contains("error")),
        "check passes a path into a JSON column:\n{checked}"
    );
    project.run_ok();
    assert_events(
        &project.take_delivered(),
        &[
            added(json!({ "id": 1, "traits": { "tags": "vip", "second": "beta" } })),
            added(json!({ "id": 2 })),
            added(json!({ "id": 3 })),
        ],
    );
}

#[test]
fn pass_through_sends_every_column_but_the_ignored_ones() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    project.write_config(
        &Config::new(&wh)
            .query(QUERY_WITH_PAIRS)
            .sync(r#"mapping = { "*" = "*", "pairs" = { ignore = true }, "email" = { ignore = true }, "contact.email" = "email" }"#)
            .render(),
    );

    project.run_ok();
    let sent = |id: i64| {
        let user = user(id);
        json!({ "id": id, "plan": user["plan"], "contact": { "email": user["email"] } })
    };
    assert_events(&project.take_delivered(), &[added(sent(1)), added(sent(2))]);
}

#[test]
fn a_mistyped_source_or_ignore_is_refused_with_the_column_it_meant() {
    let mistyped_source = |wh: &Warehouse| {
        Config::new(wh)
            .sync(r#"mapping = { "id" = "id", "traits.email" = "emial" }"#)
            .render()
    };
    let mentions = [
        SYNC,
        r#"mapping."traits.email""#,
        "`emial`",
        "did you mean `email`?",
        "`plan`",
    ];
    rejected_without_touching_state(mistyped_source, &["check"], &mentions);
    rejected_without_touching_state(mistyped_source, &["run", SYNC], &mentions);

    let mistyped_ignore = |wh: &Warehouse| {
        Config::new(wh)
            .query(QUERY_WITH_PAIRS)
            .sync(r#"mapping = { "*" = "*", "piars" = { ignore = true } }"#)
            .render()
    };
    rejected_without_touching_state(
        mistyped_ignore,
        &["check"],
        &[SYNC, "mapping.piars", "did you mean `pairs`?"],
    );
}

#[test]
fn a_target_cannot_index_an_array() {
    rejected_without_touching_state(
        |wh| {
            Config::new(wh)
                .sync(r#"mapping = { "id" = "id", "tags.0" = "email" }"#)
                .render()
        },
        &["check"],
        &[
            &format!(r#"syncs.{SYNC}.mapping."tags.0""#),
            "cannot index an array",
        ],
    );
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
