//! Delivery through the `ebb:http` plugin to a local endpoint that refuses
//! some records and is briefly or persistently unavailable for others:
//! refused and failed rows are owed, not committed, listed by `ebb errors`,
//! and delivered exactly once by the next run.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::changes::{all_added, assert_counts};
use crate::support::background::Background;
use crate::support::config::Config;
use crate::support::events::{added, assert_events, ids};
use crate::support::project::{Project, SYNC};
use crate::support::server::{Received, Reply, Server, event_id};
use crate::support::warehouse::{Warehouse, user};

pub fn owed_rows_are_delivered_once_next_run(project: &Project, wh: &Warehouse) {
    wh.insert_users(1..=10);
    let server = Server::start();
    server.reject("3", "bad email");
    server.reject("7", "bad email");
    // Scripts apply in this order to the first matching request.
    server.script(
        Some("1"),
        Reply::Status {
            code: 429,
            retry_after: Some(1),
        },
        1,
    );
    server.script(
        Some("5"),
        Reply::Status {
            code: 503,
            retry_after: Some(0),
        },
        1,
    );
    server.script(
        Some("9"),
        Reply::Status {
            code: 503,
            retry_after: None,
        },
        1000,
    );
    project.write_config(
        &Config::new(wh)
            .http(&server, &server.host(), 2)
            .sync("retry = { max_attempts = 3, initial_backoff_ms = 10, max_backoff_ms = 100 }")
            .render(),
    );

    let first = project.run();
    first.assert_status("partial");
    let log = server.requests();
    assert!(
        log.len() >= 5,
        "batch_size = 2 must split 10 events: {log:#?}"
    );
    for request in &log {
        assert!(
            request.events.len() <= 2,
            "batch over batch_size: {request:#?}"
        );
    }
    let delivered = server.accepted();
    let delivered_ids: BTreeSet<i64> = ids(&delivered).into_iter().collect();
    assert_events(&delivered, &all_added(delivered_ids.iter().copied()));
    let owed: Vec<i64> = (1..=10).filter(|id| !delivered_ids.contains(id)).collect();
    for id in [3, 7, 9] {
        assert!(
            owed.contains(&id),
            "user {id} must not be delivered; owed {owed:?}"
        );
    }
    let beside_nine = ids_sharing_a_request(&log, "9");
    for id in [1, 5] {
        if !beside_nine.contains(&id) {
            assert!(
                delivered_ids.contains(&id),
                "user {id} got a retryable answer and must be retried within the run; log {log:#?}"
            );
        }
    }
    assert_retry_after_honoured(&log, "1", Duration::from_millis(900));
    assert_counts(&first, &[("extracted", 10), ("added", 10)]);
    assert_counts(&first, &[("ok", delivered.len() as u64)]);
    assert_eq!(
        first.count("rejected") + first.count("failed"),
        owed.len() as u64,
        "rejected + failed must be the rows owed ({owed:?}): {}",
        first.report
    );
    assert!(
        first.count("retried") >= 1,
        "retries not counted: {}",
        first.report
    );

    let refused: BTreeSet<String> = log.iter().flat_map(|r| r.rejected.clone()).collect();
    let errors = project.errors();
    let mut error_keys: Vec<i64> = errors.iter().map(error_key).collect();
    error_keys.sort_unstable();
    assert_eq!(
        error_keys, owed,
        "`ebb errors` must list exactly the owed rows: {errors:#?}"
    );
    for error in &errors {
        let key = error["key"].as_str().expect("string key");
        let id: i64 = key.parse().expect("numeric key");
        assert_eq!(error["op"], "added", "{error}");
        assert_eq!(error["run_id"].as_i64(), Some(first.run_id()), "{error}");
        assert!(
            error["attempts"].as_u64().is_some_and(|n| n >= 1),
            "{error}"
        );
        assert_eq!(error["payload"], added(user(id)), "payload of {error}");
        let message = error["error"].as_str().expect("error text").to_lowercase();
        if refused.contains(key) {
            assert!(message.contains("bad email"), "{error}");
        } else {
            assert!(
                message.contains("503") || message.contains("unavailable"),
                "{error}"
            );
        }
    }
    assert_errors_csv(project, &owed);

    server.accept_all();
    let before_second = server.requests().len();
    let second = project.run_ok();
    let delivered_second: Vec<Value> = server.requests()[before_second..]
        .iter()
        .flat_map(|r| r.accepted().cloned().collect::<Vec<_>>())
        .collect();
    assert_events(&delivered_second, &all_added(owed.iter().copied()));
    let owed_count = owed.len() as u64;
    assert_counts(
        &second,
        &[("sent", owed_count), ("ok", owed_count), ("rejected", 0)],
    );
    assert_eq!(
        project.errors(),
        Vec::<Value>::new(),
        "delivered rows are no longer owed"
    );

    let before_third = server.requests().len();
    let third = project.run_ok();
    assert_counts(&third, &[("sent", 0)]);
    let late: Vec<Received> = server.requests()[before_third..]
        .iter()
        .filter(|r| !r.events.is_empty())
        .cloned()
        .collect();
    assert!(late.is_empty(), "nothing was owed, yet: {late:#?}");

    // Over all runs every user arrived exactly once.
    assert_events(&server.accepted(), &all_added(1..=10));
}

fn error_key(error: &Value) -> i64 {
    error["key"]
        .as_str()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("error without a numeric string key: {error}"))
}

fn ids_sharing_a_request(log: &[Received], id: &str) -> BTreeSet<i64> {
    log.iter()
        .filter(|r| r.carries(id))
        .flat_map(|r| {
            r.events
                .iter()
                .map(|e| event_id(e).parse().expect("numeric id"))
        })
        .collect()
}

/// After the (first) 429 for a request carrying `id`, the next request
/// carrying it came no sooner than `at_least`.
fn assert_retry_after_honoured(log: &[Received], id: &str, at_least: Duration) {
    let Some(limited) = log.iter().position(|r| r.status == 429) else {
        panic!("the scripted 429 was never sent: {log:#?}");
    };
    if let Some(retry) = log[limited + 1..].iter().find(|r| r.carries(id)) {
        let waited = retry.at - log[limited].at;
        assert!(
            waited >= at_least,
            "Retry-After: 1 not honoured, retried after {waited:?}"
        );
    }
}

fn assert_errors_csv(project: &Project, owed: &[i64]) {
    let csv_text = project.ebb_ok(&["errors", SYNC, "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().expect("csv header").clone();
    let key_at = headers
        .iter()
        .position(|h| h == "key")
        .unwrap_or_else(|| panic!("csv without a key column: {csv_text}"));
    let mut keys: Vec<i64> = reader
        .records()
        .map(|r| r.expect("csv record")[key_at].parse().expect("numeric key"))
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, owed, "csv errors:\n{csv_text}");
    assert!(csv_text.contains("bad email"), "csv errors:\n{csv_text}");
}

#[test]
fn hanging_endpoint_fails_the_batch_in_bounded_time() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=4);
    let server = Server::start();
    server.script(None, Reply::Hang, 1000);
    project.write_config(
        &Config::new(&wh)
            .http(&server, &server.host(), 10)
            .sync("retry = { max_attempts = 2, initial_backoff_ms = 10, max_backoff_ms = 100 }")
            .render(),
    );

    let run = project.run();
    assert!(
        matches!(
            (run.code(), run.status()),
            (Some(2), "partial") | (Some(1), "failed")
        ),
        "a hanging endpoint must fail the run: {run:#?}"
    );
    assert!(
        run.output.elapsed < Duration::from_secs(60),
        "3 s call limit × 2 attempts, yet the run took {:?}",
        run.output.elapsed
    );
    assert!(
        !server.requests().is_empty(),
        "the endpoint was never called"
    );
    assert_events(&server.accepted(), &[]);

    server.accept_all();
    project.run_ok();
    assert_events(&server.accepted(), &all_added(1..=4));
    assert_eq!(project.errors(), Vec::<Value>::new());
}

#[test]
fn sqlite_owed_rows_are_delivered_once_next_run() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    owed_rows_are_delivered_once_next_run(&project, &wh);
}

#[test]
fn a_long_retry_after_leaves_rows_owed_instead_of_stalling_the_run() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=4);
    let server = Server::start();
    server.script(
        None,
        Reply::Status {
            code: 429,
            retry_after: Some(3600),
        },
        1,
    );
    project.write_config(&Config::new(&wh).http(&server, &server.host(), 10).render());

    let run = project.run();
    run.assert_status("failed");
    assert!(
        run.output.elapsed < Duration::from_secs(30),
        "a Retry-After of an hour must not hold the run: {:?}",
        run.output.elapsed
    );
    assert_eq!(server.requests().len(), 1, "no retry within the run");
    let errors = project.errors();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    let message = errors[0]["error"].as_str().unwrap_or_default();
    assert!(message.contains("asked to wait 3600 s"), "{message}");

    project.run_ok();
    assert_events(&server.accepted(), &all_added(1..=4));
}

/// Refused credentials are not retried batch after batch: the run stops at
/// the first batch with one error, that batch's rows are owed with what
/// the destination said, and the rest goes out with the next run.
#[test]
fn refused_credentials_stop_the_run_at_its_first_batch_with_one_error() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=10);
    let server = Server::start();
    server.script(
        None,
        Reply::Status {
            code: 401,
            retry_after: None,
        },
        1000,
    );
    // Batches of two, one in flight.
    project.write_config(
        &Config::new(&wh)
            .http(&server, &server.host(), 2)
            .destination_setting("batch_size = 2")
            .render(),
    );

    let run = project.run();
    run.assert_status("failed");
    let error = run.report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("credentials refused: HTTP 401 (auth)")
            && error.contains("no retry can fix this"),
        "one error saying why the run stopped: {error}"
    );
    assert_eq!(run.count("retried"), 0, "{}", run.report);
    assert_eq!(server.requests().len(), 1, "no batch after the first");
    let owed = project.errors();
    assert_eq!(owed.len(), 2, "the first batch's rows: {owed:#?}");
    assert!(
        owed.iter()
            .all(|e| e["error"].as_str().is_some_and(|m| m.contains("HTTP 401")))
    );

    // One batch of ten that ebb:http posts in chunks of two: it stops at
    // the first chunk too, so still one request.
    project.write_config(&Config::new(&wh).http(&server, &server.host(), 2).render());
    project.run().assert_status("failed");
    assert_eq!(server.requests().len(), 2, "one more request, not five");
    assert_eq!(project.errors().len(), 10);

    server.accept_all();
    project.run_ok();
    assert_events(&server.accepted(), &all_added(1..=10));
    assert_eq!(project.errors(), Vec::<Value>::new());
}

/// The next chunk's batches are sent before the last chunk is settled, yet
/// no more than `max_in_flight` requests are ever open at once: 2,500 rows
/// in batches of 1,000 two at a time make chunks of 2,000 and 500, and the
/// third batch waits for one of the first two to be answered.
#[test]
fn batches_of_the_next_chunk_wait_for_a_slot() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2500);
    let server = Server::start();
    server.script(None, Reply::Hold, 3);
    let config = Config::new(&wh)
        .http_within(&server, &server.host(), 1000, 60)
        .render()
        .replace("max_in_flight = 1", "max_in_flight = 2");
    project.write_config(&config);

    let mut run = Background::start(&project);
    run.wait_until("two batches are out", || server.requests().len() == 2);
    // Were the slots not shared across chunks, the third batch would be
    // out within milliseconds of the second chunk being sent.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(server.requests().len(), 2, "a third request went out");
    server.release();
    run.wait_until("the third batch took the freed slot", || {
        server.requests().len() == 3
    });
    server.release();
    server.release();
    let out = run.into_child().wait_with_output().expect("wait for ebb");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    assert_eq!(summary["status"], "success", "{summary:#}");
    assert_eq!(summary["counts"]["ok"], 2500, "{summary:#}");
    assert_eq!(ids(&server.accepted()).len(), 2500);
}
