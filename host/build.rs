//! Generates what `ebb` includes at build time: the table of built-in
//! plugins (found or built by the `ebb-builtins` crate's build script, which
//! cargo may run while the host's dependencies compile) and the SDK's files, which
//! `ebb plugin new` writes next to a new plugin.

#[path = "build_support.rs"]
mod build_support;

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use build_support::{fail, files, write_if_changed};

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
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    write_if_changed(
        &out_dir.join("sdk_files.rs"),
        &sdk_table(&workspace.join("sdk")),
    );
}

/// The SDK's files, which `ebb plugin new` writes next to a new plugin so
/// it builds with nothing else from this repository.
fn sdk_table(sdk: &Path) -> String {
    let mut found = Vec::new();
    files(sdk, sdk, &mut found);
    found.sort();
    let mut src = String::from(
        "/// The SDK's files: path inside the crate, contents.\n\
         pub const SDK_FILES: &[(&str, &[u8])] = &[\n",
    );
    for (relative, absolute) in found {
        writeln!(src, "    ({relative:?}, include_bytes!({absolute:?})),")
            .expect("writing to a String");
    }
    src.push_str("];\n");
    src
}
