//! Rows a sync cannot key are row errors, listed by `ebb errors` and never
//! sent: a null primary key, and every row of a key returned more than once
//! (which of them is the truth cannot be known). They hold back none of the
//! other rows. Once the data is fixed, they are delivered.

use serde_json::Value;

use crate::changes::{all_added, assert_counts};
use crate::support::config::Config;
use crate::support::events::assert_events;
use crate::support::project::Project;
use crate::support::warehouse::{Warehouse, user};

/// Unlike `users`, `accounts` has no key constraint, so its `id` can be null
/// or repeated. Row N holds the email and plan of `user(N)`.
const CREATE_ACCOUNTS: &str = "CREATE TABLE accounts (id INTEGER, email TEXT, plan TEXT)";
const QUERY: &str = "SELECT id, email, plan FROM accounts ORDER BY rowid";

/// Rows 3 and 8 have no key; rows 5 and 6 share key 5.
const BROKEN_IDS: [Option<i64>; 8] = [
    Some(1),
    Some(2),
    None,
    Some(4),
    Some(5),
    Some(5),
    Some(7),
    None,
];

fn insert_account(wh: &Warehouse, row: i64, id: Option<i64>) {
    let fields = user(row);
    wh.exec(&format!(
        "INSERT INTO accounts (rowid, id, email, plan) VALUES ({row}, {}, '{}', '{}')",
        id.map_or("NULL".to_owned(), |id| id.to_string()),
        fields["email"].as_str().expect("email"),
        fields["plan"].as_str().expect("plan"),
    ));
}

/// Whether `text` holds `word` as a whole token, whatever quotes it wears.
fn names(text: &str, word: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .any(|token| token == word)
}

/// `(key, op, run_id, attempts)` of each owed row, sorted by key, after
/// checking each error message names the key column and the key.
fn owed(project: &Project) -> Vec<(String, String, i64, i64)> {
    let mut rows: Vec<(String, String, i64, i64)> = project
        .errors()
        .iter()
        .map(|row| {
            let key = row["key"].as_str().expect("key").to_owned();
            let error = row["error"].as_str().expect("error");
            assert!(
                names(error, "id") && (key.starts_with('(') || names(error, &key)),
                "the error for {key} must name the key column `id` and the key: {row}"
            );
            let number = |name: &str| {
                row[name]
                    .as_i64()
                    .unwrap_or_else(|| panic!("{name}: {row}"))
            };
            (
                key,
                row["op"].as_str().expect("op").to_owned(),
                number("run_id"),
                number("attempts"),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn expected_owed(run_id: i64, attempts: i64) -> Vec<(String, String, i64, i64)> {
    ["(row 3 without a key)", "(row 8 without a key)", "5"]
        .into_iter()
        .map(|key| (key.to_owned(), "added".to_owned(), run_id, attempts))
        .collect()
}

#[test]
fn null_and_duplicate_keys_are_row_errors_until_fixed() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.exec(CREATE_ACCOUNTS);
    for (row, id) in (1..).zip(BROKEN_IDS) {
        insert_account(&wh, row, id);
    }
    project.write_config(&Config::new(&wh).query(QUERY).render());

    let first = project.run();
    first.assert_status("partial");
    assert_counts(&first, &[("extracted", 8), ("sent", 4), ("ok", 4)]);
    assert_events(&project.take_delivered(), &all_added([1, 2, 4, 7]));
    assert_eq!(owed(&project), expected_owed(first.run_id(), 1));

    // Still broken: the same rows fail again, a new good row still goes.
    insert_account(&wh, 9, Some(9));
    let second = project.run();
    second.assert_status("partial");
    assert_counts(&second, &[("extracted", 9), ("sent", 1), ("ok", 1)]);
    assert_events(&project.take_delivered(), &all_added([9]));
    assert_eq!(owed(&project), expected_owed(second.run_id(), 2));

    wh.exec("UPDATE accounts SET id = rowid WHERE id IS NULL OR rowid = 6");
    let fixed = project.run_ok();
    assert_counts(
        &fixed,
        &[("added", 4), ("sent", 4), ("ok", 4), ("failed", 0)],
    );
    assert_events(&project.take_delivered(), &all_added([3, 5, 6, 8]));
    assert_eq!(project.errors(), Vec::<Value>::new());

    project.run_ok();
    assert_events(&project.take_delivered(), &[]);
}

/// A delivered key comes back twice, its first row unchanged: the key is a
/// duplicate all the same, the row error's payload is that first row, and
/// nothing is sent, updated or deleted for the key. Once the repeat is
/// gone, the key is unchanged and nothing is sent.
#[test]
fn a_delivered_key_returned_twice_is_a_duplicate_of_its_first_row() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.exec(CREATE_ACCOUNTS);
    for row in 1..=3 {
        insert_account(&wh, row, Some(row));
    }
    project.write_config(&Config::new(&wh).query(QUERY).render());
    project.run_ok();
    assert_events(&project.take_delivered(), &all_added([1, 2, 3]));

    // Row 4 repeats key 2, after it, with another email.
    insert_account(&wh, 4, Some(2));
    let repeated = project.run();
    repeated.assert_status("failed");
    assert_counts(
        &repeated,
        &[
            ("extracted", 4),
            ("sent", 0),
            ("updated", 0),
            ("deleted", 0),
        ],
    );
    assert_events(&project.take_delivered(), &[]);
    let errors = project.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["key"], "2");
    assert!(names(errors[0]["error"].as_str().unwrap(), "2"));
    assert_eq!(errors[0]["payload"], user(2));

    wh.exec("DELETE FROM accounts WHERE rowid = 4");
    project.run_ok();
    assert_events(&project.take_delivered(), &[]);
    assert_eq!(project.errors(), Vec::<Value>::new());
}
