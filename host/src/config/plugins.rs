//! The plugins destinations and transforms name: a built-in (`ebb:NAME`)
//! or a `.wasm` file, optionally pinned by its sha256, with the time and
//! memory each call may take; and `[plugins]`, where compiled components
//! are cached.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::Invalid;
use super::resolver::Resolver;
use crate::plugin::{self, PluginLocation, PluginRef};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPlugins {
    cache_dir: Option<String>,
}

/// Where compiled components are cached.
pub fn cache_dir(raw: &RawPlugins, r: &Resolver) -> PathBuf {
    r.path(raw.cache_dir.as_deref().unwrap_or(".ebb/cache"))
}

/// `timeout_secs` and `memory_mb` of a destination or transform.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginLimits {
    timeout_secs: Option<f64>,
    memory_mb: Option<usize>,
}

/// The plugin `plugin` (and `sha256`) at `key` name, used as `label`.
pub fn plugin_ref(
    r: &Resolver,
    key: &str,
    label: String,
    plugin: &str,
    sha256: Option<String>,
) -> Result<PluginRef, Invalid> {
    let location = match plugin.strip_prefix("ebb:") {
        Some(name) => {
            if plugin::builtin::get(name).is_none() {
                return Err(Invalid::new(
                    format!("{key}.plugin"),
                    format!(
                        "no built-in plugin `{plugin}`; built-ins are {}",
                        plugin::builtin::NAMES
                            .iter()
                            .map(|n| format!("ebb:{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            PluginLocation::Builtin(name.to_string())
        }
        None => PluginLocation::File(r.existing_file(&format!("{key}.plugin"), plugin)?),
    };
    if let Some(h) = &sha256
        && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(Invalid::new(
            format!("{key}.sha256"),
            format!("expected 64 hex digits, got `{h}`"),
        ));
    }
    Ok(PluginRef {
        label,
        location,
        sha256,
    })
}

pub fn plugin_limits(key: &str, raw: &RawPluginLimits) -> Result<plugin::Limits, Invalid> {
    let mut limits = plugin::Limits::default();
    if let Some(secs) = raw.timeout_secs {
        if !(0.01..=3600.0).contains(&secs) {
            return Err(Invalid::new(
                format!("{key}.timeout_secs"),
                "must be between 0.01 and 3600",
            ));
        }
        limits.call_timeout = Duration::from_secs_f64(secs);
    }
    if let Some(mb) = raw.memory_mb {
        if !(1..=256).contains(&mb) {
            return Err(Invalid::new(
                format!("{key}.memory_mb"),
                "must be between 1 and 256",
            ));
        }
        limits.memory_bytes = mb << 20;
    }
    Ok(limits)
}

/// An absent `config = …`.
pub fn empty_table() -> toml::Value {
    toml::Value::Table(toml::Table::new())
}
