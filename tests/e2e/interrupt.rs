//! A run stopped by SIGTERM closes itself at once as failed, so the next run
//! neither waits nor loses anything; while a run is in progress, another run
//! of the same sync is skipped and recorded as skipped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::changes::all_added;
use crate::support::config::Config;
use crate::support::events::assert_events;
use crate::support::project::{Project, SYNC};
use crate::support::server::{Reply, Server};
use crate::support::warehouse::Warehouse;

/// A project whose endpoint hangs, with a call limit far beyond the test.
fn hanging_project() -> (Project, Warehouse, Server) {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=4);
    let server = Server::start();
    server.script(None, Reply::Hang, 1);
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
    (project, wh, server)
}

/// Starts `ebb run` in the background and waits until its batch is at the
/// endpoint.
fn start_run(project: &Project, server: &Server) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .current_dir(project.root())
        .args(["--config", "ebb.toml", "run", SYNC, "--format", "json"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ebb");
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the run never reached the endpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
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
