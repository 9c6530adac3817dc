//! What the build scripts (`build.rs`, `builtins/build.rs`,
//! `fixtures/build.rs`) share.

use std::fs;
use std::path::{Path, PathBuf};

/// Writes `contents` unless the file holds them already, so what includes
/// it is not rebuilt.
pub fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return;
    }
    fs::write(path, contents)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
}

/// Fails the build with `message`.
pub fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// Every file at or below `path` but build output (`target` folders), as
/// (its path from `root`, `/`-separated; its full path).
pub fn files(root: &Path, path: &Path, out: &mut Vec<(String, PathBuf)>) {
    if !path.is_dir() {
        if let Ok(relative) = path.strip_prefix(root) {
            out.push((relative.to_string_lossy().replace('\\', "/"), path.into()));
        }
        return;
    }
    let entries = fs::read_dir(path)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())));
    for entry in entries.flatten() {
        if !(entry.file_name() == "target" && entry.path().is_dir()) {
            files(root, &entry.path(), out);
        }
    }
}
