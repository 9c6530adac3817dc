//! `[syncs.NAME]`: which model goes to which destination action, on which
//! changes, through which transforms and mapping, how failed records are
//! retried, and when it runs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::alerts::statuses;
use super::destinations::Destination;
use super::error::{Invalid, no_such};
use super::models::Model;
use super::plugins::{RawPluginLimits, empty_table, plugin_limits, plugin_ref};
use super::resolver::Resolver;
use crate::event::Op;
use crate::limits::Limits;
use crate::mapping::{self, Mapping};
use crate::plugin::{self, PluginRef, js};
use crate::schedule::{RawSchedule, Schedule};
use crate::status::Status;

#[derive(Debug, Clone)]
pub struct Sync {
    pub name: String,
    pub model: String,
    pub destination: String,
    pub action: Option<String>,
    pub on: Vec<Op>,
    pub transforms: Vec<Transform>,
    pub mapping: Option<Mapping>,
    pub retry: Retry,
    /// When `ebb serve` runs it.
    pub schedule: Schedule,
    /// `enabled = false` keeps it from running at all, scheduled or asked.
    pub enabled: bool,
    /// Run statuses that raise an alert for this sync, if not `[alerts] on`.
    pub alert_on: Option<Vec<Status>>,
}

#[derive(Debug, Clone)]
pub struct Transform {
    pub plugin: PluginRef,
    pub config: Value,
    pub limits: plugin::Limits,
}

#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    model: String,
    destination: String,
    action: Option<String>,
    on: Option<Vec<String>>,
    schedule: Option<RawSchedule>,
    enabled: Option<bool>,
    alert_on: Option<Vec<String>>,
    #[serde(default)]
    transforms: Vec<RawTransform>,
    mapping: Option<toml::Table>,
    #[serde(default)]
    retry: RawRetry,
}

/// A transform entry: a plugin with its config, or a JavaScript file
/// (`js`, with its `libraries` and `shape`), which runs in `ebb:js`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransform {
    plugin: Option<String>,
    sha256: Option<String>,
    config: Option<toml::Value>,
    js: Option<String>,
    libraries: Option<BTreeMap<String, String>>,
    shape: Option<String>,
    #[serde(flatten)]
    limits: RawPluginLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

/// What a sync may refer to.
pub struct Known<'a> {
    pub models: &'a BTreeMap<String, Model>,
    pub destinations: &'a BTreeMap<String, Destination>,
    pub limits: &'a Limits,
}

pub fn resolve(
    raw: BTreeMap<String, RawSync>,
    known: &Known,
    r: &Resolver,
) -> Result<BTreeMap<String, Sync>, Invalid> {
    raw.into_iter()
        .map(|(name, s)| Ok((name.clone(), sync(name, s, known, r)?)))
        .collect()
}

fn sync(name: String, s: RawSync, known: &Known, r: &Resolver) -> Result<Sync, Invalid> {
    let key = format!("syncs.{name}");
    if !known.models.contains_key(&s.model) {
        return Err(Invalid::new(
            format!("{key}.model"),
            no_such("model", &s.model, known.models.keys()),
        ));
    }
    if !known.destinations.contains_key(&s.destination) {
        return Err(Invalid::new(
            format!("{key}.destination"),
            no_such("destination", &s.destination, known.destinations.keys()),
        ));
    }
    let on = match s.on {
        None => vec![Op::Added, Op::Updated, Op::Deleted],
        Some(list) => changes(&key, &list)?,
    };
    let transforms = s
        .transforms
        .into_iter()
        .enumerate()
        .map(|(i, t)| transform(&key, &name, &s.destination, i, t, r))
        .collect::<Result<_, _>>()?;
    let mapping = match s.mapping {
        Some(table) => Some(Mapping::parse(&table).map_err(|e| {
            Invalid::new(
                format!("{key}.mapping.{}", mapping::key(&e.target)),
                e.message,
            )
        })?),
        None => None,
    };
    let retry = retry(&s.retry);
    let schedule = match s.schedule {
        None => Schedule::Manual,
        Some(schedule) => Schedule::parse(
            &format!("{key}.schedule"),
            schedule,
            Duration::from_secs(known.limits.shortest_interval_secs),
        )
        .map_err(|e| Invalid::Worded(e.to_string()))?,
    };
    Ok(Sync {
        name,
        model: s.model,
        destination: s.destination,
        action: s.action,
        on,
        transforms,
        mapping,
        retry,
        schedule,
        enabled: s.enabled.unwrap_or(true),
        alert_on: s
            .alert_on
            .map(|on| statuses(&format!("{key}.alert_on"), &on))
            .transpose()?,
    })
}

/// The changes `on = […]` names.
fn changes(key: &str, names: &[String]) -> Result<Vec<Op>, Invalid> {
    names
        .iter()
        .map(|o| {
            Op::parse(o).ok_or_else(|| {
                Invalid::new(
                    format!("{key}.on"),
                    format!("unknown change `{o}`; use any of added, updated, deleted"),
                )
            })
        })
        .collect()
}

/// Transform `i` of the sync `name` (to `destination`) at `key`.
fn transform(
    key: &str,
    name: &str,
    destination: &str,
    i: usize,
    t: RawTransform,
    r: &Resolver,
) -> Result<Transform, Invalid> {
    let tkey = format!("{key}.transforms[{i}]");
    let limits = plugin_limits(&tkey, &t.limits)?;
    let (plugin, config) = match (t.plugin, t.js) {
        (Some(plugin), None) => {
            none_set(
                &tkey,
                [
                    ("libraries", t.libraries.is_some()),
                    ("shape", t.shape.is_some()),
                ],
                "only a JavaScript transform (`js = \"FILE.js\"`) takes it",
            )?;
            let config = t.config.unwrap_or_else(empty_table);
            (
                plugin_ref(
                    r,
                    &tkey,
                    format!("transform {} ({plugin}) of sync `{name}`", i + 1),
                    &plugin,
                    t.sha256,
                )?,
                r.json_with_secrets(&format!("{tkey}.config"), config)?,
            )
        }
        (None, Some(file)) => {
            none_set(
                &tkey,
                [
                    ("config", t.config.is_some()),
                    ("sha256", t.sha256.is_some()),
                ],
                "a JavaScript transform takes no `config` or `sha256`; its settings live in the script",
            )?;
            let context = js::Context {
                sync: name,
                destination,
                memory_bytes: limits.memory_bytes,
            };
            let config = js_config(&tkey, &file, t.libraries, t.shape, &context, r)?;
            let plugin = js::plugin_ref(format!("transform {} ({file}) of sync `{name}`", i + 1));
            (plugin, config)
        }
        (Some(_), Some(_)) => {
            return Err(Invalid::new(
                tkey,
                "set `plugin` or `js`, not both: a transform is a WebAssembly plugin or a JavaScript file",
            ));
        }
        (None, None) => {
            return Err(Invalid::new(
                tkey,
                "name what transforms: `plugin = \"ebb:NAME\"` (or a .wasm file) or `js = \"FILE.js\"`",
            ));
        }
    };
    Ok(Transform {
        plugin,
        config,
        limits,
    })
}

/// Fails at the first of `fields` (name, whether set) that is set.
fn none_set(tkey: &str, fields: [(&str, bool); 2], why: &str) -> Result<(), Invalid> {
    match fields.into_iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(Invalid::new(format!("{tkey}.{field}"), why)),
        None => Ok(()),
    }
}

/// `ebb:js`'s config for the script `file` and its libraries, read now.
fn js_config(
    tkey: &str,
    file: &str,
    libraries: Option<BTreeMap<String, String>>,
    shape: Option<String>,
    context: &js::Context,
    r: &Resolver,
) -> Result<Value, Invalid> {
    let read = |key: String, file: &str| {
        let path = r.existing_file(&key, file)?;
        js::Source::read(file, &path).map_err(|e| Invalid::new(key, e))
    };
    let main = read(format!("{tkey}.js"), file)?;
    let libraries = libraries
        .unwrap_or_default()
        .into_iter()
        .map(|(name, file)| {
            Ok((
                name.clone(),
                read(format!("{tkey}.libraries.{name}"), &file)?,
            ))
        })
        .collect::<Result<Vec<_>, Invalid>>()?;
    let shape = match shape {
        None => js::Shape::default(),
        Some(name) => js::Shape::parse(&name).ok_or_else(|| {
            Invalid::new(
                format!("{tkey}.shape"),
                format!("unknown shape `{name}`; use \"ebb\" (Ebb's envelope) or \"rudderstack\" (an identify call)"),
            )
        })?,
    };
    Ok(js::config(&main, &libraries, shape, context))
}

fn retry(raw: &RawRetry) -> Retry {
    let defaults = Retry::default();
    Retry {
        max_attempts: raw.max_attempts.unwrap_or(defaults.max_attempts).max(1),
        initial_backoff: raw
            .initial_backoff_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.initial_backoff),
        max_backoff: raw
            .max_backoff_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.max_backoff),
    }
}
