//! MariaDB (or MySQL) as the source: the change scenarios again, every
//! common column type against its exact JSON, incremental models by
//! `{{last_sync_time}}` and by cursor, the statement timeout and the
//! read-only transaction. Each test gets its own database, dropped when it
//! ends.

use std::time::Duration;

use serde_json::{Value, json};

use crate::changes::{self, assert_counts};
use crate::http_delivery;
use crate::support::config::Config;
use crate::support::events::{added, assert_events, updated};
use crate::support::project::{Project, Run, SYNC};
use crate::support::warehouse::Warehouse;

#[test]
fn mysql_delivers_exactly_the_changes() {
    let Some(wh) = Warehouse::mysql() else {
        return;
    };
    changes::delivers_exactly_the_changes(&Project::new(), &wh);
}

#[test]
fn mysql_on_added_sends_only_additions() {
    let Some(wh) = Warehouse::mysql() else {
        return;
    };
    changes::on_added_sends_only_additions(&Project::new(), &wh);
}

#[test]
fn mysql_on_deleted_sends_only_deletions() {
    let Some(wh) = Warehouse::mysql() else {
        return;
    };
    changes::on_deleted_sends_only_deletions(&Project::new(), &wh);
}

#[test]
fn mysql_owed_rows_are_delivered_once_next_run() {
    let Some(wh) = Warehouse::mysql() else {
        return;
    };
    http_delivery::owed_rows_are_delivered_once_next_run(&Project::new(), &wh);
}

const CREATE_KINDS: &str = "CREATE TABLE kinds (
    id INT PRIMARY KEY,
    b BOOL, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
    mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
    bi BIGINT, bu BIGINT UNSIGNED,
    d_wide DECIMAL(38,10), d_narrow DECIMAL(10,2), f FLOAT, dbl DOUBLE,
    c CHAR(4), vc VARCHAR(64), vc_bin VARCHAR(16) COLLATE utf8mb4_bin, tx TEXT,
    lt LONGTEXT, e ENUM('free','pro'), st SET('a','b','c'),
    dt DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(6) NULL, yr YEAR,
    j JSON, bl BLOB, bin BINARY(4), vb VARBINARY(8), bt BIT(12)
) DEFAULT CHARSET = utf8mb4";

/// Four rows of edge values and one of NULLs. Zero dates need a session
/// without `NO_ZERO_DATE`, so the script sets its own `sql_mode`.
const INSERT_KINDS: &str = "SET SESSION sql_mode = 'STRICT_TRANS_TABLES';
INSERT INTO kinds VALUES
(1, TRUE, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
 9223372036854775807, 18446744073709551615,
 1234567890123456789012345678.0123456789, 12345678.90, 1.5, 1.7976931348623157e308,
 'ab', 'héllo 👋🏽 e\u{301}', 'Case', CONCAT('nul', CHAR(0 USING utf8mb4), 'one', CHAR(1 USING utf8mb4), 'end'),
 REPEAT('x', 70000), 'pro', 'a,c',
 '2024-02-29', '-838:59:59', '2024-05-01 10:00:00.5', '2024-05-01 10:00:00.25', 2155,
 '{\"plan\": \"pro\", \"seats\": [1, 2], \"nested\": {\"ok\": true}, \"none\": null}',
 X'00FF10', 'ab', X'DEADBEEF', b'101010101010'),
(2, FALSE, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0,
 9007199254740993, 9007199254740991,
 1234567890123456, -99999999.99, -0.25, 2.2250738585072014e-308,
 '', '', 'ß', CHAR(1 USING utf8mb4), '', 'free', '',
 '1000-01-01', '00:00:00', '1000-01-01 00:00:00', '1970-01-01 00:00:01', 1901,
 '[]', '', X'00000000', '', 0),
(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 -9223372036854775808, 9007199254740992,
 123456789012345, 0.01, 0.1, 100,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 '9999-12-31', '-00:00:00.5', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', NULL,
 '\"just a string\"', NULL, NULL, NULL, NULL),
(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 0.0000000001, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 '0000-00-00', '837:59:59.5', '0000-00-00 00:00:00', NULL, NULL,
 NULL, NULL, NULL, NULL, NULL),
(5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

/// Row `id` of `kinds` with every column NULL but the ones given.
fn kinds_row(id: i64, set: Value) -> Value {
    let mut row = json!({ "id": id });
    for column in [
        "b", "ti", "tu", "si", "su", "mi", "mu", "i", "iu", "bi", "bu", "d_wide", "d_narrow", "f",
        "dbl", "c", "vc", "vc_bin", "tx", "lt", "e", "st", "dt", "tm", "dtm", "ts", "yr", "j",
        "bl", "bin", "vb", "bt", "nothing",
    ] {
        row[column] = set.get(column).cloned().unwrap_or(Value::Null);
    }
    row
}

#[test]
fn mysql_column_types_become_exact_json() {
    let Some(wh) = Warehouse::mysql() else {
        return;
    };
    wh.exec(CREATE_KINDS);
    wh.exec_script(INSERT_KINDS);
    let project = Project::new();
    project.write_config(
        &Config::new(&wh)
            .query("SELECT kinds.*, NULL AS nothing FROM kinds ORDER BY id")
            .render(),
    );
    project.run_ok();

    let expected = [
        kinds_row(
            1,
            json!({
                "b": true, "ti": 127, "tu": 255, "si": 32767, "su": 65535,
                "mi": 8388607, "mu": 16777215, "i": 2147483647, "iu": 4294967295_u64,
                "bi": "9223372036854775807", "bu": "18446744073709551615",
                "d_wide": "1234567890123456789012345678.0123456789", "d_narrow": 12345678.9,
                "f": 1.5, "dbl": 1.7976931348623157e308,
                "c": "ab", "vc": "héllo 👋🏽 e\u{301}", "vc_bin": "Case",
                "tx": "nul\u{0}one\u{1}end", "lt": "x".repeat(70000), "e": "pro", "st": "a,c",
                "dt": "2024-02-29", "tm": "-838:59:59", "dtm": "2024-05-01T10:00:00.500",
                "ts": "2024-05-01T10:00:00.250Z", "yr": 2155,
                "j": { "plan": "pro", "seats": [1, 2], "nested": { "ok": true }, "none": null },
                "bl": "AP8Q", "bin": "YWIAAA==", "vb": "3q2+7w==", "bt": 2730,
            }),
        ),
        kinds_row(
            2,
            json!({
                "b": false, "ti": -128, "tu": 0, "si": -32768, "su": 0,
                "mi": -8388608, "mu": 0, "i": -2147483648_i64, "iu": 0,
                "bi": "9007199254740993", "bu": 9007199254740991_u64,
                "d_wide": "1234567890123456.0000000000", "d_narrow": -99999999.99,
                "f": -0.25, "dbl": 2.2250738585072014e-308,
                "c": "", "vc": "", "vc_bin": "ß", "tx": "\u{1}", "lt": "", "e": "free", "st": "",
                "dt": "1000-01-01", "tm": "00:00:00", "dtm": "1000-01-01T00:00:00",
                "ts": "1970-01-01T00:00:01Z", "yr": 1901,
                "j": [], "bl": "", "bin": "AAAAAA==", "vb": "", "bt": 0,
            }),
        ),
        kinds_row(
            3,
            json!({
                "bi": "-9223372036854775808", "bu": "9007199254740992",
                "d_wide": 123456789012345_i64, "d_narrow": 0.01, "f": 0.1, "dbl": 100.0,
                "dt": "9999-12-31", "tm": "-00:00:00.500", "dtm": "9999-12-31T23:59:59.999999",
                "ts": "2038-01-19T03:14:07.999999Z", "j": "just a string",
            }),
        ),
        // Zero dates name no day: they arrive as null.
        kinds_row(4, json!({ "d_wide": 0.0000000001, "tm": "837:59:59.500" })),
        kinds_row(5, json!({})),
    ];
    let delivered = project.take_delivered();
    assert_events(
        &delivered,
        &expected.into_iter().map(added).collect::<Vec<_>>(),
    );
    // Equal as JSON values is not enough for numbers: the digits must be
    // the ones written (no `1e-10`, no rounding through a double).
    let row = |id: &str| {
        delivered
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["fields"].to_string())
            .unwrap_or_default()
    };
    assert!(
        row("1").contains(r#""d_narrow":12345678.9,"#),
        "{}",
        row("1")
    );
    assert!(row("3").contains(r#""f":0.1,"#), "{}", row("3"));
}

#[test]
fn mysql_incremental_model_by_last_sync_time_sends_only_changed_rows() {
    let Some(wh) = Warehouse::mysql() else {
        return;
    };
    wh.exec(
        "CREATE TABLE people (id INT PRIMARY KEY, email VARCHAR(255), plan VARCHAR(32), \
         seats INT, last_updated DATETIME)",
    );
    wh.exec(
        "INSERT INTO people VALUES \
         (1, 'ada@example.com', 'free', 1, '2024-01-01 00:00:00'), \
         (2, 'bob@example.com', 'pro', 5, '2024-01-02 00:00:00'), \
         (3, 'cy@example.com', 'team', 12, '2024-01-03 00:00:00')",
    );
    let project = Project::new();
    project.write_config(
        &Config::new(&wh)
            .query(
                "SELECT id, email, json_object('plan', plan, 'seats', seats) AS traits, last_updated \
                 FROM people WHERE UNIX_TIMESTAMP(last_updated) > {{last_sync_time}}",
            )
            .render(),
    );
    let person = |id: i64, email: &str, plan: &str, seats: i64, at: &str| {
        json!({
            "id": id,
            "email": email,
            "traits": { "plan": plan, "seats": seats },
            "last_updated": at,
        })
    };
    let bob = person(2, "bob@example.com", "pro", 5, "2024-01-02T00:00:00");

    let first = project.run_ok();
    assert_counts(&first, &[("extracted", 3), ("added", 3), ("sent", 3)]);
    assert_events(
        &project.take_delivered(),
        &[
            added(person(
                1,
                "ada@example.com",
                "free",
                1,
                "2024-01-01T00:00:00",
            )),
            added(bob.clone()),
            added(person(
                3,
                "cy@example.com",
                "team",
                12,
                "2024-01-03T00:00:00",
            )),
        ],
    );

    // Later than the first run's start (and within UNIX_TIMESTAMP's range).
    wh.exec(
        "UPDATE people SET plan = 'enterprise', seats = 50, \
         last_updated = '2037-06-01 12:00:00' WHERE id = 2",
    );
    let second = project.run_ok();
    assert_counts(
        &second,
        &[
            ("extracted", 1),
            ("added", 0),
            ("updated", 1),
            ("deleted", 0),
            ("sent", 1),
        ],
    );
    assert_events(
        &project.take_delivered(),
        &[updated(
            person(
                2,
                "bob@example.com",
                "enterprise",
                50,
                "2037-06-01T12:00:00",
            ),
            bob,
        )],
    );
}

/// A cursor column of `column_type`: the second run reads only rows past
/// the highest value the first delivered.
fn cursor_model_reads_past_the_high_mark(column_type: &str, rendered: [&str; 4]) {
    let Some(wh) = Warehouse::mysql() else {
        return;
    };
    wh.exec(&format!(
        "ALTER TABLE users ADD COLUMN updated_at {column_type}"
    ));
    wh.insert_users(1..=3);
    wh.exec("UPDATE users SET updated_at = '2024-01-01 00:00:00.1' WHERE id = 1");
    wh.exec("UPDATE users SET updated_at = '2024-01-01 00:00:00.3' WHERE id = 2");
    wh.exec("UPDATE users SET updated_at = '2024-01-01 00:00:00.2' WHERE id = 3");
    let project = Project::new();
    project.write_config(
        &Config::new(&wh)
            .query(
                "SELECT id, email, plan, updated_at FROM users \
                 WHERE {{cursor}} IS NULL OR updated_at > {{cursor}} ORDER BY id",
            )
            .model(r#"cursor = "updated_at""#)
            .render(),
    );
    let user = |id: i64, plan: &str, at: &str| json!({ "id": id, "email": format!("user{id}@example.com"), "plan": plan, "updated_at": at });

    project.run_ok();
    assert_events(
        &project.take_delivered(),
        &[
            added(user(1, "free", rendered[0])),
            added(user(2, "pro", rendered[1])),
            added(user(3, "free", rendered[2])),
        ],
    );

    // User 4 is older than the high mark (user 2's), so it is not read.
    wh.exec("UPDATE users SET plan = 'team', updated_at = '2024-01-02 00:00:00' WHERE id = 1");
    wh.insert_users([4]);
    wh.exec("UPDATE users SET updated_at = '2024-01-01 00:00:00.2' WHERE id = 4");
    let second = project.run_ok();
    assert_counts(&second, &[("extracted", 1), ("updated", 1), ("sent", 1)]);
    assert_events(
        &project.take_delivered(),
        &[updated(
            user(1, "team", rendered[3]),
            user(1, "free", rendered[0]),
        )],
    );
}

#[test]
fn mysql_cursor_on_a_datetime_column() {
    cursor_model_reads_past_the_high_mark(
        "DATETIME(6)",
        [
            "2024-01-01T00:00:00.100",
            "2024-01-01T00:00:00.300",
            "2024-01-01T00:00:00.200",
            "2024-01-02T00:00:00",
        ],
    );
}

#[test]
fn mysql_cursor_on_a_timestamp_column() {
    cursor_model_reads_past_the_high_mark(
        "TIMESTAMP(6) NULL",
        [
            "2024-01-01T00:00:00.100Z",
            "2024-01-01T00:00:00.300Z",
            "2024-01-01T00:00:00.200Z",
            "2024-01-02T00:00:00Z",
        ],
    );
}

/// The run's error, from its report and stderr.
fn run_error(run: &Run) -> String {
    format!("{} {}", run.report["error"], run.output.stderr)
}

#[test]
fn mysql_statement_timeout_stops_a_slow_model() {
    let Some(wh) = Warehouse::mysql() else {
        return;
    };
    wh.insert_users([1]);
    let project = Project::new();
    project.write_config(
        &Config::new(&wh)
            .source_setting("statement_timeout_secs = 1")
            .query("SELECT id, SLEEP(5) AS slept FROM users")
            .render(),
    );
    let run = project.run();
    run.assert_status("failed");
    let error = run_error(&run);
    assert!(
        error.contains("model `users`: timed out") && error.contains("max_statement_time"),
        "{error}"
    );
    assert!(
        run.output.elapsed < Duration::from_secs(5),
        "a 1 s statement timeout, yet the run took {:?}",
        run.output.elapsed
    );
    assert_events(&project.take_delivered(), &[]);
}

#[test]
fn mysql_models_cannot_write() {
    let Some(wh) = Warehouse::mysql() else {
        return;
    };
    wh.insert_users(1..=2);
    wh.exec("CREATE TABLE audit (n INT)");
    wh.exec(
        "CREATE FUNCTION bump() RETURNS INT MODIFIES SQL DATA \
         BEGIN INSERT INTO audit VALUES (1); RETURN 1; END",
    );
    let project = Project::new();

    // A SELECT whose function writes: the read-only transaction refuses it.
    project.write_config(
        &Config::new(&wh)
            .query("SELECT id, email, bump() AS bumped FROM users")
            .render(),
    );
    // Describing it (check, preview, plan, and run before it starts) is
    // read-only too: the model is refused before anything runs.
    project.assert_every_command_refuses(&["READ ONLY transaction"]);
    assert_eq!(
        wh.scalar("SELECT COUNT(*) FROM audit"),
        0,
        "describing the model wrote"
    );

    // DDL would commit the transaction and run outside it: refused before
    // anything reaches the database.
    project.write_config(
        &Config::new(&wh)
            .query("CREATE TABLE evil AS SELECT id FROM users")
            .render(),
    );
    let out = project.ebb(&["run", SYNC]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains(
            "model `users`: the query starts with `CREATE`; Ebb only runs a single SELECT"
        ),
        "{}",
        out.stderr
    );

    assert_eq!(wh.scalar("SELECT COUNT(*) FROM audit"), 0);
    assert_eq!(
        wh.scalar(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = 'evil'"
        ),
        0
    );
    assert_eq!(wh.scalar("SELECT COUNT(*) FROM users"), 2);
    assert_events(&project.take_delivered(), &[]);
}
