//! Every event arrives with a delivery id (the idempotency key a destination
//! can de-duplicate by): one per change, the same whenever that change is
//! sent again, and new for every other change, even one that returns a
//! record to an earlier value.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::config::Config;
use crate::support::events::is_delivery_id;
use crate::support::project::Project;
use crate::support::server::{Received, Reply, Server, event_id};
use crate::support::warehouse::Warehouse;

/// The delivery id each key was sent with in `requests`, as the destination
/// saw it; every event must carry one and a key only one.
fn sent_ids(requests: &[Received]) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for request in requests {
        for event in request.body["events"].as_array().into_iter().flatten() {
            let id = event["delivery_id"].as_str().unwrap_or_default().to_owned();
            assert!(is_delivery_id(&id), "bad delivery id in {event}");
            let key = event_id(event);
            if let Some(before) = ids.insert(key.clone(), id.clone()) {
                assert_eq!(before, id, "key {key} was sent under two ids in one run");
            }
        }
    }
    ids
}

/// Runs the sync and returns the ids it sent, by key.
fn run(project: &Project, server: &Server, status: &str) -> BTreeMap<String, String> {
    let before = server.requests().len();
    project.run().assert_status(status);
    sent_ids(&server.requests()[before..])
}

#[test]
fn a_change_keeps_its_delivery_id_until_delivered_and_no_other_change_shares_it() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=4);
    let server = Server::start();
    server.reject("3", "bad email");
    project.write_config(
        &Config::new(&wh)
            .http(&server, &server.host(), 2)
            .sync("retry = { max_attempts = 1 }")
            .render(),
    );

    // A partial run: 3 is owed, and keeps its id in the run after, although
    // that run starts a new epoch.
    let first = run(&project, &server, "partial");
    assert_eq!(first.len(), 4, "{first:?}");
    let distinct: BTreeSet<&String> = first.values().collect();
    assert_eq!(distinct.len(), 4, "ids are shared: {first:?}");
    server.accept_all();
    let second = run(&project, &server, "success");
    assert_eq!(second.keys().collect::<Vec<_>>(), ["3"]);
    assert_eq!(second["3"], first["3"], "an owed change was renamed");

    // A failed run moves nothing on: what it could not deliver goes out
    // under the same id next time.
    wh.exec("UPDATE users SET plan = 'team' WHERE id = 2");
    server.script(
        None,
        Reply::Status {
            code: 503,
            retry_after: None,
        },
        1,
    );
    let failing = run(&project, &server, "failed");
    let retried = run(&project, &server, "success");
    assert_eq!(retried["2"], failing["2"]);
    assert_ne!(retried["2"], first["2"], "a new change took an old id");

    // A → B → A → B: each change is new to the destination.
    let mut seen: BTreeSet<String> = first.values().cloned().collect();
    seen.insert(retried["2"].clone());
    for plan in ["enterprise", "free", "enterprise"] {
        wh.exec(&format!("UPDATE users SET plan = '{plan}' WHERE id = 1"));
        let ids = run(&project, &server, "success");
        assert!(
            seen.insert(ids["1"].clone()),
            "plan = {plan} reused an id: {ids:?}"
        );
    }

    // Nothing changed: nothing is sent.
    let idle = run(&project, &server, "success");
    assert!(idle.is_empty(), "{idle:?}");
}

/// A transform splits each change into two events; the destination takes
/// one of user 2's and refuses the other. The change stays owed, but only
/// the refused event goes again, under its own id, until it is taken.
#[test]
fn of_a_split_change_only_the_refused_events_are_sent_again() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    let server = Server::start();
    project.write(
        "transforms/twice.js",
        r#"export function transformEvent(event) {
  return [{ ...event, id: event.id + "-a" }, { ...event, id: event.id + "-b" }];
}
"#,
    );
    project.write_config(
        &Config::new(&wh)
            .http(&server, &server.host(), 10)
            .sync(r#"transforms = [{ js = "transforms/twice.js" }]"#)
            .render(),
    );
    server.reject("2-b", "bounced");

    let first = run(&project, &server, "partial");
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        ["1-a", "1-b", "2-a", "2-b"]
    );
    let again = run(&project, &server, "failed");
    assert_eq!(
        again,
        BTreeMap::from([("2-b".to_owned(), first["2-b"].clone())]),
        "only the refused event, under the id it was sent with"
    );
    server.accept_all();
    let last = run(&project, &server, "success");
    assert_eq!(last, again);
    assert_eq!(run(&project, &server, "success"), BTreeMap::new());
    assert_eq!(project.errors().len(), 0);
}
