//! Text that is not UTF-8, which JSON cannot carry: SQLite stores whatever
//! bytes it is given as text, and so does a Postgres database in
//! `SQL_ASCII`. The row holding it is a row error naming the key and the
//! column, owed like any other, while the other rows are delivered; once
//! the data is fixed, the row is delivered too.
//!
//! MariaDB is not among them: it converts text to the connection's
//! `utf8mb4` itself, replacing what it cannot read with `?`, and sends
//! binary strings as bytes (base64), so no undecodable text reaches Ebb.

use serde_json::{Value, json};

use crate::changes::{all_added, assert_counts, read};
use crate::support::config::Config;
use crate::support::events::{added, assert_events};
use crate::support::project::Project;
use crate::support::warehouse::Warehouse;

/// "Jos" and the byte 0xE9 (Latin-1 "é"), as SQLite and as a `SQL_ASCII`
/// Postgres database write it.
const SQLITE_BAD_TEXT: &str = "CAST(x'4a6f73e9' AS TEXT)";
const POSTGRES_BAD_TEXT: &str = r"E'Jos\xe9'";

/// How the row errors show [`SQLITE_BAD_TEXT`] and [`POSTGRES_BAD_TEXT`].
const BAD_BYTES: &str = r#"byte 0xe9 at offset 3: "Jos\xe9""#;

/// Checks that a row error names the model, the column, the bad bytes
/// (as `shown`) and what to do.
fn names_bad_text(error: &Value, column: &str, shown: &str) {
    let message = error["error"].as_str().expect("error");
    let want =
        format!("model `users`: column `{column}` holds text that is not valid UTF-8 ({shown})");
    assert!(
        message.starts_with(&want) && message.contains("convert the column in the model's query"),
        "the error must name the column, the bytes and the fix: {error}"
    );
}

/// Users 1–4, user 3's email being `bad_text`: users 1, 2 and 4 are
/// delivered and user 3 is owed, run after run, until its email is fixed.
fn bad_text_is_a_row_error_until_fixed(project: &Project, wh: &Warehouse, bad_text: &str) {
    wh.insert_users(1..=4);
    wh.exec(&format!("UPDATE users SET email = {bad_text} WHERE id = 3"));
    project.write_config(&Config::new(wh).render());

    let first = project.run();
    first.assert_status("partial");
    assert_counts(
        &first,
        &[("extracted", 4), ("sent", 3), ("ok", 3), ("failed", 1)],
    );
    assert_events(&project.take_delivered(), &all_added([1, 2, 4]));
    let errors = project.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (&errors[0]["key"], &errors[0]["op"], &errors[0]["attempts"]),
        (&json!("3"), &json!("added"), &json!(1)),
        "{errors:?}"
    );
    names_bad_text(&errors[0], "email", BAD_BYTES);
    assert_eq!(
        errors[0]["payload"],
        json!({"id": 3, "email": null, "plan": "free"})
    );

    // Still owed: it fails again, and a new user still goes.
    wh.insert_users([5]);
    let again = project.run();
    again.assert_status("partial");
    assert_counts(
        &again,
        &[("extracted", read(wh, 5, 2)), ("sent", 1), ("failed", 1)],
    );
    assert_events(&project.take_delivered(), &all_added([5]));
    let errors = project.errors();
    assert_eq!(
        (errors.len(), &errors[0]["attempts"]),
        (1, &json!(2)),
        "{errors:?}"
    );

    wh.exec("UPDATE users SET email = 'user3@example.com' WHERE id = 3");
    let fixed = project.run_ok();
    assert_counts(&fixed, &[("sent", 1), ("ok", 1), ("failed", 0)]);
    assert_events(&project.take_delivered(), &all_added([3]));
    assert_eq!(project.errors(), Vec::<Value>::new());
}

#[test]
fn sqlite_text_that_is_not_utf8_is_a_row_error_until_fixed() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    bad_text_is_a_row_error_until_fixed(&project, &wh, SQLITE_BAD_TEXT);
}

/// A key that is not UTF-8 stands in the row error with its bad bytes
/// written `\xNN`, so it can still be told apart and dropped.
#[test]
fn sqlite_key_that_is_not_utf8_is_shown_escaped() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.exec_script(
        "CREATE TABLE accounts (id TEXT, email TEXT);
         INSERT INTO accounts (rowid, id, email) VALUES
           (1, 'a', 'a@example.com'), (2, CAST(x'4bff' AS TEXT), 'k@example.com');",
    );
    project.write_config(
        &Config::new(&wh)
            .query("SELECT id, email FROM accounts ORDER BY rowid")
            .render(),
    );
    project.run().assert_status("partial");
    assert_events(
        &project.take_delivered(),
        &[added(json!({"id": "a", "email": "a@example.com"}))],
    );
    let errors = project.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["key"], json!(r"K\xff"), "{errors:?}");
    let message = errors[0]["error"].as_str().expect("error");
    assert!(
        message.contains(
            r#"column `id` holds text that is not valid UTF-8 (byte 0xff at offset 1: "K\xff")"#
        ),
        "{message}"
    );

    wh.exec("UPDATE accounts SET id = 'K' WHERE rowid = 2");
    project.run_ok();
    assert_events(
        &project.take_delivered(),
        &[added(json!({"id": "K", "email": "k@example.com"}))],
    );
    assert_eq!(project.errors(), Vec::<Value>::new());
}

#[test]
fn postgres_text_that_is_not_utf8_is_a_row_error_until_fixed() {
    let Some(wh) = Warehouse::postgres_sql_ascii() else {
        return;
    };
    bad_text_is_a_row_error_until_fixed(&Project::new(), &wh, POSTGRES_BAD_TEXT);
}

/// With `diff = "warehouse"` the row reaches Ebb through the warehouse's
/// diff query, whose key column is just as undecodable.
#[test]
fn warehouse_diff_text_that_is_not_utf8_is_a_row_error_until_fixed() {
    let Some(wh) = Warehouse::postgres_sql_ascii().map(Warehouse::diffing_in_warehouse) else {
        return;
    };
    bad_text_is_a_row_error_until_fixed(&Project::new(), &wh, POSTGRES_BAD_TEXT);
}

/// Text inside an array or a JSON value is read like any other.
#[test]
fn postgres_arrays_and_json_holding_text_that_is_not_utf8_are_row_errors() {
    let Some(wh) = Warehouse::postgres_sql_ascii() else {
        return;
    };
    wh.insert_users(1..=4);
    wh.exec(&format!(
        "UPDATE users SET email = {POSTGRES_BAD_TEXT} WHERE id IN (3, 4)"
    ));
    let project = Project::new();
    project.write_config(
        &Config::new(&wh)
            .query(
                "SELECT id, CASE WHEN id <> 4 THEN ARRAY[email] END AS emails,
                        CASE WHEN id <> 3 THEN to_jsonb(email) END AS doc
                 FROM users ORDER BY id",
            )
            .render(),
    );
    project.run().assert_status("partial");
    let user = |id: i64| {
        let email = format!("user{id}@example.com");
        added(json!({"id": id, "emails": [email], "doc": email}))
    };
    assert_events(&project.take_delivered(), &[user(1), user(2)]);
    let errors = project.errors();
    let keys: Vec<&Value> = errors.iter().map(|e| &e["key"]).collect();
    assert_eq!(keys, [&json!("3"), &json!("4")], "{errors:?}");
    names_bad_text(&errors[0], "emails", BAD_BYTES);
    // A JSON value's bytes are its JSON text, quotes and all.
    names_bad_text(&errors[1], "doc", r#"byte 0xe9 at offset 4: ""Jos\xe9"""#);
}
