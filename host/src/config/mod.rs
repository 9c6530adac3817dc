//! `ebb.toml`: parsing, `${env:…}` secrets, cross-reference checks.
//!
//! Everything that can be decided from the file alone is decided here, before
//! any connection is opened or the state store is touched, so a bad config
//! never leaves traces. Every error names the file and the key path, and says
//! what to do. Secrets are substituted into values only after parsing, so the
//! parser's messages never contain them.
//!
//! The config is the crate's bottom layer: it parses and checks, and knows
//! nothing of the runs, sources, state or API that read it. Each section
//! is read and checked in a file of its own; this one puts them together
//! in the order their references need (models name sources, syncs name
//! models and destinations).

mod alerts;
mod allow_dirs;
mod destinations;
mod error;
mod models;
mod plugins;
mod raw;
mod resolver;
mod secrets;
mod server;
mod sources;
mod state;
mod syncs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use alerts::Alerts;
pub use destinations::Destination;
pub use error::{ConfigError, Lazy, Unset, did_you_mean};
pub use models::{DiffIn, Model};
pub use secrets::Secret;
pub use server::Server;
pub use sources::{
    BigQuery, Databricks, ServiceAccount, Settings, Snowflake, SnowflakeAuth, Source, SourceKind,
    Ssh, ssh,
};
pub use syncs::{Retry, Sync, Transform};

use crate::limits::Limits;
use error::{Invalid, no_such};
use raw::RawConfig;
use resolver::Resolver;
use sources::SourceTables;

/// A loaded, checked config. Relative paths are already resolved against the
/// config file's directory and secrets are substituted.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub state_url: String,
    /// How many of a sync's latest runs keep the events they delivered,
    /// for `ebb replay` (0 keeps none).
    pub keep_runs: u32,
    /// How long a run's heartbeat may be silent before another process
    /// takes the run to be dead and its sync over.
    pub lease: Duration,
    pub cache_dir: PathBuf,
    pub limits: Limits,
    pub server: Server,
    /// Where alerts about runs that did not succeed go, if anywhere.
    pub alerts: Option<Alerts>,
    pub sources: BTreeMap<String, Source>,
    pub models: BTreeMap<String, Model>,
    pub destinations: BTreeMap<String, Destination>,
    pub syncs: BTreeMap<String, Sync>,
}

impl Config {
    /// Reads and checks `path`. Touches nothing but the file system reads
    /// needed to check that referenced files exist.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let err = |message: String| ConfigError {
            file: file.clone(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(format!(
                "cannot read the config file: {e}; pass --config PATH or create ebb.toml"
            ))
        })?;
        let (raw, tables) = raw::parse(&text).map_err(|e| {
            let hint = error::unknown_field_hint(e.message())
                .map(|hint| format!("\n{hint}"))
                .unwrap_or_default();
            err(format!("{}{hint}", e.to_string().trim_end()))
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let resolver = Resolver {
            dir,
            env: &|name| std::env::var(name).ok(),
        };
        resolve(raw, &tables, path, &resolver).map_err(|e| err(e.to_string()))
    }

    pub fn sync(&self, name: &str) -> Result<&Sync, ConfigError> {
        self.syncs.get(name).ok_or_else(|| ConfigError {
            file: self.file.display().to_string(),
            message: no_such("sync", name, self.syncs.keys()),
        })
    }

    pub fn model(&self, name: &str) -> Result<&Model, ConfigError> {
        self.models.get(name).ok_or_else(|| ConfigError {
            file: self.file.display().to_string(),
            message: no_such("model", name, self.models.keys()),
        })
    }
}

/// Checks the sections in the order their references need.
fn resolve(
    raw: RawConfig,
    tables: &SourceTables,
    path: &Path,
    r: &Resolver,
) -> Result<Config, Invalid> {
    let state = state::resolve(raw.state, r)?;
    let cache_dir = plugins::cache_dir(&raw.plugins, r);
    raw.limits
        .check()
        .map_err(|e| Invalid::new("limits", e.to_string()))?;
    let sources = sources::resolve(raw.sources, tables, r)?;
    let models = models::resolve(raw.models, &sources, &raw.limits, r)?;
    let destinations = destinations::resolve(raw.destinations, r)?;
    let known = syncs::Known {
        models: &models,
        destinations: &destinations,
        limits: &raw.limits,
    };
    let syncs = syncs::resolve(raw.syncs, &known, r)?;
    let guarded = allow_dirs::guarded(path, &state.url, &cache_dir, &destinations, &syncs);
    allow_dirs::check(&destinations, &guarded, &cache_dir)?;
    Ok(Config {
        file: path.to_path_buf(),
        state_url: state.url,
        keep_runs: state.keep_runs,
        lease: state.lease,
        cache_dir,
        alerts: raw.alerts.map(|a| alerts::resolve(a, r)).transpose()?,
        server: server::resolve(raw.server, r)?,
        limits: raw.limits,
        sources,
        models,
        destinations,
        syncs,
    })
}
