//! Several `ebb serve` processes on one Postgres state store: they divide
//! the scheduled slots so that each is taken once (each worker logs the
//! slots it takes), and when one is killed in
//! the middle of a run, another takes the sync over once the run's lease
//! has expired and delivers everything the dead run had not, with nothing
//! lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::config::Config;
use crate::support::project::{Project, SYNC};
use crate::support::server::{Reply, Server, event_id};
use crate::support::serving::{Serving, server_toml};
use crate::support::state::PostgresState;
use crate::support::warehouse::Warehouse;

/// A lease short enough for a takeover within a test.
const LEASE_SECS: u64 = 3;

fn runs(serving: &Serving) -> Vec<Value> {
    let reply = serving.get(&format!("/syncs/{SYNC}/runs?limit=1000"));
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json().as_array().cloned().unwrap_or_default()
}

/// A project whose state is in a fresh Postgres schema with a short lease.
fn project(state: &PostgresState) -> Project {
    Project::with_state(&state.url())
}

fn write_config(project: &Project, config: Config) {
    project.write_config(&format!(
        "[state]\nlease_secs = {LEASE_SECS}\n{}{}",
        config.render(),
        server_toml()
    ));
}

#[test]
fn two_workers_run_each_scheduled_slot_once() {
    let Some(state) = PostgresState::new() else {
        return;
    };
    let project = project(&state);
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    write_config(
        &project,
        Config::new(&wh).sync(r#"schedule = { every = "1s" }"#),
    );
    let mut a = Serving::start(&project);
    let b = Serving::start(&project);
    a.wait_until("six scheduled runs succeeded", |s| {
        runs(s).iter().filter(|r| r["status"] == "success").count() >= 6
    });
    // Each worker logs the slots it takes; no slot may be in both logs, or
    // twice in one. (Runs may still be skipped, rightly, when a run takes
    // longer than the one-second interval on a loaded machine.)
    let slots = |log: String| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("slot taken"))
            .filter_map(|l| l.split("slot=").nth(1))
            .map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    let mut taken = slots(a.log());
    taken.extend(slots(b.log()));
    let distinct: BTreeSet<&String> = taken.iter().collect();
    assert_eq!(
        distinct.len(),
        taken.len(),
        "a slot was taken twice: {taken:?}"
    );
    assert!(taken.len() >= 6, "{taken:?}");
}

#[test]
fn a_killed_workers_run_is_taken_over_with_nothing_lost() {
    let Some(state) = PostgresState::new() else {
        return;
    };
    let project = project(&state);
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=6);
    let server = Server::start();
    // The dead worker's third batch never gets an answer.
    server.script(Some("3"), Reply::Hold, 1);
    write_config(
        &project,
        Config::new(&wh)
            .http_within(&server, &server.host(), 1, 60)
            .destination_setting("batch_size = 1"),
    );
    let mut a = Serving::start(&project);
    let b = Serving::start(&project);

    let dead = a.trigger(SYNC);
    // Killed once the batch with user 3 is held and every batch answered
    // before it is committed: then only that one is in flight.
    a.wait_until("the batch with user 3 is held", |_| {
        let requests = server.requests();
        let held = requests
            .iter()
            .any(|r| r.events.iter().any(|e| event_id(e) == "3"));
        held && state.snapshot(SYNC).len() == requests.len() - 1
    });
    a.kill();
    let killed = Instant::now();

    let mut b = b;
    let mut taken_over = None;
    b.wait_until("another worker finished the sync", |s| {
        let all = runs(s);
        let done = all
            .iter()
            .find(|r| r["run_id"].as_i64() > Some(dead) && r["status"] == "success");
        if done.is_some() && taken_over.is_none() {
            taken_over = Some(killed.elapsed());
        }
        done.is_some()
    });
    let all = runs(&b);
    let old = all
        .iter()
        .find(|r| r["run_id"] == dead)
        .expect("the dead run");
    assert_eq!(old["status"], "failed");
    assert!(
        old["error"]
            .as_str()
            .is_some_and(|e| e.contains("abandoned")),
        "{old}"
    );
    let took = taken_over.unwrap_or_default();
    assert!(
        took >= Duration::from_secs(LEASE_SECS - 1),
        "taken over only after the lease expired: {took:?}"
    );

    let delivered: BTreeSet<String> = server.accepted().iter().map(event_id).collect();
    let want: BTreeSet<String> = (1..=6).map(|id| id.to_string()).collect();
    assert_eq!(delivered, want, "every change delivered");
    // The first two were acknowledged and committed before the kill; only
    // the batch in flight then (the held third) may arrive twice.
    let accepted = server.accepted();
    for id in 1..=6 {
        let n = accepted
            .iter()
            .filter(|e| event_id(e) == id.to_string())
            .count();
        let most = if id == 3 { 2 } else { 1 };
        assert!(n <= most, "event {id} was delivered {n} times");
    }
}
