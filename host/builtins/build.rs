//! Builds the first-party plugins and the test fixtures to `wasm32-wasip2`
//! components, so `ebb` embeds `ebb:http` and friends and the end-to-end
//! tests have guests to load (wasmtime's `test-programs` pattern).
//!
//! It is the build script of a crate with no dependencies, so cargo may
//! run it while the host's dependencies still compile (wasmtime and
//! Cranelift take minutes), where `ebb`'s own build script waits for the
//! build scripts of all of them. It hands `ebb`'s build script the table of
//! built-ins it generates and the folder of the fixtures (`links` metadata:
//! `DEP_EBB_BUILTINS_TABLE`, `…_FIXTURES`).
//!
//! The guests are built by a nested `cargo build` in their own target dir,
//! `target/wasm`, so it never waits on the lock of the build that runs this
//! script, with the outer build's flags and wrappers (clippy, coverage)
//! cleared because they are meant for the host, not for wasm.

#[path = "../build_support.rs"]
mod build_support;
#[path = "../nested_cargo.rs"]
mod nested_cargo;

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use build_support::{fail, write_if_changed};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";
/// The workspace profile for plugins: optimised, stripped, LTO; for a
/// debug build the same without LTO, which is a quarter of their build.
fn plugin_profile() -> &'static str {
    match env::var("PROFILE").as_deref() {
        Ok("release") => "plugin",
        _ => "plugin-dev",
    }
}
/// Built-in plugin names (as in `plugin = "ebb:http"`) and their crates.
const PLUGINS: &[(&str, &str)] = &[
    ("http", "ebb-http"),
    ("file", "ebb-file"),
    ("segment", "ebb-segment"),
    ("hubspot", "ebb-hubspot"),
    ("salesforce", "ebb-salesforce"),
    ("mixpanel", "ebb-mixpanel"),
    ("braze", "ebb-braze"),
    ("customerio", "ebb-customerio"),
    ("unpack-pairs", "ebb-unpack-pairs"),
    ("compare-truths", "ebb-compare-truths"),
];
/// Built-ins checked in already built, with their file in the workspace:
/// `ebb:js` holds QuickJS, which needs a C compiler for wasm that a plain
/// Rust toolchain lacks (its `build.sh` rebuilds it; CI checks the copy).
const PREBUILT: &[(&str, &str)] = &[("js", "plugins/transforms/js/ebb_js.wasm")];
/// Guests only the tests use; found through `EBB_FIXTURE_DIR`.
const FIXTURES: &[&str] = &[
    "ebb-misbehave",
    "ebb-v0-1-0-transform",
    "ebb-v0-1-0-destination",
    "ebb-shape-mismatch",
    "ebb-rogue-destination",
    "ebb-rogue-transform",
];
fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .ancestors()
        .nth(2)
        .expect("host/builtins/ lives in the workspace");
    // `sdk` holds the WIT contract too (`sdk/wit/since_v*/`).
    for watched in [
        "sdk",
        "plugins",
        "tests/fixtures",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    check_target_installed();
    let target_dir = workspace.join("target").join("wasm");
    let profile = plugin_profile();
    build_guests(workspace, &target_dir, profile);
    let wasm_dir = target_dir.join(TARGET).join(profile);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let table = out_dir.join("builtin_plugins.rs");
    write_if_changed(&table, &builtin_table(workspace, &wasm_dir));
    println!("cargo:table={}", table.display());
    println!("cargo:fixtures={}", wasm_dir.display());
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

fn build_guests(workspace: &Path, target_dir: &Path, profile: &str) {
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
        .arg(target_dir);
    for package in PLUGINS.iter().map(|(_, package)| package).chain(FIXTURES) {
        cmd.args(["-p", package]);
    }
    // Keep stdout for cargo directives: the nested build reports on stderr.
    cmd.stdout(Stdio::from(std::io::stderr()));
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!(
            "building the plugins for {TARGET} failed ({status}); see the errors above"
        )),
        Err(e) => fail(&format!("cannot run cargo to build the plugins: {e}")),
    }
}

/// The Rust source `host/src/plugin/builtin.rs` includes.
fn builtin_table(workspace: &Path, wasm_dir: &Path) -> String {
    let built = PLUGINS.iter().map(|(name, package)| {
        let file = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
        (*name, file)
    });
    let prebuilt = PREBUILT
        .iter()
        .map(|(name, file)| (*name, workspace.join(file)));
    let all: Vec<(&str, PathBuf)> = built.chain(prebuilt).collect();
    let names: Vec<String> = all.iter().map(|(name, _)| format!("{name:?}")).collect();
    let mut src = format!(
        "/// Names of the built-in plugins, as in `plugin = \"ebb:NAME\"`.\n\
         pub const NAMES: &[&str] = &[{}];\n\n\
         /// The built-in plugins, in the order of `NAMES`.\n\
         pub const ALL: &[Builtin] = &[\n",
        names.join(", ")
    );
    for (name, wasm) in &all {
        if !wasm.is_file() {
            fail(&format!("the plugin {} is missing", wasm.display()));
        }
        writeln!(
            src,
            "    Builtin {{ name: {name:?}, component: include_bytes!({:?}) }},",
            wasm.display().to_string()
        )
        .expect("writing to a String");
    }
    src.push_str("];\n");
    src
}
