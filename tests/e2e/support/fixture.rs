//! Guest components built for the tests (see `tests/fixtures`).

use std::path::PathBuf;

/// The `misbehave` transform: config `{"mode": "ok|trap|loop|alloc"}`.
pub fn misbehave_wasm() -> PathBuf {
    let path = PathBuf::from(env!("EBB_FIXTURE_DIR")).join("ebb_misbehave.wasm");
    assert!(path.is_file(), "fixture {} was not built", path.display());
    path
}
