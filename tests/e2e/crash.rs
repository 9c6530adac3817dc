//! Crash safety of `ebb run`. Ebb commits each batch to its state store as
//! soon as the destination is done with it, while later batches are still
//! in flight, so a run killed with SIGKILL while it extracts, diffs, has
//! batches in flight or commits leaves the sync such that the next run
//! (once the dead run's heartbeat is stale) delivers every change at least
//! once, nothing missing, and repeats exactly the events of the batches
//! that were in flight or acknowledged but not yet committed at the kill:
//! nothing committed repeats. A third run sends nothing. A destination that
//! answers 503 for a while ends the same way, across as many runs as it
//! takes, without repeating anything. The kills are made again with
//! `diff = "warehouse"`, where the snapshot is a table in the warehouse that
//! the diff statement reads and each commit writes first.
//!
//! The kill lands at a known stage through real mechanisms, no hook in the
//! product: Postgres table locks that Ebb's own statements wait for (seen
//! in `pg_locks` before the kill) and an endpoint that holds a request or
//! never answers it. What the dead run committed is read from the state
//! store itself, both to wait until the batches before a held one have
//! landed and, after the kill, to check that exactly those did. The killed
//! run's first chunk takes several requests, sent one at a time, so
//! committing some of its batches and not others is a real check.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::Value;

use crate::changes::{all_added, with};
use crate::support::background::Background;
use crate::support::config::{Config, USERS_QUERY};
use crate::support::events::{assert_events, assert_events_repeating, deleted, sample, updated};
use crate::support::pglock::Locker;
use crate::support::project::{Project, SYNC};
use crate::support::server::{Received, Reply, Server, event_id};
use crate::support::state::{PostgresState, STALE_RUNS};
use crate::support::warehouse::{Warehouse, user};

/// Users the first run delivers.
const FIRST: RangeInclusive<i64> = 1..=1200;
/// Users who join before the killed run: with the updates and deletions,
/// 1,800 changes, i.e. two chunks (a chunk is at least 1,000 changes).
const JOINING: RangeInclusive<i64> = 1201..=2400;
/// Events per batch and request, so the first chunk takes at least five.
const BATCH: usize = 200;

/// A table the model's query reads only when it runs (through a function,
/// so describing the query, which Ebb does before claiming the run, does
/// not touch it): locking it stops the run in the middle of extracting.
const GATE: &str = r#"
CREATE TABLE gate (open BOOLEAN);
CREATE FUNCTION through_gate() RETURNS BOOLEAN LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM gate;
    RETURN TRUE;
END
$$;
"#;

const GATED_QUERY: &str = "SELECT id, email, plan FROM users WHERE through_gate() ORDER BY id";

/// Every fourth user moves to the team plan, the ones after them leave,
/// and `joining` join.
fn change(wh: &Warehouse, joining: RangeInclusive<i64>) {
    wh.exec("UPDATE users SET plan = 'team' WHERE id % 4 = 0");
    wh.exec("DELETE FROM users WHERE id % 4 = 1");
    wh.insert_users(joining);
}

/// The events [`change`] causes after users `first` were delivered.
fn change_events(first: RangeInclusive<i64>, joining: RangeInclusive<i64>) -> Vec<Value> {
    let mut events: Vec<Value> = first
        .filter_map(|id| match id % 4 {
            0 => Some(updated(with(user(id), "plan", "team"), user(id))),
            1 => Some(deleted(user(id))),
            _ => None,
        })
        .collect();
    events.extend(all_added(joining));
    events
}

/// The ids of the events these requests delivered.
fn accepted_ids(requests: &[Received]) -> BTreeSet<String> {
    requests
        .iter()
        .flat_map(|r| r.accepted().map(event_id).collect::<Vec<_>>())
        .collect()
}

/// The ids of the events these requests carried, whatever the answer.
fn carried_ids(requests: &[Received]) -> BTreeSet<String> {
    requests
        .iter()
        .flat_map(|r| r.events.iter().map(event_id).collect::<Vec<_>>())
        .collect()
}

/// Whether the snapshot shows `event` committed: the record it delivered
/// stored under its key (added, updated), or the key gone (deleted).
fn reflects(snapshot: &BTreeMap<String, Value>, event: &Value) -> bool {
    let stored = snapshot.get(&event_id(event));
    match event["op"].as_str() {
        Some("deleted") => stored.is_none(),
        _ => stored == Some(&event["fields"]),
    }
}

#[derive(Clone, Copy)]
enum Source {
    Sqlite,
    /// Postgres, its query passing through [`GATE`].
    GatedPostgres,
    /// Postgres, its query passing through [`GATE`], with
    /// `diff = "warehouse"`: the snapshot is a table in the warehouse.
    GatedPostgresDiffing,
}

/// A sync whose state is in Postgres and whose first run delivered
/// [`FIRST`], with [`change`] applied since. Fields drop in order: the
/// test's lock goes first, the schemas last.
struct Crash {
    locker: Locker,
    server: Server,
    wh: Warehouse,
    project: Project,
    state: PostgresState,
    /// Requests the endpoint saw before the run that is killed.
    before: usize,
    /// The table holding what was delivered: the state store's snapshot,
    /// or the warehouse's with `diff = "warehouse"`.
    snapshot: String,
    /// Whether that is the warehouse's.
    in_warehouse: bool,
}

impl Crash {
    /// `None` (after saying so) without a Postgres outside CI.
    fn new(source: Source) -> Option<Crash> {
        let state = PostgresState::new()?;
        let project = Project::with_state(&state.url());
        let (wh, query) = match source {
            Source::Sqlite => (Warehouse::sqlite(&project), USERS_QUERY),
            Source::GatedPostgres | Source::GatedPostgresDiffing => {
                let mut wh = Warehouse::postgres()?;
                wh.exec_script(GATE);
                if let Source::GatedPostgresDiffing = source {
                    wh = wh.diffing_in_warehouse();
                }
                (wh, GATED_QUERY)
            }
        };
        let (snapshot, in_warehouse) = match (source, wh.schema()) {
            (Source::GatedPostgresDiffing, Some(schema)) => (format!("{schema}.snapshots"), true),
            _ => (format!("{}.snapshot", state.schema()), false),
        };
        wh.insert_users(FIRST);
        let server = Server::start();
        // Batches of one request each (the plugin would split a larger one
        // into several), one in flight at a time, so the n-th request is
        // the n-th batch. A held request must end (released or killed)
        // within the HTTP first-byte timeout of 30 s, or Ebb retries it.
        project.write_config(
            &Config::new(&wh)
                .query(query)
                .http_within(&server, &server.host(), BATCH, 120)
                .destination_setting(&format!("batch_size = {BATCH}"))
                .render(),
        );
        let first = project.run_ok();
        assert_events(&server.accepted(), &all_added(FIRST));
        assert!(
            server.requests().len() > 2,
            "the first run must take several requests: {}",
            first.report
        );
        change(&wh, JOINING);
        Some(Crash {
            locker: Locker::connect(),
            before: server.requests().len(),
            server,
            wh,
            project,
            state,
            snapshot,
            in_warehouse,
        })
    }

    /// The snapshot table, which the diff reads and commits write.
    fn snapshot_table(&self) -> String {
        self.snapshot.clone()
    }

    /// The ids of the events these requests delivered that the state store
    /// shows committed.
    fn committed(&self, requests: &[Received]) -> BTreeSet<String> {
        let snapshot = match self.in_warehouse {
            true => self.state.snapshot_in(&self.snapshot, SYNC),
            false => self.state.snapshot(SYNC),
        };
        requests
            .iter()
            .flat_map(Received::accepted)
            .filter(|event| reflects(&snapshot, event))
            .map(event_id)
            .collect()
    }

    /// Waits until the killed run's request number `n` (from 0), which the
    /// endpoint holds or never answers, has arrived and the batches of the
    /// requests before it are committed, as they must be while it is in
    /// flight; returns its position in the endpoint's log.
    fn until_committed_before(&self, run: &mut Background, n: usize) -> usize {
        let held = self.before + n;
        run.wait_until("the batches before the held one are committed", || {
            let log = self.server.requests();
            log.len() > held && {
                let settled = &log[self.before..held];
                self.committed(settled) == accepted_ids(settled)
            }
        });
        held
    }

    /// SIGKILL, after checking the run got far enough to be recorded as
    /// running (the kill lands in the run, not before it).
    fn kill(&self, run: Background) {
        let history = self.project.history();
        assert_eq!(history[0]["status"], "running", "{history:#?}");
        run.kill();
    }

    /// The next run takes over the dead one. The batches of requests from
    /// `unsettled_from` on were in flight or awaiting their commit at the
    /// kill: the events they delivered, and only those, must be the ones
    /// the state store does not show committed. The next run delivers
    /// every change at least once, repeating exactly the delivered events
    /// not committed, nothing committed; then a run sends nothing.
    fn recover(&self, unsettled_from: usize) {
        let log = self.server.requests();
        let committed = self.committed(&log[self.before..]);
        let repeated: BTreeSet<String> = accepted_ids(&log[self.before..])
            .difference(&committed)
            .cloned()
            .collect();
        let unsettled = accepted_ids(&log[unsettled_from..]);
        let earlier: Vec<&String> = repeated.difference(&unsettled).collect();
        assert!(
            earlier.is_empty(),
            "only batches in flight or awaiting their commit at the kill may repeat, \
             yet {} events of earlier ones are not committed: {}",
            earlier.len(),
            sample(&earlier)
        );
        let early: Vec<&String> = unsettled.intersection(&committed).collect();
        assert!(
            early.is_empty(),
            "{} events of batches in flight or awaiting their commit at the kill are committed: {}",
            early.len(),
            sample(&early)
        );
        let want = change_events(FIRST, JOINING);

        // The dead run still holds the sync until its heartbeat is stale.
        self.project.run().assert_status("skipped");
        self.state.exec(STALE_RUNS);
        let next = self.project.run_ok();
        assert_eq!(
            next.count("sent"),
            (want.len() - committed.len()) as u64,
            "the next run sends everything the dead run did not commit ({} committed): {}",
            committed.len(),
            next.report
        );
        let history = self.project.history();
        let statuses: Vec<&str> = history
            .iter()
            .filter_map(|r| r["status"].as_str())
            .collect();
        assert_eq!(
            statuses,
            ["success", "skipped", "failed", "success"],
            "{history:#?}"
        );
        let error = history[2]["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("abandoned: no heartbeat since "),
            "{error}"
        );

        let delivered: Vec<Value> = self.server.requests()[self.before..]
            .iter()
            .flat_map(|r| r.accepted().cloned().collect::<Vec<_>>())
            .collect();
        assert_events_repeating(&delivered, &want, &repeated);

        let seen = self.server.requests().len();
        let last = self.project.run_ok();
        assert_eq!(last.count("sent"), 0, "{}", last.report);
        assert_eq!(self.server.requests().len(), seen, "nothing left to send");
    }
}

#[test]
fn sigkill_while_extracting_loses_nothing() {
    killed_while_extracting(Source::GatedPostgres);
}

#[test]
fn sigkill_while_the_warehouse_diffs_loses_nothing() {
    killed_while_extracting(Source::GatedPostgresDiffing);
}

/// With `diff = "warehouse"`, extracting is the warehouse's diff statement.
fn killed_while_extracting(source: Source) {
    let Some(mut crash) = Crash::new(source) else {
        return;
    };
    let schema = crash.wh.schema().expect("a Postgres warehouse");
    let gate = format!("{schema}.gate");
    crash.locker.hold(&gate, "ACCESS EXCLUSIVE");
    let mut run = Background::start(&crash.project);
    run.wait_until("the model's query waits for the gate", || {
        crash.locker.waited_for(&gate, "AccessShareLock")
    });
    crash.kill(run);
    crash.locker.release();

    let seen = crash.server.requests().len();
    assert_eq!(seen, crash.before, "nothing is sent while extracting");
    crash.recover(seen);
}

#[test]
fn sigkill_while_diffing_loses_nothing() {
    killed_while_reading_the_snapshot(Source::Sqlite);
}

#[test]
fn sigkill_while_the_warehouse_reads_its_snapshot_loses_nothing() {
    killed_while_reading_the_snapshot(Source::GatedPostgresDiffing);
}

fn killed_while_reading_the_snapshot(source: Source) {
    let Some(mut crash) = Crash::new(source) else {
        return;
    };
    let snapshot = crash.snapshot_table();
    crash.locker.hold(&snapshot, "ACCESS EXCLUSIVE");
    let mut run = Background::start(&crash.project);
    run.wait_until("the diff waits to read the snapshot", || {
        crash.locker.waited_for(&snapshot, "AccessShareLock")
    });
    crash.kill(run);
    crash.locker.release();

    let seen = crash.server.requests().len();
    assert_eq!(seen, crash.before, "nothing is sent before the diff");
    crash.recover(seen);
}

#[test]
fn sigkill_with_a_batch_in_flight_repeats_only_that_batch() {
    killed_with_a_batch_in_flight(Source::Sqlite);
}

#[test]
fn sigkill_with_a_batch_in_flight_repeats_only_that_batch_diffing_in_the_warehouse() {
    killed_with_a_batch_in_flight(Source::GatedPostgresDiffing);
}

fn killed_with_a_batch_in_flight(source: Source) {
    let Some(crash) = Crash::new(source) else {
        return;
    };
    // The first two batches are acknowledged; the third is held, never
    // answered, while they are committed.
    crash.server.script(None, Reply::Accept, 2);
    crash.server.script(None, Reply::Hold, 1);
    let mut run = Background::start(&crash.project);
    let held = crash.until_committed_before(&mut run, 2);
    crash.kill(run);

    crash.recover(held);
}

#[test]
fn sigkill_while_committing_repeats_only_the_uncommitted_batches() {
    killed_while_committing(Source::Sqlite);
}

#[test]
fn sigkill_while_committing_to_the_warehouse_repeats_only_the_uncommitted_batches() {
    killed_while_committing(Source::GatedPostgresDiffing);
}

fn killed_while_committing(source: Source) {
    let Some(mut crash) = Crash::new(source) else {
        return;
    };
    // The first two batches are acknowledged and committed while the third
    // is held. Then commits are blocked and the third is let through: its
    // commit waits, the fourth is acknowledged meanwhile and the fifth is
    // never answered.
    crash.server.script(None, Reply::Accept, 2);
    crash.server.script(None, Reply::Hold, 1);
    crash.server.script(None, Reply::Accept, 1);
    crash.server.script(None, Reply::Hang, 1);
    let mut run = Background::start(&crash.project);
    let held = crash.until_committed_before(&mut run, 2);
    let snapshot = crash.snapshot_table();
    crash.locker.hold(&snapshot, "SHARE");
    crash.server.release();
    run.wait_until(
        "the third batch's commit waits for the snapshot and the fifth is sent",
        || {
            crash.locker.waited_for(&snapshot, "RowExclusiveLock")
                && crash.server.requests().len() > held + 2
        },
    );
    crash.kill(run);
    crash.locker.release();

    crash.recover(held);
}

#[test]
fn a_destination_unavailable_for_a_while_gets_every_change_once() {
    let first = 1..=40;
    let joining = 41..=60;
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(first.clone());
    let server = Server::start();
    project.write_config(
        &Config::new(&wh)
            .http(&server, &server.host(), 5)
            .sync("retry = { max_attempts = 2, initial_backoff_ms = 10, max_backoff_ms = 100 }")
            .render(),
    );
    project.run_ok();
    change(&wh, joining.clone());
    let want = change_events(first, joining);
    let before = server.requests().len();

    // 503 asking to retry in a second, then 503 without a hint, then well.
    let unavailable = |retry_after| Reply::Status {
        code: 503,
        retry_after,
    };
    server.script(None, unavailable(Some(1)), 3);
    server.script(None, unavailable(None), 12);

    let mut owed: BTreeSet<String> = want.iter().map(event_id).collect();
    let mut runs = Vec::new();
    while runs.last().is_none_or(|status| status != "success") {
        assert!(runs.len() < 5, "still not delivered after runs {runs:?}");
        let from = server.requests().len();
        let run = project.run();
        assert_eq!(
            carried_ids(&server.requests()[from..]),
            owed,
            "each run sends exactly what is owed: {}",
            run.report
        );
        let errors = project.errors();
        for error in &errors {
            let message = error["error"].as_str().unwrap_or_default();
            assert!(message.contains("503"), "{error}");
        }
        owed = errors
            .iter()
            .map(|e| e["key"].as_str().expect("string key").to_owned())
            .collect();
        let status = run.status().to_owned();
        run.assert_status(&status);
        assert_eq!(status == "success", owed.is_empty(), "{}", run.report);
        runs.push(status);
    }
    assert!(runs.len() > 1, "the 503s must leave rows owed: {runs:?}");

    let log = &server.requests()[before..];
    let retry = (1..log.len())
        .find(|&i| !carried_ids(&log[..i]).is_disjoint(&carried_ids(&log[i..=i])))
        .expect("the 503s were retried");
    let waited = log[retry].at - log[retry - 1].at;
    assert!(
        waited >= Duration::from_millis(900),
        "Retry-After: 1 not honoured, retried after {waited:?}"
    );
    let delivered: Vec<Value> = log
        .iter()
        .flat_map(|r| r.accepted().cloned().collect::<Vec<_>>())
        .collect();
    assert_events(&delivered, &want);

    let seen = server.requests().len();
    let last = project.run_ok();
    assert_eq!(last.count("sent"), 0, "{}", last.report);
    assert_eq!(server.requests().len(), seen, "nothing left to send");
}
