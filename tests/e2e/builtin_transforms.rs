//! The built-in transforms chained in a real run: `ebb:unpack-pairs` turns
//! text pairs into an object (in `previous` too) and `ebb:compare-truths`
//! drops updates that leave the compared fields alone. A dropped update is
//! committed, so no later run sends it.

use serde_json::{Value, json};

use crate::changes::{assert_counts, with};
use crate::support::config::Config;
use crate::support::events::{added, assert_events, updated};
use crate::support::project::Project;
use crate::support::warehouse::{Warehouse, user};

const CHAIN: &str = r#"transforms = [
  { plugin = "ebb:unpack-pairs", config = { field = "pairs" } },
  { plugin = "ebb:compare-truths", config = { fields = ["email", "pairs"] } },
]"#;

/// `user(id)` with `pairs` as unpack-pairs delivers it.
fn with_pairs(mut fields: Value, pairs: Value) -> Value {
    fields["pairs"] = pairs;
    fields
}

#[test]
fn unpack_then_compare_drops_updates_of_other_columns() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    // Null and empty values are left out of the object.
    wh.exec(
        r#"UPDATE users SET pairs = '[["country","UK"],["seats","5"],["note",""],["fax",null]]' WHERE id = 1"#,
    );
    wh.exec(r#"UPDATE users SET pairs = '[["country","FI"]]' WHERE id = 3"#);
    project.write_config(
        &Config::new(&wh)
            .query("SELECT id, email, plan, pairs FROM users ORDER BY id")
            .sync(CHAIN)
            .render(),
    );
    let one = with_pairs(user(1), json!({ "country": "UK", "seats": "5" }));
    let two = with_pairs(user(2), json!({}));
    let three = with_pairs(user(3), json!({ "country": "FI" }));

    let first = project.run_ok();
    assert_counts(&first, &[("added", 3), ("sent", 3), ("dropped", 0)]);
    assert_events(
        &project.take_delivered(),
        &[added(one), added(two.clone()), added(three.clone())],
    );

    // `plan` is not compared: the update is dropped, and committed.
    wh.exec("UPDATE users SET plan = 'enterprise' WHERE id = 2");
    let dropped = project.run_ok();
    assert_counts(
        &dropped,
        &[("updated", 1), ("dropped", 1), ("sent", 0), ("ok", 0)],
    );
    assert_events(&project.take_delivered(), &[]);

    let idle = project.run_ok();
    assert_counts(&idle, &[("updated", 0), ("dropped", 0), ("sent", 0)]);
    assert_events(&project.take_delivered(), &[]);

    // Compared fields changed: both updates go, with `previous` unpacked
    // and holding the dropped (but committed) plan change.
    wh.exec("UPDATE users SET email = 'new2@example.com' WHERE id = 2");
    wh.exec(r#"UPDATE users SET pairs = '[["country","FI"],["seats","3"]]' WHERE id = 3"#);
    let compared = project.run_ok();
    assert_counts(
        &compared,
        &[("updated", 2), ("dropped", 0), ("sent", 2), ("ok", 2)],
    );
    let two_now = with(two, "plan", "enterprise");
    assert_events(
        &project.take_delivered(),
        &[
            updated(with(two_now.clone(), "email", "new2@example.com"), two_now),
            updated(
                with_pairs(user(3), json!({ "country": "FI", "seats": "3" })),
                three,
            ),
        ],
    );
}

#[test]
fn a_refused_update_is_owed_with_the_event_the_chain_received() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    project.write_config(
        &Config::new(&wh)
            .query("SELECT id, email, plan, pairs FROM users ORDER BY id")
            .sync(CHAIN)
            .render(),
    );
    project.run_ok();
    project.take_delivered();

    // A pair without a value is refused by unpack-pairs; the other update
    // goes.
    wh.exec(r#"UPDATE users SET plan = 'enterprise', pairs = '[["a"]]' WHERE id = 1"#);
    wh.exec("UPDATE users SET email = 'new2@example.com' WHERE id = 2");
    let run = project.run();
    run.assert_status("partial");
    assert_counts(&run, &[("updated", 2), ("sent", 1), ("failed", 1)]);
    let owed = project.errors();
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert_eq!(owed[0]["key"], "1");
    let payload = &owed[0]["payload"];
    assert_eq!(payload["op"], "updated", "{payload}");
    assert_eq!(payload["fields"]["plan"], "enterprise", "{payload}");
    assert_eq!(payload["previous"]["plan"], "free", "{payload}");
    assert_eq!(
        payload["previous"]["email"], "user1@example.com",
        "{payload}"
    );
}
