//! The quickstart in `examples/quickstart` works as its README promises:
//! the shipped config and warehouse script, run in a fresh folder, deliver
//! every user once, then exactly the changes `change.rs` makes; and its
//! JavaScript twin (`users_js`, `transforms/rebuild.js`) delivers exactly
//! what the chain of built-in transforms does.

use serde_json::{Value, json};

use crate::changes::assert_counts;
use crate::support::config::plugin_cache;
use crate::support::events::{assert_events, event};
use crate::support::project::Project;
use crate::support::warehouse::Warehouse;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart");
/// The sync with built-in transforms and its twin in JavaScript, with the
/// file each writes.
const SYNCS: [(&str, &str); 2] = [
    ("users_to_file", "out/users.jsonl"),
    ("users_js", "out/users_js.jsonl"),
];

fn example_file(name: &str) -> String {
    let path = format!("{EXAMPLE}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The SQL of the `CHANGES` constant in `change.rs`, unescaped.
fn example_changes() -> String {
    let source = example_file("change.rs");
    let opening = "const CHANGES: &str = \"";
    let start = source
        .find(opening)
        .map(|at| at + opening.len())
        .expect("change.rs declares `const CHANGES: &str = \"…\"`");
    let end = start
        + source[start..]
            .find("\";")
            .expect("CHANGES ends with `\";`");
    let sql = source[start..end].replace("\\\"", "\"");
    assert!(
        !sql.contains('\\'),
        "CHANGES uses an escape this test does not undo:\n{sql}"
    );
    sql
}

/// One quickstart user as the sync's mapping delivers it.
fn user(id: i64, email: &str, plan: &str, attributes: Value) -> Value {
    json!({
        "user_id": id,
        "traits": { "email": email, "plan": plan, "attributes": attributes },
        "source": "quickstart",
    })
}

fn added(fields: Value) -> Value {
    let id = fields["user_id"].to_string();
    event("added", &id, fields, Value::Null)
}

/// `warehouse.sql`'s users; `seats` that are empty or null are left out.
fn seeded(id: i64) -> Value {
    let (email, plan, country, seats) = match id {
        1 => ("ada", "pro", "UK", Some("5")),
        2 => ("grace", "team", "US", Some("12")),
        3 => ("linus", "free", "FI", None),
        4 => ("margaret", "pro", "US", Some("3")),
        5 => ("barbara", "team", "US", Some("40")),
        6 => ("edsger", "free", "NL", None),
        7 => ("radia", "pro", "US", Some("2")),
        8 => ("tim", "team", "UK", Some("7")),
        9 => ("frances", "free", "US", None),
        10 => ("ken", "pro", "US", Some("1")),
        11 => ("dennis", "pro", "US", Some("1")),
        12 => ("sophie", "team", "UK", Some("9")),
        other => panic!("no seeded user {other}"),
    };
    let mut attributes = json!({ "country": country });
    if let Some(seats) = seats {
        attributes["seats"] = json!(seats);
    }
    user(id, &format!("{email}@example.com"), plan, attributes)
}

#[test]
fn quickstart_delivers_the_seed_then_the_days_changes() {
    let project = Project::new();
    project.write(
        "ebb.toml",
        &format!(
            "{}\n[plugins]\ncache_dir = '{}'\n",
            example_file("ebb.toml"),
            plugin_cache().display()
        ),
    );
    project.write("warehouse.sql", &example_file("warehouse.sql"));
    project.write(
        "transforms/rebuild.js",
        &example_file("transforms/rebuild.js"),
    );
    project.write(
        "transforms/warehouseActionsUtils.js",
        &example_file("transforms/warehouseActionsUtils.js"),
    );

    for (sync, output) in SYNCS {
        let first = project.run_sync(sync);
        first.assert_status("success");
        assert_counts(&first, &[("extracted", 12), ("added", 12), ("sent", 12)]);
        assert_events(
            &project.take_delivered_from(output),
            &(1..=12).map(|id| added(seeded(id))).collect::<Vec<_>>(),
        );

        let idle = project.run_sync(sync);
        idle.assert_status("success");
        assert_counts(&idle, &[("extracted", 12), ("sent", 0)]);
        assert_events(&project.take_delivered_from(output), &[]);
    }

    Warehouse::existing_sqlite(&project).exec_script(&example_changes());
    let ada = seeded(1);
    let grace = seeded(2);
    let mut ada_now = ada.clone();
    ada_now["traits"]["plan"] = json!("team");
    let mut grace_now = grace.clone();
    grace_now["traits"]["email"] = json!("grace.hopper@example.com");
    for (sync, output) in SYNCS {
        let change = project.run_sync(sync);
        change.assert_status("success");
        assert_counts(
            &change,
            &[
                ("added", 1),
                ("updated", 3),
                ("deleted", 2),
                ("dropped", 1),
                ("sent", 5),
                ("ok", 5),
            ],
        );
        assert_events(
            &project.take_delivered_from(output),
            &[
                event("updated", "1", ada_now.clone(), ada.clone()),
                event("updated", "2", grace_now.clone(), grace.clone()),
                event("deleted", "6", seeded(6), seeded(6)),
                event("deleted", "9", seeded(9), seeded(9)),
                added(user(
                    13,
                    "alan@example.com",
                    "pro",
                    json!({ "country": "UK", "seats": "4" }),
                )),
            ],
        );
    }
}
