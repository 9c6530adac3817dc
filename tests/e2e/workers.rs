//! Several `ebb serve` processes on one Postgres state store: they divide
//! the scheduled slots so that each runs once, and when one is killed in
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
    let a = Serving::start(&project);
    let b = Serving::start(&project);

    let started = Instant::now();
    let mut a = a;
    a.wait_until("six scheduled runs ended", |s| {
        runs(s).iter().filter(|r| r["status"] != "running").count() >= 6
    });
    let elapsed = started.elapsed();
    let all = runs(&b);
    let skipped: Vec<&Value> = all.iter().filter(|r| r["status"] == "skipped").collect();
    assert!(skipped.is_empty(), "a slot was taken twice: {skipped:?}");
    assert!(
        all.iter()
            .all(|r| r["status"] == "success" || r["status"] == "running"),
        "{all:?}"
    );
    // One run per one-second slot, whichever worker took it.
    let slots = elapsed.as_secs() + 2;
    assert!(
        all.len() as u64 <= slots,
        "{} runs in {elapsed:?}",
        all.len()
    );
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
