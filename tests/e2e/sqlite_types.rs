//! SQLite values by the rules in docs/types.md: its storage classes, and
//! 0/1 in a column declared BOOLEAN as false/true.

use serde_json::json;

use crate::support::config::Config;
use crate::support::events::{added, assert_events};
use crate::support::project::Project;
use crate::support::warehouse::Warehouse;

#[test]
fn sqlite_values_become_exact_json() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.exec_script(
        "CREATE TABLE everything (id INTEGER PRIMARY KEY, b BOOLEAN, big INTEGER, r REAL,
             n NUMERIC, tx TEXT, ts DATETIME, bl BLOB);
         INSERT INTO everything VALUES
           (1, 1, 9007199254740993, 1.5, 12.50, 'h\u{e9}llo', '2024-05-01 10:00:00', x'00ff'),
           (2, 0, -9007199254740991, 9e999, 7, '', NULL, x''),
           (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
    );
    project.write_config(&Config::new(&wh).query("SELECT * FROM everything").render());
    project.run_ok();
    assert_events(
        &project.take_delivered(),
        &[
            added(
                json!({"id": 1, "b": true, "big": "9007199254740993", "r": 1.5, "n": 12.5,
                "tx": "h\u{e9}llo", "ts": "2024-05-01 10:00:00", "bl": "AP8="}),
            ),
            added(
                json!({"id": 2, "b": false, "big": -9007199254740991_i64, "r": "Infinity",
                "n": 7, "tx": "", "ts": null, "bl": ""}),
            ),
            added(
                json!({"id": 3, "b": null, "big": null, "r": null, "n": null, "tx": null,
                "ts": null, "bl": null}),
            ),
        ],
    );
}
