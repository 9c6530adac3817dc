//! `[destinations.NAME]`: the destination plugin, the hosts and folder it
//! is granted, its config (secrets substituted), how much it may be sent
//! at once and the rate every sync to it shares.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::error::{Invalid, Lazy, lazy};
use super::plugins::{RawPluginLimits, empty_table, plugin_limits, plugin_ref};
use super::resolver::Resolver;
use crate::plugin::{self, PluginRef};

#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub plugin: PluginRef,
    pub allow_hosts: Vec<String>,
    pub allow_dir: Option<PathBuf>,
    /// The plugin's config, secrets substituted; unset secrets fail only a
    /// command that sends to this destination.
    pub config: Lazy<Value>,
    pub max_in_flight: usize,
    pub batch_size: Option<usize>,
    pub plugin_limits: plugin::Limits,
    /// Requests and records per second, shared by every sync to it.
    pub rate: Option<plugin::Rate>,
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
    rate: Option<RawRate>,
    #[serde(flatten)]
    limits: RawPluginLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    requests_per_sec: Option<f64>,
    records_per_sec: Option<f64>,
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
    let config = lazy(r.json_with_secrets(&format!("{key}.config"), d.config))?;
    if d.max_in_flight == Some(0) || d.batch_size == Some(0) {
        return Err(Invalid::new(
            key,
            "max_in_flight and batch_size must be at least 1",
        ));
    }
    let rate = d.rate.map(|raw| rate(&key, raw)).transpose()?;
    Ok(Destination {
        rate,
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

/// `rate = { requests_per_sec = N, records_per_sec = M }`, each above 0.
fn rate(key: &str, raw: RawRate) -> Result<plugin::Rate, Invalid> {
    for (name, value) in [
        ("requests_per_sec", raw.requests_per_sec),
        ("records_per_sec", raw.records_per_sec),
    ] {
        if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Err(Invalid::new(
                format!("{key}.rate.{name}"),
                "must be a number above 0 (a fraction such as 0.5 is one every 2 s)",
            ));
        }
    }
    Ok(plugin::Rate {
        requests_per_sec: raw.requests_per_sec,
        records_per_sec: raw.records_per_sec,
    })
}
