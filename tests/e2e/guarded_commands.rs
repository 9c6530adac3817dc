//! `ebb reset` and `ebb replay` change what a sync delivered or send it
//! again, so one rule guards them on the command line and in the API: they
//! are refused while a run of the sync is in progress (the run would undo
//! the reset, or race the replay to the destination), they ask first on a
//! terminal (`--yes` skips the question; scripts are not asked), and each
//! is an entry of the sync's history.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::changes::all_added;
use crate::support::background::Background;
use crate::support::config::Config;
use crate::support::events::assert_events;
use crate::support::project::{Project, SYNC};
use crate::support::server::{Reply, Server};
use crate::support::warehouse::Warehouse;

/// Users 1–4 delivered by run 1 to a fresh endpoint.
fn delivered_once(project: &Project) -> (Warehouse, Server) {
    let wh = Warehouse::sqlite(project);
    wh.insert_users(1..=4);
    let server = Server::start();
    let config = Config::new(&wh).http(&server, &server.host(), 10).render();
    project.write_config(&config);
    project.run_ok();
    (wh, server)
}

fn kinds(history: &[Value]) -> Vec<(String, String, String)> {
    history
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (text("kind"), text("status"), text("detail"))
        })
        .collect()
}

#[test]
fn reset_and_replay_are_refused_while_a_run_is_in_progress() {
    let project = Project::new();
    let (wh, server) = delivered_once(&project);
    wh.insert_users(5..=6);
    server.script(None, Reply::Hold, 1);
    let mut run = Background::start(&project);
    run.wait_until("the second run reached the endpoint", || {
        server.requests().len() == 2
    });

    for args in [
        &["reset", SYNC, "--yes"][..],
        &["replay", SYNC, "--run", "1", "--yes"],
    ] {
        let refused = project.ebb(args);
        assert_eq!(refused.code, Some(1), "{args:?}: {}", refused.text());
        assert!(
            refused
                .stderr
                .contains(&format!("run 2 of sync `{SYNC}` is in progress")),
            "{args:?} names the run in progress: {}",
            refused.stderr
        );
    }
    assert_eq!(
        server.requests().len(),
        2,
        "the refused replay sent nothing"
    );

    server.release();
    let out = run.into_child().wait_with_output().expect("wait for ebb");
    assert!(out.status.success(), "{out:?}");
    // Nothing was reset: the snapshot holds all six, so nothing is sent.
    assert_eq!(project.run_ok().count("sent"), 0);
    let history = kinds(&project.history());
    assert!(
        history.iter().all(|(kind, _, _)| kind == "run"),
        "refused commands leave no entry: {history:?}"
    );
}

#[test]
fn resets_and_replays_are_entries_of_the_history() {
    let project = Project::new();
    let (_wh, server) = delivered_once(&project);

    let replayed = project.ebb_json(&["replay", SYNC, "--run", "1", "--yes"]);
    assert_eq!(replayed["ok"], 4, "{replayed}");
    project.ebb_ok(&["reset", SYNC, "--yes"]);
    // A replay moves nothing of the sync's own (its delivery ids, its
    // last_sync_time); the reset made the next run send everything again.
    let before = server.accepted().len();
    project.run_ok();
    assert_events(&server.accepted()[before..], &all_added(1..=4));

    let history = project.history();
    assert_eq!(
        kinds(&history),
        [
            ("run".into(), "success".into(), String::new()),
            ("reset".into(), "success".into(), String::new()),
            ("replay".into(), "success".into(), "replay of run 1".into()),
            ("run".into(), "success".into(), String::new()),
        ]
    );
    assert_eq!(history[2]["counts"]["ok"], 4, "{}", history[2]);
    assert_eq!(history[2]["run_id"], replayed["replay_id"]);

    let table = project.ebb_ok(&["history", SYNC]);
    assert!(table.contains("replay of run 1"), "{table}");
    let csv = project.ebb_ok(&["history", SYNC, "--format", "csv"]);
    assert!(
        csv.lines()
            .next()
            .unwrap_or_default()
            .ends_with(",kind,detail"),
        "{csv}"
    );
}

/// Runs `ebb ARGS…` on a pseudo-terminal (util-linux `script`), typing
/// `answer`; returns what the terminal showed and the exit code.
fn on_a_terminal(project: &Project, args: &[&str], answer: &str) -> (String, Option<i32>) {
    let mut line = format!(
        "'{}' --config '{}'",
        env!("CARGO_BIN_EXE_ebb"),
        project.path("ebb.toml").display()
    );
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    let mut child = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(project.root())
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start script(1)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(answer.as_bytes()).expect("type the answer");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for script(1)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code(),
    )
}

#[test]
fn on_a_terminal_reset_asks_first() {
    let project = Project::new();
    let (_wh, server) = delivered_once(&project);

    let (shown, code) = on_a_terminal(&project, &["reset", SYNC], "n\n");
    assert!(
        shown.contains(&format!("Reset sync `{SYNC}`?")) && shown.contains("[y/N]"),
        "{shown}"
    );
    assert!(
        shown.contains("reset cancelled; nothing changed"),
        "{shown}"
    );
    assert_eq!(code, Some(1));
    assert_eq!(project.run_ok().count("sent"), 0, "declined: nothing reset");

    let (shown, code) = on_a_terminal(&project, &["reset", SYNC], "y\n");
    assert_eq!(code, Some(0), "{shown}");
    let before = server.accepted().len();
    project.run_ok();
    assert_events(&server.accepted()[before..], &all_added(1..=4));
}
