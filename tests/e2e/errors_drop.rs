//! `ebb errors SYNC --drop KEY` and `--drop-all` stop owing rows: they leave
//! the list and count as delivered, so the next run does not send them again
//! unless they change in the warehouse. The snapshot takes the record the
//! failed attempt came from, not the mapped payload the destination saw, so
//! a sync with a mapping is what tells the two apart. Keys that are not
//! owed fail the command and drop nothing.

use serde_json::{Value, json};

use crate::support::config::Config;
use crate::support::events::{assert_events, event, without_delivery_id};
use crate::support::project::{Project, SYNC};
use crate::support::server::Server;
use crate::support::warehouse::{Warehouse, user};

/// The destination receives the email under another name.
const MAPPING: &str = r#"mapping = { "id" = "id", "contact" = "email" }"#;

fn mapped(fields: &Value) -> Value {
    json!({ "id": fields["id"], "contact": fields["email"] })
}

fn mapped_added(id: i64) -> Value {
    event("added", &id.to_string(), mapped(&user(id)), Value::Null)
}

fn owed_keys(project: &Project) -> Vec<String> {
    project
        .errors()
        .iter()
        .map(|row| row["key"].as_str().expect("string key").to_owned())
        .collect()
}

/// Users 1–4 of `wh` through a mapping to `server`, which refuses 2 and 3.
fn two_rows_owed(project: &Project, wh: Warehouse) -> (Warehouse, Server) {
    wh.insert_users(1..=4);
    let server = Server::start();
    server.reject("2", "bad email");
    server.reject("3", "bad email");
    project.write_config(
        &Config::new(&wh)
            .http(&server, &server.host(), 10)
            .sync(MAPPING)
            .render(),
    );
    project.run().assert_status("partial");
    assert_eq!(owed_keys(project), ["2", "3"]);
    (wh, server)
}

pub fn dropped_rows_are_not_sent_again_until_they_change(project: &Project, wh: Warehouse) {
    let (wh, server) = two_rows_owed(project, wh);

    let unknown = project.ebb(&["errors", SYNC, "--drop", "2", "--drop", "9"]);
    assert_eq!(unknown.code, Some(1), "{}", unknown.text());
    let text = unknown.text();
    assert!(
        text.contains("owes no row with key `9`") && text.contains("nothing was dropped"),
        "{text}"
    );
    assert!(
        !text.contains("`2`"),
        "only the unknown key is named: {text}"
    );
    assert_eq!(
        owed_keys(project),
        ["2", "3"],
        "a failed drop drops nothing"
    );

    let dropped = project.ebb_json(&["errors", SYNC, "--drop", "2", "--drop", "2"]);
    let dropped = dropped.as_array().expect("dropped rows");
    assert_eq!(dropped.len(), 1, "{dropped:#?}");
    assert_eq!(dropped[0]["key"], "2");
    assert_eq!(dropped[0]["error"], "refused by the endpoint: bad email");
    assert_eq!(
        without_delivery_id(dropped[0]["payload"].clone()),
        mapped_added(2)
    );
    assert_eq!(owed_keys(project), ["3"]);

    // Row 3 is still owed and goes out; the dropped row 2 does not.
    server.accept_all();
    let before = server.accepted().len();
    let next = project.run_ok();
    assert_eq!(next.count("sent"), 1, "{}", next.report);
    assert_events(&server.accepted()[before..], &[mapped_added(3)]);

    let idle = project.run_ok();
    assert_eq!(idle.count("sent"), 0, "{}", idle.report);

    // Once it changes it is sent as an update of what was dropped.
    wh.exec("UPDATE users SET email = 'new2@example.com' WHERE id = 2");
    let before = server.accepted().len();
    project.run_ok();
    let mut changed = user(2);
    changed["email"] = json!("new2@example.com");
    assert_events(
        &server.accepted()[before..],
        &[event("updated", "2", mapped(&changed), mapped(&user(2)))],
    );
}

pub fn drop_all_forgets_every_owed_row_and_dropped_deletions(project: &Project, wh: Warehouse) {
    let (wh, server) = two_rows_owed(project, wh);
    server.accept_all();
    server.reject("4", "cannot delete");
    wh.exec("DELETE FROM users WHERE id = 4");
    project.run().assert_status("partial");
    assert_eq!(
        owed_keys(project),
        ["4"],
        "2 and 3 went out, deleting 4 did not"
    );

    let out = project.ebb_ok(&["errors", SYNC, "--drop-all"]);
    assert!(
        out.contains("dropped 1 owed row(s) of sync `users_out`"),
        "{out}"
    );
    assert_eq!(owed_keys(project), Vec::<String>::new());

    server.accept_all();
    let before = server.accepted().len();
    let idle = project.run_ok();
    assert_eq!(idle.count("sent"), 0, "{}", idle.report);

    // The dropped deletion forgot the key: back in the warehouse, it is new.
    wh.insert_users([4]);
    project.run_ok();
    assert_events(&server.accepted()[before..], &[mapped_added(4)]);

    let nothing = project.ebb_ok(&["errors", SYNC, "--drop-all"]);
    assert!(nothing.contains("dropped 0 owed row(s)"), "{nothing}");
}

#[test]
fn sqlite_dropped_rows_are_not_sent_again_until_they_change() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    dropped_rows_are_not_sent_again_until_they_change(&project, wh);
}

#[test]
fn sqlite_drop_all_forgets_every_owed_row_and_dropped_deletions() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    drop_all_forgets_every_owed_row_and_dropped_deletions(&project, wh);
}

#[test]
fn dropping_before_any_run_names_the_keys_and_drops_nothing() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    project.write_config(&Config::new(&wh).render());
    let out = project.ebb(&["errors", SYNC, "--drop", "1"]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(
        out.text().contains("owes no row with key `1`"),
        "{}",
        out.text()
    );
    let all = project.ebb_ok(&["errors", SYNC, "--drop-all"]);
    assert!(all.contains("dropped 0 owed row(s)"), "{all}");
    assert!(
        !project.state_db().exists(),
        "dropping must not create the state store"
    );
}
