//! Guest components built for the tests (see `tests/fixtures`).

use std::path::PathBuf;

/// The `misbehave` transform: config `{"mode": "ok|trap|loop|alloc|…"}`.
pub fn misbehave_wasm() -> PathBuf {
    fixture("ebb_misbehave.wasm")
}

/// A transform claiming ebb:plugin@0.2.0 with an `event` of one field too
/// many.
pub fn shape_mismatch_wasm() -> PathBuf {
    fixture("ebb_shape_mismatch.wasm")
}

/// A destination that breaks the contract or probes its sandbox: config
/// `{"mode": "ok" | "short" | "probe"}`.
pub fn rogue_destination_wasm() -> PathBuf {
    fixture("ebb_rogue_destination.wasm")
}

/// A transform that breaks the contract: config `"bad-json"` or `"extra"`.
pub fn rogue_transform_wasm() -> PathBuf {
    fixture("ebb_rogue_transform.wasm")
}

fn fixture(file: &str) -> PathBuf {
    ebb_fixtures::path(file)
}
