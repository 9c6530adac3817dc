//! A run stopped by SIGTERM sends no new batch, lets the batches in flight
//! be answered and commits them (for up to 5 s), and closes itself as
//! failed, so the next run neither waits nor loses anything nor sends twice
//! what was answered; while a run is in progress, another run
//! of the same sync is skipped and recorded as skipped, even when both start
//! at the same instant (the state store's unique index decides); a run
//! whose process died without a trace holds the sync only until its
//! heartbeat is stale. The scenarios take the project so `state_postgres`
//! runs them again with the state in Postgres.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::changes::all_added;
use crate::support::background::Background;
use crate::support::config::Config;
use crate::support::events::assert_events;
use crate::support::project::{Project, Run};
use crate::support::server::{Reply, Server};
use crate::support::state::{STALE_RUNS, sqlite_exec};
use crate::support::warehouse::Warehouse;

/// A project whose endpoint hangs, with a call limit far beyond the test.
fn hanging_project() -> (Project, Warehouse, Server) {
    let project = Project::new();
    let (wh, server) = slow_endpoint(&project, Reply::Hang);
    (project, wh, server)
}

/// Users 1–4 to an endpoint that answers its first request with `first`,
/// behind a call limit far beyond the test.
fn slow_endpoint(project: &Project, first: Reply) -> (Warehouse, Server) {
    let wh = Warehouse::sqlite(project);
    wh.insert_users(1..=4);
    let server = Server::start();
    server.script(None, first, 1);
    let destination = format!(
        r#"[destinations.out]
plugin = "ebb:http"
allow_hosts = ["{host}"]
timeout_secs = 120
config = {{ url = "{url}" }}
"#,
        host = server.host(),
        url = server.url()
    );
    project.write_config(&Config::new(&wh).destination(&destination).render());
    (wh, server)
}

/// Starts `ebb run` in the background and waits until its batch is at the
/// endpoint.
fn start_run(project: &Project, server: &Server) -> Child {
    let mut run = Background::start(project);
    run.wait_until("the run reached the endpoint", || {
        !server.requests().is_empty()
    });
    run.into_child()
}

fn terminate(child: Child) -> (Option<i32>, Duration, String) {
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
    let out = child.wait_with_output().expect("wait for ebb");
    (
        out.status.code(),
        signalled.elapsed(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn sigterm_closes_the_run_and_the_next_run_delivers_everything() {
    let (project, _wh, server) = hanging_project();
    let child = start_run(&project, &server);
    let (code, took, stdout) = terminate(child);
    assert_eq!(code, Some(1), "an interrupted run exits 1: {stdout}");
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM took {took:?} to stop the run"
    );

    let history = project.history();
    assert_eq!(history[0]["status"], "failed", "{history:#?}");
    let error = history[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("interrupted by SIGTERM"), "{error}");
    assert_events(&server.accepted(), &[]);

    // The hung batch was never acknowledged, so it is sent again, at once.
    let next = project.run_ok();
    assert_eq!(next.count("sent"), 4);
    assert_events(&server.accepted(), &all_added(1..=4));
}

#[test]
fn sigterm_lets_the_batch_in_flight_be_answered_and_commits_it() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=4);
    let server = Server::start();
    // Two batches of two, one at a time; the first is answered late.
    server.script(None, Reply::Delay(Duration::from_secs(2)), 1);
    project.write_config(
        &Config::new(&wh)
            .http_within(&server, &server.host(), 2, 120)
            .destination_setting("batch_size = 2")
            .render(),
    );
    let child = start_run(&project, &server);
    let (code, took, stdout) = terminate(child);
    assert_eq!(code, Some(1), "an interrupted run exits 1: {stdout}");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    assert_eq!(
        server.requests().len(),
        1,
        "no batch goes out after SIGTERM"
    );
    let answered = server.accepted();
    assert_eq!(answered.len(), 2, "the batch in flight was answered");

    let history = project.history();
    let error = history[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("interrupted by SIGTERM"), "{error}");
    // Committed: the next run sends only the batch that never went out.
    let next = project.run_ok();
    assert_eq!(next.count("sent"), 2, "{}", next.report);
    assert_events(&server.accepted(), &all_added(1..=4));
}

#[test]
fn a_second_run_while_one_is_in_progress_is_skipped() {
    let (project, _wh, server) = hanging_project();
    let child = start_run(&project, &server);

    let second = project.run();
    second.assert_status("skipped");
    assert_eq!(
        server.requests().len(),
        1,
        "the skipped run must send nothing"
    );

    let (code, _, _) = terminate(child);
    assert_eq!(code, Some(1));
    let history = project.history();
    let statuses: Vec<&str> = history
        .iter()
        .filter_map(|r| r["status"].as_str())
        .collect();
    assert_eq!(statuses, ["skipped", "failed"]);
}

/// Both start at once; the database admits one, the other is skipped and
/// names it. The first answer is late, so the first run is still running.
pub fn two_runs_started_together_one_is_skipped(project: &Project) {
    let (_wh, server) = slow_endpoint(project, Reply::Delay(Duration::from_secs(5)));
    let runs = project.runs_together(2);
    let (ran, skipped): (Vec<&Run>, Vec<&Run>) =
        runs.iter().partition(|run| run.status() != "skipped");
    assert_eq!(
        (ran.len(), skipped.len()),
        (1, 1),
        "exactly one run may go ahead: {:#?}",
        runs.iter().map(|r| &r.report).collect::<Vec<_>>()
    );
    let (ran, skipped) = (ran[0], skipped[0]);
    ran.assert_status("success");
    skipped.assert_status("skipped");
    let message = skipped.report["error"].as_str().unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "skipped: run {} of this sync is still in progress",
            ran.run_id()
        )
    );
    assert_eq!(server.requests().len(), 1, "the skipped run sends nothing");
    assert_events(&server.accepted(), &all_added(1..=4));

    let history = project.history();
    let recorded = history
        .iter()
        .find(|r| r["run_id"].as_i64() == Some(skipped.run_id()))
        .unwrap_or_else(|| panic!("skipped run not in history: {history:#?}"));
    assert_eq!(recorded["status"], "skipped");
    assert_eq!(
        recorded["error"],
        format!("run {} of this sync was still in progress", ran.run_id())
    );
}

/// A run killed outright stays `running` in the store; until its heartbeat
/// is older than the stale limit it holds the sync, then the next claim
/// closes it as abandoned and goes ahead. `backdate` runs SQL on the store.
pub fn a_dead_run_is_taken_over_once_its_heartbeat_is_stale(
    project: &Project,
    backdate: &dyn Fn(&str),
) {
    let (_wh, server) = slow_endpoint(project, Reply::Hang);
    let mut child = start_run(project, &server);
    child.kill().expect("kill ebb");
    child.wait().expect("wait for ebb");
    let dead = project.history()[0].clone();
    assert_eq!(dead["status"], "running", "{dead}");

    project.run().assert_status("skipped");

    backdate(STALE_RUNS);
    let next = project.run_ok();
    assert_eq!(next.count("sent"), 4);
    assert_events(&server.accepted(), &all_added(1..=4));

    let history = project.history();
    let statuses: Vec<&str> = history
        .iter()
        .filter_map(|r| r["status"].as_str())
        .collect();
    assert_eq!(statuses, ["success", "skipped", "failed"], "{history:#?}");
    assert_eq!(history[2]["run_id"], dead["run_id"]);
    let error = history[2]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("abandoned: no heartbeat since "),
        "{error}"
    );
    assert!(history[2]["finished_at"].is_string(), "{}", history[2]);
}

/// A run that is alive but whose heartbeats were late (as on a machine that
/// was suspended) is closed by the next claim; it notices at its next
/// heartbeat and stops instead of overlapping the run that took over.
pub fn a_late_run_that_was_taken_over_stops(project: &Project, backdate: &dyn Fn(&str)) {
    let (_wh, server) = slow_endpoint(project, Reply::Hang);
    let late = start_run(project, &server);
    let late_id = project.history()[0]["run_id"].clone();

    // The late run keeps beating every few seconds and may refresh its
    // heartbeat between the two steps; then the claim is skipped: retry.
    let taken_over = (0..5).find_map(|_| {
        backdate(STALE_RUNS);
        let run = project.run();
        (run.status() != "skipped").then_some(run)
    });
    let taken_over = taken_over.expect("the stale run was never taken over");
    taken_over.assert_status("success");
    assert_eq!(taken_over.count("sent"), 4);

    let out = wait_within(late, Duration::from_secs(30));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the late run prints its report");
    assert_eq!(out.status.code(), Some(1), "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("another process closed it as abandoned"),
        "{report}"
    );

    let history = project.history();
    let closed = history
        .iter()
        .find(|r| r["run_id"] == late_id)
        .expect("the late run is in history");
    assert_eq!(closed["status"], "failed", "{closed}");
    let recorded = closed["error"].as_str().unwrap_or_default();
    assert!(
        recorded.starts_with("abandoned: no heartbeat since "),
        "the claim's record stands: {closed}"
    );
    assert_eq!(history[0]["status"], "success", "{history:#?}");
}

/// Waits for `child`, killing it and failing the test after `limit`.
fn wait_within(mut child: Child, limit: Duration) -> std::process::Output {
    let started = Instant::now();
    while child.try_wait().expect("wait for ebb").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("ebb run did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect ebb output")
}

#[test]
fn sqlite_two_runs_started_together_one_is_skipped() {
    two_runs_started_together_one_is_skipped(&Project::new());
}

#[test]
fn sqlite_a_dead_run_is_taken_over_once_its_heartbeat_is_stale() {
    let project = Project::new();
    let file = project.state_db();
    a_dead_run_is_taken_over_once_its_heartbeat_is_stale(&project, &|sql| sqlite_exec(&file, sql));
}

#[test]
fn sqlite_a_late_run_that_was_taken_over_stops() {
    let project = Project::new();
    let file = project.state_db();
    a_late_run_that_was_taken_over_stops(&project, &|sql| sqlite_exec(&file, sql));
}
