//! `ebb run` started in the background, for tests that stop it at a point
//! of their choosing (SIGTERM, SIGKILL) once they see it got there. Waiting
//! is for a condition, never a fixed sleep, and fails early with the run's
//! output if the process ends before the condition holds. A run still alive
//! when the test ends (e.g. it failed) is killed, not left behind.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::project::{Project, SYNC};

/// How long a condition may take to come true on a loaded machine (a cold
/// plugin compilation in a debug build is the slow part).
const WITHIN: Duration = Duration::from_secs(120);

pub struct Background {
    child: Option<Child>,
}

impl Background {
    /// Starts `ebb run SYNC --format json` in `project`.
    pub fn start(project: &Project) -> Background {
        let child = project
            .command(&["run", SYNC, "--format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ebb");
        Background { child: Some(child) }
    }

    /// Polls `condition` until it holds; fails the test if the run ends
    /// first or it does not hold within two minutes.
    pub fn wait_until(&mut self, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + WITHIN;
        while !condition() {
            let child = self.child.as_mut().expect("the run is in the background");
            if child.try_wait().expect("wait for ebb").is_some() {
                let child = self.child.take().expect("the run is in the background");
                let out = child.wait_with_output().expect("collect ebb output");
                panic!(
                    "the run ended before {what}: {}\n--- stdout\n{}\n--- stderr\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process gets no chance to close its run or anything else.
    pub fn kill(self) {
        let mut child = self.into_child();
        child.kill().expect("kill ebb");
        let status = child.wait().expect("wait for ebb");
        assert_eq!(status.code(), None, "ebb ended by itself: {status}");
    }

    /// The process, for a test that ends it another way.
    pub fn into_child(mut self) -> Child {
        self.child.take().expect("the run is in the background")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
