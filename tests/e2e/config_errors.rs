//! A bad config gives one clear error naming what is wrong (exit 1) and
//! never creates or changes the state store.

use std::path::Path;

use crate::support::cmd::Output;
use crate::support::config::Config;
use crate::support::project::{Project, SYNC};
use crate::support::warehouse::Warehouse;

/// Runs `args` under the config `bad` makes, first in a project that never
/// ran (no state store may appear) and then after one good run (the state
/// store must stay byte-identical); both times expects exactly one error
/// mentioning each of `mentions`.
pub fn rejected_without_touching_state(
    bad: impl Fn(&Warehouse) -> String,
    args: &[&str],
    mentions: &[&str],
) {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);

    project.write_config(&bad(&wh));
    assert_one_error(&project.ebb(args), mentions);
    assert!(
        !project.state_db().exists(),
        "a config error created {}",
        project.state_db().display()
    );

    project.write_config(&Config::new(&wh).render());
    project.run_ok();
    let before = state_files(&project.state_db());
    project.write_config(&bad(&wh));
    assert_one_error(&project.ebb(args), mentions);
    assert!(
        state_files(&project.state_db()) == before,
        "a config error modified the state store"
    );
}

fn assert_one_error(out: &Output, mentions: &[&str]) {
    assert_eq!(out.code, Some(1), "config error must exit 1: {out:#?}");
    let errors = out
        .stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .count();
    assert_eq!(
        errors, 1,
        "expected exactly one `error:` line:\n{}",
        out.stderr
    );
    for needle in mentions {
        assert!(
            out.stderr.contains(needle),
            "the error must mention {needle:?}:\n{}",
            out.stderr
        );
    }
}

/// The state database and its WAL, byte for byte (`None` when absent).
fn state_files(db: &Path) -> [Option<Vec<u8>>; 2] {
    let wal = db.with_extension("db-wal");
    [std::fs::read(db).ok(), std::fs::read(wal).ok()]
}

#[test]
fn unknown_sync_is_named_with_the_known_ones() {
    rejected_without_touching_state(
        |wh| Config::new(wh).render(),
        &["run", "nope"],
        &["nope", SYNC],
    );
}

#[test]
fn a_mistyped_sync_or_key_gets_a_did_you_mean() {
    rejected_without_touching_state(
        |wh| Config::new(wh).render(),
        &["run", "users_ot"],
        &["no sync named `users_ot`; did you mean `users_out`?"],
    );
    rejected_without_touching_state(
        |wh| {
            Config::new(wh)
                .sync("retyr = { max_attempts = 2 }")
                .render()
        },
        &["run", SYNC],
        &["unknown field `retyr`", "did you mean `retry`?"],
    );
}

#[test]
fn primary_key_missing_from_the_query_names_column_and_model() {
    rejected_without_touching_state(
        |wh| Config::new(wh).primary_key("user_id").render(),
        &["run", SYNC],
        &["user_id", "users"],
    );
}

#[test]
fn unknown_action_names_it_and_the_declared_ones() {
    rejected_without_touching_state(
        |wh| Config::new(wh).sync(r#"action = "upsert""#).render(),
        &["run", SYNC],
        &["upsert", "append"],
    );
}

#[test]
fn malformed_toml_names_file_and_line() {
    let broken_line = |wh: &Warehouse| {
        let good = Config::new(wh).render();
        let line = good
            .lines()
            .position(|l| l == "model = \"users\"")
            .expect("sync model line")
            + 1;
        (good.replace("model = \"users\"", "model = \"users"), line)
    };
    let project = Project::new();
    let line = broken_line(&Warehouse::sqlite(&project)).1;
    rejected_without_touching_state(
        |wh| broken_line(wh).0,
        &["run", SYNC],
        &["ebb.toml", &format!("line {line}")],
    );
}

#[test]
fn missing_plugin_file_names_the_path() {
    rejected_without_touching_state(
        |wh| {
            Config::new(wh)
                .destination(
                    "[destinations.out]\nplugin = \"plugins/missing-destination.wasm\"\nconfig = {}\n",
                )
                .render()
        },
        &["run", SYNC],
        &["missing-destination.wasm"],
    );
}

#[test]
fn plugin_path_that_is_a_folder_says_so() {
    rejected_without_touching_state(
        |wh| {
            Config::new(wh)
                .destination("[destinations.out]\nplugin = \".\"\nconfig = {}\n")
                .render()
        },
        &["run", SYNC],
        &["destinations.out.plugin", "is a folder, not a file"],
    );
}

/// `[server]` and a destination no sync sends to, each wanting a variable
/// nobody set.
fn with_unused_secrets(wh: &Warehouse) -> String {
    format!(
        r#"{}
[server]
api_token = "${{env:EBB_TEST_UNSET_API_TOKEN}}"

[destinations.crm]
plugin = "ebb:http"
allow_hosts = ["127.0.0.1:9"]
config = {{ url = "http://127.0.0.1:9/in", headers = {{ Authorization = "Bearer ${{env:EBB_TEST_UNSET_CRM_TOKEN}}" }} }}
"#,
        Config::new(wh).render()
    )
}

#[test]
fn secrets_are_needed_only_by_the_commands_that_use_them() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    project.write_config(&with_unused_secrets(&wh));
    for args in [
        &["check"][..],
        &["preview", "users"],
        &["plan", SYNC],
        &["run", SYNC],
    ] {
        let out = project.ebb(args);
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.text());
    }

    // `serve` needs its token, and says which variable is missing.
    let out = project.ebb(&["serve"]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(
        out.stderr.contains(
            "server.api_token: environment variable `EBB_TEST_UNSET_API_TOKEN` is not set"
        ),
        "{}",
        out.stderr
    );

    // A sync to the destination whose secret is unset fails on it.
    let to_crm =
        with_unused_secrets(&wh).replace(r#"destination = "out""#, r#"destination = "crm""#);
    project.write_config(&to_crm);
    for args in [&["check"][..], &["run", SYNC]] {
        let out = project.ebb(args);
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.text());
        assert!(
            out.stderr.contains(
                "destinations.crm.config.headers.Authorization: environment variable `EBB_TEST_UNSET_CRM_TOKEN` is not set"
            ),
            "{args:?}: {}",
            out.stderr
        );
    }
}
