//! Output into a pipe whose reader left (`ebb … | head -1`) never panics:
//! the command finishes, and its exit code says what happened to the run.

use std::io::Read;
use std::process::Stdio;

use crate::support::config::Config;
use crate::support::project::{Project, SYNC};
use crate::support::warehouse::Warehouse;

/// Runs `ebb ARGS` with stdout a pipe closed before anything is written;
/// returns the exit code and stderr.
fn with_stdout_closed(project: &Project, args: &[&str]) -> (Option<i32>, String) {
    let mut child = project
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ebb");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (child.wait().expect("wait for ebb").code(), stderr)
}

/// A project syncing `users` users to the file destination.
fn project(users: i64) -> Project {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=users);
    project.write_config(&Config::new(&wh).render());
    project
}

#[test]
fn a_closed_stdout_stops_output_not_the_command() {
    let project = project(3);

    let (code, stderr) = with_stdout_closed(&project, &["run", SYNC]);
    assert_eq!(code, Some(0), "the run succeeded: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(project.history()[0]["status"], "success");

    for args in [
        &["history", SYNC][..],
        &["history", SYNC, "--format", "csv"],
        &["errors", SYNC, "--format", "csv"],
        &["plan", SYNC, "--format", "json"],
        &["check"],
    ] {
        let (code, stderr) = with_stdout_closed(&project, args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_closed_stderr_under_debug_logs_neither_panics_nor_hangs_a_run() {
    let project = project(50);
    let mut child = project
        .command(&["-vv", "--log-format", "json", "run", SYNC])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ebb");
    drop(child.stdout.take());
    drop(child.stderr.take());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ebb") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ebb run hung with its stderr closed");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert_eq!(project.history()[0]["status"], "success");
}
