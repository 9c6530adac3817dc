//! The connector author's path, as a new author walks it: `ebb plugin new`
//! makes a crate whose own unit tests pass natively, `ebb plugin build`
//! turns it into a component and prints how to load it, `ebb plugin
//! inspect` describes it, and `ebb plugin test` runs it against the mock
//! endpoint, with the exit code telling whether every event was accepted.
//!
//! The new crates build offline with this workspace's `Cargo.lock`, on
//! packages already fetched, in one target dir shared across runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::cmd::{Output, run_with_deadline};

/// Building a plugin crate from cold takes a while on two cores.
const BUILD_DEADLINE: Duration = Duration::from_secs(900);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ lives in the workspace")
        .to_owned()
}

/// `program args…` in `dir`, building into the shared target dir, offline.
fn command(program: impl AsRef<std::ffi::OsStr>, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("CARGO_") && name != "CARGO_HOME" || name == "RUSTFLAGS" {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(dir)
        .args(args)
        .env(
            "CARGO_TARGET_DIR",
            workspace().join("target/plugin-toolchain"),
        )
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TERM_COLOR", "never")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    cmd
}

fn ebb(dir: &Path, args: &[&str]) -> Output {
    run_with_deadline(
        command(env!("CARGO_BIN_EXE_ebb"), dir, args),
        BUILD_DEADLINE,
    )
}

fn ok(out: Output, what: &str) -> String {
    assert_eq!(
        out.code,
        Some(0),
        "{what} failed\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// Scaffolds a plugin crate of `kind` in `root/name`, ready to build offline.
fn scaffold(root: &Path, kind: &str, name: &str) -> PathBuf {
    let said = ok(ebb(root, &["plugin", "new", kind, name]), "ebb plugin new");
    assert!(said.contains("ebb plugin build"), "{said}");
    let dir = root.join(name);
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let tests = run_with_deadline(command(cargo, &dir, &["test"]), BUILD_DEADLINE);
    let stdout = ok(tests, "cargo test in the new crate");
    assert!(stdout.contains("test result: ok."), "{stdout}");
    assert!(!stdout.contains(" 0 passed"), "{stdout}");
    dir
}

/// `ebb plugin build` in `dir`; the `.wasm` it names.
fn build(dir: &Path) -> (PathBuf, String) {
    let out = ok(ebb(dir, &["plugin", "build"]), "ebb plugin build");
    let wasm = out
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no `built FILE` line:\n{out}"));
    assert!(wasm.is_file(), "{out}");
    (wasm, out)
}

#[test]
fn a_new_destination_builds_inspects_and_passes_its_test() {
    let root = tempfile::tempdir().unwrap();
    let dir = scaffold(root.path(), "destination", "acme-crm");

    let (wasm, built) = build(&dir);
    assert!(built.contains("[destinations.acme-crm]"), "{built}");
    let sha = built
        .lines()
        .find_map(|l| l.strip_prefix("sha256: "))
        .unwrap_or_else(|| panic!("no sha256 line:\n{built}"));
    assert!(built.contains(&format!("sha256 = \"{sha}\"")), "{built}");
    assert!(
        built.contains(r#"allow_hosts = ["api.example.com"]"#),
        "{built}"
    );

    let file = wasm.to_str().unwrap();
    let described: serde_json::Value = serde_json::from_str(&ok(
        ebb(&dir, &["plugin", "inspect", file, "--format", "json"]),
        "ebb plugin inspect",
    ))
    .unwrap();
    assert_eq!(described["world"], "destination");
    assert_eq!(described["wit_version"], ebb::plugin::WIT_VERSION);
    assert_eq!(described["sha256"], sha);
    assert_eq!(described["spec"]["name"], "acme-crm");
    assert_eq!(described["spec"]["hosts"][0], "api.example.com");
    assert_eq!(described["spec"]["actions"][0]["name"], "send");

    // The sample script answers 429 first: the batch is retried and lands.
    let args = [
        "plugin",
        "test",
        file,
        "--config",
        "config.toml",
        "--events",
        "events.jsonl",
    ];
    let mut scripted = args.to_vec();
    scripted.extend(["--respond", "respond.toml"]);
    let out = ok(ebb(&dir, &scripted), "ebb plugin test");
    assert!(
        out.contains("request 1: POST https://api.example.com/v1/events -> 429"),
        "{out}"
    );
    assert!(
        out.contains("request 2: POST https://api.example.com/v1/events -> 200"),
        "{out}"
    );
    assert!(out.contains("authorization: Bearer ****"), "{out}");
    assert!(!out.contains("test-key"), "the API key was printed:\n{out}");
    assert!(out.contains("all 3 event(s) accepted"), "{out}");

    // A refusal is reported per event and fails the exit code.
    std::fs::write(
        dir.join("refuse.toml"),
        "[[respond]]\nstatus = 400\nbody = \"email is invalid\"\n",
    )
    .unwrap();
    let mut refused = args.to_vec();
    refused.extend(["--respond", "refuse.toml", "--format", "json"]);
    let out = ebb(&dir, &refused);
    assert_eq!(out.code, Some(1), "{}", out.text());
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["accepted"], false);
    assert_eq!(report["events"][0]["outcome"], "rejected");
    assert!(
        report["events"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("email is invalid")),
        "{report}"
    );

    // A config naming another endpoint needs that host instead, and the
    // request is recorded under it.
    std::fs::write(
        dir.join("elsewhere.toml"),
        "api_key = \"k\"\nendpoint = \"https://eu.example.com\"\n",
    )
    .unwrap();
    let out = ok(
        ebb(
            &dir,
            &[
                "plugin",
                "test",
                file,
                "--config",
                "elsewhere.toml",
                "--events",
                "events.jsonl",
            ],
        ),
        "ebb plugin test with another endpoint",
    );
    assert!(
        out.contains("request 1: POST https://eu.example.com/v1/events -> 200"),
        "{out}"
    );
}

#[test]
fn a_new_transform_builds_and_passes_its_test() {
    let root = tempfile::tempdir().unwrap();
    let dir = scaffold(root.path(), "transform", "drop-email");
    let (wasm, built) = build(&dir);
    assert!(built.contains("transforms = [{ plugin = "), "{built}");
    let out = ok(
        ebb(
            &dir,
            &[
                "plugin",
                "test",
                wasm.to_str().unwrap(),
                "--config",
                "config.toml",
                "--events",
                "events.jsonl",
            ],
        ),
        "ebb plugin test",
    );
    assert!(out.contains("event 1 (added): kept"), "{out}");
    assert!(
        !out.contains("ada@example.com"),
        "the field was not dropped:\n{out}"
    );
    assert!(out.contains("all 3 event(s) accepted"), "{out}");
}

#[test]
fn new_refuses_a_bad_name_and_a_folder_in_use() {
    let root = tempfile::tempdir().unwrap();
    let out = ebb(root.path(), &["plugin", "new", "destination", "Bad Name"]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(
        out.stderr.contains("cannot name a plugin crate"),
        "{}",
        out.text()
    );
    std::fs::create_dir(root.path().join("taken")).unwrap();
    std::fs::write(root.path().join("taken/keep.txt"), "mine").unwrap();
    let out = ebb(root.path(), &["plugin", "new", "transform", "taken"]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(out.stderr.contains("already exists"), "{}", out.text());
    assert_eq!(
        std::fs::read_to_string(root.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );
}
