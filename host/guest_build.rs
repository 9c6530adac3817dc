//! Builds guest crates to `wasm32-wasip2` components from a build script
//! (`builtins/build.rs`, `fixtures/build.rs`): a nested `cargo build` in its
//! own target dir, `target/wasm`, so it never waits on the lock of the
//! build that runs the script, with the outer build's flags and wrappers
//! (clippy, coverage) cleared because they are meant for the host.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::build_support::fail;
use crate::nested_cargo;

pub const TARGET: &str = "wasm32-wasip2";

/// Builds `packages` of the workspace with the cargo profile `profile`
/// and returns the folder of their `.wasm` files.
pub fn build(workspace: &Path, profile: &str, packages: &[&str]) -> PathBuf {
    check_target_installed();
    let target_dir = workspace.join("target").join("wasm");
    let mut cmd = nested_cargo::cargo();
    cmd.current_dir(workspace)
        .args([
            "build",
            "--profile",
            profile,
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    // Keep stdout for cargo directives: the nested build reports on stderr.
    cmd.stdout(Stdio::from(std::io::stderr()));
    match cmd.status() {
        Ok(status) if status.success() => target_dir.join(TARGET).join(profile),
        Ok(status) => fail(&format!(
            "building {} for {TARGET} failed ({status}); see the errors above",
            packages.join(", ")
        )),
        Err(e) => fail(&format!("cannot run cargo to build the guests: {e}")),
    }
}

fn check_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|e| fail(&format!("cannot run rustc to find the sysroot: {e}")));
    if !Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .is_dir()
    {
        fail("the wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2`");
    }
}
