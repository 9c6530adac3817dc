//! `[destinations.NAME]`: the destination plugin, the hosts and folder it
//! is granted, its config (secrets substituted) and how much it may be
//! sent at once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::error::Invalid;
use super::plugins::{RawPluginLimits, empty_table, plugin_limits, plugin_ref};
use super::resolver::Resolver;
use crate::plugin::{self, PluginRef};

#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub plugin: PluginRef,
    pub allow_hosts: Vec<String>,
    pub allow_dir: Option<PathBuf>,
    pub config: Value,
    pub max_in_flight: usize,
    pub batch_size: Option<usize>,
    pub plugin_limits: plugin::Limits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    plugin: String,
    sha256: Option<String>,
    #[serde(default)]
    allow_hosts: Vec<String>,
    allow_dir: Option<String>,
    #[serde(default = "empty_table")]
    config: toml::Value,
    max_in_flight: Option<usize>,
    batch_size: Option<usize>,
    #[serde(flatten)]
    limits: RawPluginLimits,
}

pub fn resolve(
    raw: BTreeMap<String, RawDestination>,
    r: &Resolver,
) -> Result<BTreeMap<String, Destination>, Invalid> {
    raw.into_iter()
        .map(|(name, d)| Ok((name.clone(), destination(name, d, r)?)))
        .collect()
}

fn destination(name: String, d: RawDestination, r: &Resolver) -> Result<Destination, Invalid> {
    let key = format!("destinations.{name}");
    let plugin = plugin_ref(
        r,
        &key,
        format!("destination `{name}` ({})", d.plugin),
        &d.plugin,
        d.sha256,
    )?;
    let allow_dir = match d.allow_dir {
        Some(dir) => {
            let p = r.path(&dir);
            std::fs::create_dir_all(&p).map_err(|e| {
                Invalid::new(
                    format!("{key}.allow_dir"),
                    format!("cannot create {}: {e}", p.display()),
                )
            })?;
            Some(p)
        }
        None => None,
    };
    let config = r.json_with_secrets(&format!("{key}.config"), d.config)?;
    if d.max_in_flight == Some(0) || d.batch_size == Some(0) {
        return Err(Invalid::new(
            key,
            "max_in_flight and batch_size must be at least 1",
        ));
    }
    Ok(Destination {
        name,
        plugin,
        allow_hosts: d.allow_hosts,
        allow_dir,
        config,
        max_in_flight: d.max_in_flight.unwrap_or(4),
        batch_size: d.batch_size,
        plugin_limits: plugin_limits(&key, &d.limits)?,
    })
}
