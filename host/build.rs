//! Generates what `ebb` includes at build time: the table of built-in
//! plugins (built by the `ebb-builtins` crate's build script, which cargo
//! may run while the host's dependencies compile) and the SDK's files, which
//! `ebb plugin new` writes next to a new plugin. Tests find the fixtures
//! through `EBB_FIXTURE_DIR`.

#[path = "build_support.rs"]
mod build_support;

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use build_support::{fail, write_if_changed};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir.parent().expect("host/ lives in the workspace");
    println!("cargo:rerun-if-changed={}", workspace.join("sdk").display());
    let from_builtins = |key: &str| {
        env::var(format!("DEP_EBB_BUILTINS_{key}"))
            .unwrap_or_else(|_| fail(&format!("ebb-builtins gave no {key}")))
    };
    println!(
        "cargo:rustc-env=EBB_BUILTIN_TABLE={}",
        from_builtins("TABLE")
    );
    println!(
        "cargo:rustc-env=EBB_FIXTURE_DIR={}",
        from_builtins("FIXTURES")
    );
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    write_if_changed(
        &out_dir.join("sdk_files.rs"),
        &sdk_table(&workspace.join("sdk")),
    );
}

/// The SDK's files, which `ebb plugin new` writes next to a new plugin so
/// it builds with nothing else from this repository.
fn sdk_table(sdk: &Path) -> String {
    let mut files = Vec::new();
    walk(sdk, sdk, &mut files);
    files.sort();
    let mut src = String::from(
        "/// The SDK's files: path inside the crate, contents.\n\
         pub const SDK_FILES: &[(&str, &[u8])] = &[\n",
    );
    for (relative, absolute) in files {
        writeln!(src, "    ({relative:?}, include_bytes!({absolute:?})),")
            .expect("writing to a String");
    }
    src.push_str("];\n");
    src
}

/// Every file below `dir` but build output, as (path from `root`, absolute path).
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", dir.display())));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if entry.file_name() != "target" {
                walk(root, &path, out);
            }
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push((
                relative.to_string_lossy().replace('\\', "/"),
                path.display().to_string(),
            ));
        }
    }
}
