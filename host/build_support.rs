//! What both build scripts (`build.rs` and `builtins/build.rs`) need.

use std::fs;
use std::path::Path;

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
