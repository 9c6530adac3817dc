//! The SDK stands alone: a copy of `sdk/`, and nothing else from this
//! repository, builds a plugin. The plugin is the SDK README's complete
//! destination, read from the README itself into a crate of its own next to
//! the copy (at `../ebb/sdk`, as the README's `Cargo.toml` says). It must
//! build to a wasm32-wasip2 component, and its unit tests must pass
//! natively, in the SDK's test mode.
//!
//! The crate gets this workspace's `Cargo.lock` and cargo runs offline, on
//! the packages already fetched for the workspace, so the test reaches no
//! network. Both builds share `target/sdk-standalone`: a warm run rebuilds
//! only the SDK and the example.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../nested_cargo.rs"]
mod nested_cargo;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ lives in the workspace")
        .to_owned()
}

/// The bodies of the fenced code blocks whose info string starts with
/// `lang` (`rust`, `rust,no_run`, …), in order.
fn fenced_blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut open: Option<(bool, String)> = None;
    for line in markdown.lines() {
        match (&mut open, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => {
                let wanted = info.split(',').next().map(str::trim) == Some(lang);
                open = Some((wanted, String::new()));
            }
            (Some(_), Some(_)) => {
                if let Some((true, body)) = open.take() {
                    blocks.push(body);
                }
            }
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Copies the folder `from` to `to`, leaving out build output.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&source, &target);
            }
        } else {
            fs::copy(&source, &target).unwrap();
        }
    }
}

fn cargo(dir: &Path, args: &[&str]) -> Output {
    let mut command = nested_cargo::cargo();
    command
        .current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_TERM_COLOR", "never");
    let output = command.output().expect("cargo runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert!(
        output.status.success(),
        "cargo {} failed in {}:\n{}\n{}",
        args.join(" "),
        dir.display(),
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// The target triple of this machine, as rustc names it.
fn host_target() -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc)
        .args(["--print", "host-tuple"])
        .output()
        .expect("rustc runs");
    assert!(output.status.success(), "rustc --print host-tuple failed");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn target_dir() -> PathBuf {
    workspace().join("target").join("sdk-standalone")
}

#[test]
fn the_readme_destination_builds_against_a_copy_of_the_sdk_alone() {
    let readme = fs::read_to_string(workspace().join("sdk/README.md")).unwrap();
    let manifest = fenced_blocks(&readme, "toml").remove(0);
    let lib = fenced_blocks(&readme, "rust").remove(0);
    assert!(
        manifest.contains(r#"ebb-sdk = { path = "../ebb/sdk" }"#),
        "{manifest}"
    );
    assert!(lib.contains("export_destination!"), "{lib}");

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&workspace().join("sdk"), &dir.path().join("ebb/sdk"));
    let plugin = dir.path().join("webhook");
    fs::create_dir_all(plugin.join("src")).unwrap();
    fs::write(
        plugin.join("Cargo.toml"),
        format!(
            "[package]\nname = \"webhook\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [workspace]\n\n{manifest}"
        ),
    )
    .unwrap();
    fs::write(plugin.join("src/lib.rs"), lib).unwrap();
    fs::copy(workspace().join("Cargo.lock"), plugin.join("Cargo.lock")).unwrap();

    cargo(
        &plugin,
        &["build", "--offline", "--target", "wasm32-wasip2"],
    );
    let wasm = target_dir().join("wasm32-wasip2/debug/webhook.wasm");
    let bytes = fs::read(&wasm).unwrap();
    // `\0asm`, then version 0x0d and layer 1: a component, not a module.
    assert_eq!(
        bytes.get(..8),
        Some(&b"\0asm\x0d\x00\x01\x00"[..]),
        "{}",
        wasm.display()
    );

    // Naming the host target shares the proc macros with the build above.
    let host = host_target();
    let tests = cargo(&plugin, &["test", "--offline", "--lib", "--target", &host]);
    let stdout = String::from_utf8_lossy(&tests.stdout);
    for test in [
        "tests::rate_limits_retry_and_refusals_reject",
        "tests::configs_are_checked",
    ] {
        assert!(
            stdout.contains(&format!("test {test} ... ok")),
            "{test} did not pass:\n{stdout}"
        );
    }
    assert!(stdout.contains("test result: ok. 2 passed"), "{stdout}");
}
