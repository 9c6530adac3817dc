//! A throwaway Ebb project: a temp dir holding `ebb.toml`, the warehouse (for
//! SQLite), the state store and the file destination's output, plus helpers
//! that drive the real binary in it and read its JSON output.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::cmd::{Output, run_with_deadline};
use super::events::without_delivery_id;

/// Longest any single `ebb` invocation may take before the test fails. Cold
/// plugin compilation in a debug build is the slow part.
const DEADLINE: Duration = Duration::from_secs(180);

/// The sync every test config declares.
pub const SYNC: &str = "users_out";

/// Where the file destination writes, relative to the project directory.
pub const FILE_OUTPUT: &str = "out/events.jsonl";

pub struct Project {
    dir: TempDir,
    /// `[state] url` written into every config; the default store when `None`.
    state_url: Option<String>,
    /// Bytes of each output file already handed out by
    /// [`Project::take_delivered_from`], by path relative to the project.
    delivered_offsets: RefCell<HashMap<String, usize>>,
}

/// The outcome of `ebb run SYNC --format json`.
#[derive(Debug)]
pub struct Run {
    pub output: Output,
    pub report: Value,
}

impl Run {
    /// The report `ebb run SYNC --format json` printed; any exit code.
    pub fn parse(output: Output, sync: &str) -> Run {
        let report = serde_json::from_str(output.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`ebb run {sync} --format json` did not print a JSON report ({e}); exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
                output.code, output.stdout, output.stderr
            )
        });
        Run { output, report }
    }

    pub fn code(&self) -> Option<i32> {
        self.output.code
    }

    pub fn status(&self) -> &str {
        self.report["status"]
            .as_str()
            .unwrap_or_else(|| panic!("run report has no status: {}", self.report))
    }

    pub fn count(&self, name: &str) -> u64 {
        self.report["counts"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("run report has no count {name:?}: {}", self.report))
    }

    pub fn run_id(&self) -> i64 {
        self.report["run_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("run report has no run_id: {}", self.report))
    }

    /// Asserts the exit code and status agree with `status`
    /// (success and skipped → 0, partial → 2, failed → 1).
    pub fn assert_status(&self, status: &str) {
        let code = match status {
            "success" | "skipped" => 0,
            "partial" => 2,
            "failed" => 1,
            other => panic!("unknown run status {other:?}"),
        };
        assert_eq!(
            (self.code(), self.status()),
            (Some(code), status),
            "unexpected run outcome\n--- stdout\n{}\n--- stderr\n{}",
            self.output.stdout,
            self.output.stderr
        );
    }
}

impl Project {
    pub fn new() -> Project {
        Project::with_state_url(None)
    }

    /// A project whose configs keep Ebb's state at `url`.
    pub fn with_state(url: &str) -> Project {
        Project::with_state_url(Some(url.to_owned()))
    }

    fn with_state_url(state_url: Option<String>) -> Project {
        let dir = tempfile::Builder::new()
            .prefix("ebb-e2e-")
            .tempdir()
            .expect("creating temp dir");
        std::fs::create_dir(dir.path().join("out")).expect("creating out dir");
        Project {
            dir,
            state_url,
            delivered_offsets: RefCell::default(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating parent dir");
        }
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Writes `ebb.toml`; with a state URL, it joins the `[state]` table
    /// the config starts with, if it does.
    pub fn write_config(&self, toml: &str) {
        match &self.state_url {
            Some(url) => {
                let rest = toml.strip_prefix("[state]\n").unwrap_or(toml);
                self.write("ebb.toml", &format!("[state]\nurl = \"{url}\"\n{rest}"))
            }
            None => self.write("ebb.toml", toml),
        }
    }

    /// The default state store, `.ebb/state.db` next to `ebb.toml`.
    pub fn state_db(&self) -> PathBuf {
        self.path(".ebb/state.db")
    }

    /// Runs `ebb --config <project>/ebb.toml ARGS…` from the project dir.
    pub fn ebb(&self, args: &[&str]) -> Output {
        run_with_deadline(self.command(args), DEADLINE)
    }

    /// The command [`Project::ebb`] runs, for tests that start several at once.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ebb"));
        cmd.current_dir(self.root())
            .arg("--config")
            .arg(self.path("ebb.toml"))
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("EBB_CONFIG")
            .env("NO_COLOR", "1");
        cmd
    }

    /// Runs `ebb ARGS…` and expects exit 0, returning stdout.
    pub fn ebb_ok(&self, args: &[&str]) -> String {
        let out = self.ebb(args);
        assert_eq!(
            out.code,
            Some(0),
            "ebb {args:?} failed\n--- stdout\n{}\n--- stderr\n{}",
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Runs `ebb ARGS… --format json`, expects exit 0 and parses stdout.
    pub fn ebb_json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend(["--format", "json"]);
        let stdout = self.ebb_ok(&full);
        parse_json(&stdout, &full)
    }

    /// Runs `check`, `preview users`, `plan` and `run` on the config as it
    /// is, expecting each to fail saying every one of `mentions`.
    pub fn assert_every_command_refuses(&self, mentions: &[&str]) {
        for args in [
            &["check"][..],
            &["preview", "users"],
            &["plan", SYNC],
            &["run", SYNC],
        ] {
            let out = self.ebb(args);
            assert_ne!(out.code, Some(0), "ebb {args:?} went ahead: {}", out.text());
            for needle in mentions {
                assert!(
                    out.text().contains(needle),
                    "ebb {args:?} must say {needle:?}: {}",
                    out.text()
                );
            }
        }
    }

    /// `ebb run SYNC --format json`; any exit code, but stdout must be the
    /// run report.
    pub fn run(&self) -> Run {
        self.run_sync(SYNC)
    }

    /// [`Project::run`] for a config whose sync has another name.
    pub fn run_sync(&self, sync: &str) -> Run {
        Run::parse(self.ebb(&["run", sync, "--format", "json"]), sync)
    }

    /// Starts `n` × `ebb run SYNC --format json` at the same moment and
    /// waits for all of them.
    pub fn runs_together(&self, n: usize) -> Vec<Run> {
        std::thread::scope(|scope| {
            let started: Vec<_> = (0..n)
                .map(|_| {
                    let cmd = self.command(&["run", SYNC, "--format", "json"]);
                    scope.spawn(move || run_with_deadline(cmd, DEADLINE))
                })
                .collect();
            started
                .into_iter()
                .map(|run| Run::parse(run.join().expect("run thread"), SYNC))
                .collect()
        })
    }

    /// Runs the sync and expects it to succeed.
    pub fn run_ok(&self) -> Run {
        let run = self.run();
        run.assert_status("success");
        run
    }

    /// `ebb plan SYNC --format json`: the events a run would send.
    pub fn plan(&self) -> Vec<Value> {
        let mut plan = self.ebb_json(&["plan", SYNC]);
        into_array(plan["events"].take())
            .into_iter()
            .map(|mut planned| without_delivery_id(planned["event"].take()))
            .collect()
    }

    /// `ebb errors SYNC --format json`: the rows still owed.
    pub fn errors(&self) -> Vec<Value> {
        let mut errors = into_array(self.ebb_json(&["errors", SYNC]));
        for error in &mut errors {
            error["payload"] = without_delivery_id(error["payload"].take());
        }
        errors
    }

    /// `ebb history SYNC --format json`: runs, newest first.
    pub fn history(&self) -> Vec<Value> {
        into_array(self.ebb_json(&["history", SYNC]))
    }

    /// Events the file destination wrote since the previous call.
    pub fn take_delivered(&self) -> Vec<Value> {
        self.take_delivered_from(FILE_OUTPUT)
    }

    /// Events a file destination wrote to `rel` (relative to the project)
    /// since the previous call for that file.
    pub fn take_delivered_from(&self, rel: &str) -> Vec<Value> {
        let path = self.path(rel);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => panic!("reading {}: {e}", path.display()),
        };
        let mut offsets = self.delivered_offsets.borrow_mut();
        let offset = offsets.get(rel).copied().unwrap_or(0);
        assert!(
            text.len() >= offset,
            "{} shrank from {offset} to {} bytes",
            path.display(),
            text.len()
        );
        let fresh = &text[offset..];
        assert!(
            fresh.is_empty() || fresh.ends_with('\n'),
            "{} ends in a partial line: {fresh:?}",
            path.display()
        );
        offsets.insert(rel.to_owned(), text.len());
        fresh
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let event = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {line}", path.display()));
                without_delivery_id(event)
            })
            .collect()
    }
}

fn parse_json(stdout: &str, args: &[&str]) -> Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("`ebb {args:?}` did not print JSON ({e}):\n{stdout}"))
}

fn into_array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("expected a JSON array, got {other}"),
    }
}
