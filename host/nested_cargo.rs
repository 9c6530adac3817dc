//! A cargo run from inside another cargo run (the built-in plugins' build,
//! the SDK-standalone test): it must not inherit the outer build's settings.

use std::process::Command;

/// Settings of the outer build (clippy's wrapper, coverage flags, its target
/// dir, target and profile, its jobserver) that must not reach the nested one.
const LEAKY_VARS: &[&str] = &[
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_MAKEFLAGS",
];
const LEAKY_PREFIXES: &[&str] = &["CARGO_BUILD_", "CARGO_PROFILE_", "__CARGO"];

/// `cargo` (the one running this build, if any), without the outer build's
/// settings.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if LEAKY_VARS.contains(&name.as_ref())
            || LEAKY_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(&key);
        }
    }
    command
}
