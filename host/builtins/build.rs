//! Gives `ebb` its built-in plugins: the table of components it embeds,
//! handed to `ebb`'s build script through `links` metadata
//! (`DEP_EBB_BUILTINS_TABLE`).
//!
//! The plugins written in Rust are checked in already built, in
//! `plugins/built/`, beside `SOURCES`: the sha256 of every file they are
//! built from (`plugins/build.sh` writes both, CI rebuilds and compares).
//! While `SOURCES` matches the tree they are embedded as they are, so a
//! fresh clone builds the host and no WebAssembly at all. Once a plugin,
//! the SDK, the WIT or a dependency changed, this script builds them
//! itself (`guest_build.rs`) and warns that `plugins/build.sh` should run:
//! nothing stale is ever embedded.
//!
//! It is the build script of a crate with no dependencies, so cargo may run
//! it while the host's dependencies still compile (wasmtime and Cranelift
//! take minutes), where `ebb`'s own build script waits for the build
//! scripts of all of them.

#[path = "../build_support.rs"]
mod build_support;
#[path = "../guest_build.rs"]
mod guest_build;
#[path = "../nested_cargo.rs"]
mod nested_cargo;

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use build_support::{fail, files, write_if_changed};
use sha2::{Digest, Sha256};

/// Built-ins checked in with a build of their own, and their file:
/// `ebb:js` holds QuickJS, which needs a C compiler for wasm that a plain
/// Rust toolchain lacks (its `build.sh` rebuilds it; CI checks the copy).
const PREBUILT: &[(&str, &str)] = &[("js", "plugins/transforms/js/ebb_js.wasm")];
/// Where `plugins/build.sh` puts the plugins and `SOURCES`.
const BUILT: &str = "plugins/built";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .ancestors()
        .nth(2)
        .expect("host/builtins/ lives in the workspace");
    // `sdk` holds the WIT contract too (`sdk/wit/since_v*/`).
    for watched in ["sdk", "plugins", "Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let folders = plugin_folders(workspace);
    let wasm_dir = match changed_sources(workspace, &folders) {
        None => workspace.join(BUILT),
        Some(changed) => {
            println!(
                "cargo:warning={BUILT} is older than its sources ({changed}): building the \
                 plugins instead; run plugins/build.sh and commit {BUILT}"
            );
            let crates: Vec<String> = folders.iter().map(|f| crate_of(f)).collect();
            let crates: Vec<&str> = crates.iter().map(String::as_str).collect();
            guest_build::build(workspace, plugin_profile(), &crates)
        }
    };
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let table = out_dir.join("builtin_plugins.rs");
    write_if_changed(&table, &builtin_table(workspace, &folders, &wasm_dir));
    println!("cargo:table={}", table.display());
}

/// The workspace profile for plugins built here: optimised, stripped, LTO;
/// for a debug build the same without LTO, a quarter of their build.
fn plugin_profile() -> &'static str {
    match env::var("PROFILE").as_deref() {
        Ok("release") => "plugin",
        _ => "plugin-dev",
    }
}

/// The folders of the plugins built from Rust, as `plugins/build.sh` finds
/// them: each `plugins/<kind>/<name>` that holds a crate (`Cargo.toml`) and
/// no build of its own (`build.sh`), by path. The folder holds the crate
/// `ebb-<name>`, built to `ebb_<name>.wasm`: the built-in `ebb:<name>`.
fn plugin_folders(workspace: &Path) -> Vec<String> {
    let mut folders = Vec::new();
    for kind in ["plugins/destinations", "plugins/transforms"] {
        let entries = fs::read_dir(workspace.join(kind))
            .unwrap_or_else(|e| fail(&format!("cannot list {kind}: {e}")));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| fail(&format!("cannot list {kind}: {e}")))
                .path();
            if path.join("Cargo.toml").is_file() && !path.join("build.sh").is_file() {
                let name = path.file_name().expect("a listed entry").to_string_lossy();
                folders.push(format!("{kind}/{name}"));
            }
        }
    }
    folders.sort();
    folders
}

/// The plugin in `folder`: its name as a built-in, after `ebb:`.
fn name_of(folder: &str) -> &str {
    folder.rsplit('/').next().expect("a folder")
}

/// The crate in plugin folder `folder`.
fn crate_of(folder: &str) -> String {
    format!("ebb-{}", name_of(folder))
}

/// The files that differ between `plugins/built/SOURCES` and the tree
/// (a few of them, named), or `None` when the built plugins are current.
fn changed_sources(workspace: &Path, folders: &[String]) -> Option<String> {
    let Ok(recorded) = fs::read_to_string(workspace.join(BUILT).join("SOURCES")) else {
        return Some("no SOURCES".into());
    };
    let current = sources(workspace, folders);
    if recorded == current {
        return None;
    }
    let (recorded, current): (Vec<&str>, Vec<&str>) =
        (recorded.lines().collect(), current.lines().collect());
    let mut changed: Vec<&str> = current
        .iter()
        .filter(|line| !recorded.contains(line))
        .chain(recorded.iter().filter(|line| !current.contains(line)))
        .filter_map(|line| line.split_once("  ").map(|(_, path)| path))
        .collect();
    changed.sort();
    changed.dedup();
    let mut named = changed
        .iter()
        .take(3)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if changed.len() > 3 {
        write!(named, " and {} more", changed.len() - 3).expect("writing to a String");
    }
    Some(if named.is_empty() {
        "SOURCES is out of order".into()
    } else {
        named
    })
}

/// What the plugins are built from, as `sha256sum` lists it: every file of
/// the workspace's manifest and lock, the SDK and the plugins' folders, by
/// path in byte order (as `plugins/build.sh` writes `SOURCES`).
fn sources(workspace: &Path, folders: &[String]) -> String {
    let mut found = Vec::new();
    let roots = ["Cargo.toml", "Cargo.lock", "sdk"];
    for root in roots.into_iter().chain(folders.iter().map(String::as_str)) {
        files(workspace, &workspace.join(root), &mut found);
    }
    found.sort();
    let mut list = String::new();
    for (relative, path) in found {
        let bytes = fs::read(&path)
            .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())));
        writeln!(list, "{:x}  {relative}", Sha256::digest(&bytes)).expect("writing to a String");
    }
    list
}

/// The Rust source `host/src/plugin/builtin.rs` includes.
fn builtin_table(workspace: &Path, folders: &[String], wasm_dir: &Path) -> String {
    let built = folders.iter().map(|folder| {
        let file = format!("{}.wasm", crate_of(folder).replace('-', "_"));
        (name_of(folder), wasm_dir.join(file))
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
            fail(&format!(
                "the plugin {} is missing: run plugins/build.sh",
                wasm.display()
            ));
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
