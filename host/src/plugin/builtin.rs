//! The first-party plugins compiled into the binary, so a config can say
//! `plugin = "ebb:http"` without shipping a `.wasm` next to it. The
//! `ebb-builtins` crate's build script builds them from `plugins/` and
//! generates the table included here, which the engine is given in
//! `EngineOptions::builtins`.

use ebb_plugin_host::Builtin;

include!(env!("EBB_BUILTIN_TABLE"));

/// The component bytes of the built-in plugin `name` (without `ebb:`).
pub fn get(name: &str) -> Option<&'static [u8]> {
    ALL.iter()
        .find(|builtin| builtin.name == name)
        .map(|builtin| builtin.component)
}
