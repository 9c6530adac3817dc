//! Generates what `ebb` includes at build time: the table of built-in
//! plugins (built by the `ebb-builtins` crate's build script, which cargo
//! runs early, beside the host's dependencies) and the SDK's files, which
//! `ebb plugin new` writes next to a new plugin. Tests find the fixtures
//! through `EBB_FIXTURE_DIR`.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

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

/// Leaves the file alone when unchanged, so the host is not rebuilt.
fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return;
    }
    fs::write(path, contents)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
