//! `ebb.toml`: parsing, `${env:…}` secrets, cross-reference checks.
//!
//! Everything that can be decided from the file alone is decided here, before
//! any connection is opened or the state store is touched, so a bad config
//! never leaves traces. Every error names the file and the key path, and says
//! what to do. Secrets are substituted into values only after parsing, so the
//! parser's messages never contain them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::event::Op;
use crate::limits::Limits;
use crate::plugin::{self, PluginLocation, PluginRef};
use crate::schedule::{RawSchedule, Schedule};
use crate::status::Status;

mod api;
pub use api::{ApiSource, BigQuery, Databricks, Secret, ServiceAccount, Snowflake, SnowflakeAuth};

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

/// Runs whose delivered events are kept for `ebb replay` unless
/// `[state] keep_runs` says otherwise.
const DEFAULT_KEEP_RUNS: u32 = 10;

/// How long a run's heartbeat may be silent before the run is taken to be
/// dead, unless `[state] lease_secs` says otherwise.
const DEFAULT_LEASE_SECS: u64 = 30;

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
    pub alerts: Option<crate::alert::Alerts>,
    pub sources: BTreeMap<String, Source>,
    pub models: BTreeMap<String, Model>,
    pub destinations: BTreeMap<String, Destination>,
    pub syncs: BTreeMap<String, Sync>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Sqlite,
    Postgres,
    /// Amazon Redshift, read through the Postgres protocol.
    Redshift,
    /// MySQL or MariaDB.
    Mysql,
    Snowflake,
    Bigquery,
    Databricks,
}

impl SourceKind {
    /// The port a database kind listens on when its URL names none.
    pub fn default_port(self) -> Option<u16> {
        match self {
            SourceKind::Postgres => Some(5432),
            SourceKind::Redshift => Some(5439),
            SourceKind::Mysql => Some(3306),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    pub url: String,
    /// SQLite only: a script that creates the database when its file is missing.
    pub init_sql: Option<PathBuf>,
    pub statement_timeout: Duration,
    /// How long connecting (DNS, TCP, TLS, authentication) may take.
    pub connect_timeout: Duration,
    /// Snowflake, BigQuery and Databricks: what their SQL APIs need
    /// (`url` is then the API's base URL).
    pub api: Option<ApiSource>,
    /// Reach the database through this SSH server (`crate::source::ssh`).
    pub ssh: Option<Ssh>,
    /// Postgres: the schema Ebb owns for models with `diff = "warehouse"`.
    pub diff_schema: String,
}

/// An SSH server (a bastion) that forwards to the database.
#[derive(Clone)]
pub struct Ssh {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// OpenSSH or PEM private key text.
    pub private_key: String,
    pub private_key_passphrase: Option<String>,
    /// The server's host key fingerprint, `SHA256:` and unpadded base64.
    pub host_key: String,
}

/// Keeps the key and its passphrase out of debug output and logs.
impl std::fmt::Debug for Ssh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ssh")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("host_key", &self.host_key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub source: String,
    pub primary_key: String,
    /// A column whose highest delivered value is bound as `{{cursor}}`.
    pub cursor: Option<String>,
    pub query: String,
    pub diff: DiffIn,
}

/// Where a model's changes are found (see docs/diff.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffIn {
    /// Ebb reads every row and compares it with the state store's snapshot.
    #[default]
    Engine,
    /// The warehouse compares the model with a snapshot in its own `_ebb`
    /// schema and only changed rows are read (Postgres sources).
    Warehouse,
}

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

#[derive(Debug, Clone)]
pub struct Transform {
    pub plugin: PluginRef,
    pub config: Value,
    pub limits: plugin::Limits,
}

#[derive(Debug, Clone)]
pub struct Sync {
    pub name: String,
    pub model: String,
    pub destination: String,
    pub action: Option<String>,
    pub on: Vec<Op>,
    pub transforms: Vec<Transform>,
    pub mapping: Option<crate::mapping::Mapping>,
    pub retry: Retry,
    /// When `ebb serve` runs it.
    pub schedule: Schedule,
    /// `enabled = false` keeps it from running at all, scheduled or asked.
    pub enabled: bool,
    /// Run statuses that raise an alert for this sync, if not `[alerts] on`.
    pub alert_on: Option<Vec<Status>>,
}

/// `[server]`: what `ebb serve` listens on and the token its API wants.
#[derive(Clone)]
pub struct Server {
    pub listen: String,
    /// Bearer token for the HTTP API; `ebb serve` refuses to start without one.
    pub api_token: Option<String>,
    /// The most runs this process runs at once; beyond it, due slots wait
    /// for another worker or a later tick.
    pub max_runs: usize,
    /// Where people reach the dashboard; alerts link to runs under it.
    pub public_url: String,
}

/// Keeps the token out of debug output and logs.
impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
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

// ---- the file as written ------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    server: RawServer,
    alerts: Option<RawAlerts>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    models: BTreeMap<String, RawModel>,
    #[serde(default)]
    destinations: BTreeMap<String, RawDestination>,
    #[serde(default)]
    syncs: BTreeMap<String, RawSync>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawState {
    url: Option<String>,
    keep_runs: Option<u32>,
    lease_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    api_token: Option<String>,
    max_runs: Option<usize>,
    public_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    webhook: String,
    on: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    cache_dir: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: SourceKind,
    url: Option<String>,
    init_sql: Option<String>,
    statement_timeout_secs: Option<u64>,
    connect_timeout_secs: Option<u64>,
    // Warehouses read over HTTP SQL APIs; see config/api.rs.
    account: Option<String>,
    user: Option<String>,
    private_key: Option<String>,
    token: Option<String>,
    warehouse: Option<String>,
    database: Option<String>,
    schema: Option<String>,
    role: Option<String>,
    project: Option<String>,
    credentials: Option<String>,
    location: Option<String>,
    warehouse_id: Option<String>,
    catalog: Option<String>,
    ssh: Option<RawSsh>,
    diff_schema: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    host: String,
    #[serde(default = "ssh_port")]
    port: u16,
    user: String,
    private_key: String,
    private_key_passphrase: Option<String>,
    host_key: String,
}

fn ssh_port() -> u16 {
    22
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    source: String,
    primary_key: String,
    cursor: Option<String>,
    query: Option<String>,
    query_file: Option<String>,
    #[serde(default)]
    diff: DiffIn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginLimits {
    timeout_secs: Option<f64>,
    memory_mb: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransform {
    plugin: String,
    sha256: Option<String>,
    #[serde(default = "empty_table")]
    config: toml::Value,
    #[serde(flatten)]
    limits: RawPluginLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

fn empty_table() -> toml::Value {
    toml::Value::Table(toml::Table::new())
}

// ---- loading -------------------------------------------------------------

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
        let raw: RawConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Resolver {
            dir,
            env: &|name| std::env::var(name).ok(),
        }
        .resolve(raw, path)
        .map_err(err)
    }

    pub fn sync(&self, name: &str) -> Result<&Sync, ConfigError> {
        self.syncs.get(name).ok_or_else(|| ConfigError {
            file: self.file.display().to_string(),
            message: format!(
                "no sync named `{name}`; defined syncs: {}",
                list_or_none(self.syncs.keys())
            ),
        })
    }

    pub fn model(&self, name: &str) -> Result<&Model, ConfigError> {
        self.models.get(name).ok_or_else(|| ConfigError {
            file: self.file.display().to_string(),
            message: format!(
                "no model named `{name}`; defined models: {}",
                list_or_none(self.models.keys())
            ),
        })
    }
}

/// Run statuses named in `alert_on` or `[alerts] on`.
fn statuses(key: &str, names: &[String]) -> Result<Vec<Status>, String> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "failed" => Ok(Status::Failed),
            "partial" => Ok(Status::Partial),
            "success" => Ok(Status::Success),
            "skipped" => Ok(Status::Skipped),
            _ => Err(format!(
                "{key}: `{name}` is not a run status; use any of failed, partial, success, skipped"
            )),
        })
        .collect()
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<_> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

struct Resolver<'a> {
    dir: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Resolver<'_> {
    fn resolve(&self, raw: RawConfig, path: &Path) -> Result<Config, String> {
        let state_url = match raw.state.url {
            Some(url) => self.sqlite_url(&self.secrets("state.url", &url)?),
            None => self.sqlite_url("sqlite://.ebb/state.db"),
        };
        let cache_dir = self.path(raw.plugins.cache_dir.as_deref().unwrap_or(".ebb/cache"));
        let lease = match raw.state.lease_secs.unwrap_or(DEFAULT_LEASE_SECS) {
            secs @ 3.. => Duration::from_secs(secs),
            secs => {
                return Err(format!(
                    "state.lease_secs: {secs} is too short for heartbeats to arrive in time; use at least 3"
                ));
            }
        };
        raw.limits.check().map_err(|e| format!("limits: {e}"))?;

        let mut sources = BTreeMap::new();
        for (name, s) in raw.sources {
            let key = format!("sources.{name}");
            let secret = |field: &str, v: Option<String>| {
                v.map(|v| self.secrets(&format!("{key}.{field}"), &v))
                    .transpose()
            };
            let raw_api = api::RawApi {
                account: secret("account", s.account)?,
                user: secret("user", s.user)?,
                private_key: secret("private_key", s.private_key)?,
                token: secret("token", s.token)?,
                warehouse: secret("warehouse", s.warehouse)?,
                database: secret("database", s.database)?,
                schema: secret("schema", s.schema)?,
                role: secret("role", s.role)?,
                project: secret("project", s.project)?,
                credentials: secret("credentials", s.credentials)?,
                location: secret("location", s.location)?,
                warehouse_id: secret("warehouse_id", s.warehouse_id)?,
                catalog: secret("catalog", s.catalog)?,
            };
            let (url, api) = api::resolve(&key, s.kind, secret("url", s.url)?, raw_api)?;
            let url = match s.kind {
                SourceKind::Sqlite => self.sqlite_url(&url),
                _ => url,
            };
            let init_sql = match (s.kind, s.init_sql) {
                (_, None) => None,
                (SourceKind::Sqlite, Some(f)) => {
                    Some(self.existing_file(&format!("{key}.init_sql"), &f)?)
                }
                (_, Some(_)) => {
                    return Err(format!(
                        "{key}.init_sql: only SQLite sources can be created from a script; remove it"
                    ));
                }
            };
            let ssh = match s.ssh {
                Some(raw) => Some(self.ssh(&key, s.kind, &url, raw)?),
                None => None,
            };
            let diff_schema = match (s.kind, s.diff_schema) {
                (_, None) => "_ebb".to_owned(),
                (SourceKind::Postgres, Some(schema)) if !schema.trim().is_empty() => schema,
                (SourceKind::Postgres, Some(_)) => {
                    return Err(format!(
                        "{key}.diff_schema: must name a schema; remove it to use `_ebb`"
                    ));
                }
                (_, Some(_)) => {
                    return Err(format!(
                        "{key}.diff_schema: only Postgres sources diff in the warehouse; remove it"
                    ));
                }
            };
            let statement_timeout = Duration::from_secs(s.statement_timeout_secs.unwrap_or(600));
            let connect_timeout = Duration::from_secs(s.connect_timeout_secs.unwrap_or(10));
            sources.insert(
                name.clone(),
                Source {
                    name,
                    kind: s.kind,
                    url,
                    init_sql,
                    statement_timeout,
                    connect_timeout,
                    api,
                    ssh,
                    diff_schema,
                },
            );
        }

        let mut models = BTreeMap::new();
        for (name, m) in raw.models {
            let key = format!("models.{name}");
            if !sources.contains_key(&m.source) {
                return Err(format!(
                    "{key}.source: no source named `{}`; defined sources: {}",
                    m.source,
                    list_or_none(sources.keys())
                ));
            }
            let kind = sources[&m.source].kind;
            if m.diff == DiffIn::Warehouse && kind != SourceKind::Postgres {
                return Err(format!(
                    "{key}.diff: \"warehouse\" needs a Postgres source, and `{}` is of kind {}; remove the line to diff in Ebb",
                    m.source,
                    format!("{kind:?}").to_lowercase()
                ));
            }
            let query = match (m.query, m.query_file) {
                (Some(q), None) => q,
                (None, Some(f)) => {
                    let p = self.existing_file(&format!("{key}.query_file"), &f)?;
                    std::fs::read_to_string(&p).map_err(|e| {
                        format!("{key}.query_file: cannot read {}: {e}", p.display())
                    })?
                }
                _ => {
                    return Err(format!(
                        "{key}: set exactly one of `query` and `query_file`"
                    ));
                }
            };
            raw.limits
                .check_query(&query)
                .map_err(|e| format!("{key}.query: {e}"))?;
            if m.primary_key.trim().is_empty() {
                return Err(format!(
                    "{key}.primary_key: must name a column of the query"
                ));
            }
            let uses_cursor = crate::extract::uses_template(&query, "cursor");
            match (&m.cursor, uses_cursor) {
                (Some(c), false) => {
                    return Err(format!(
                        "{key}.cursor: the query never uses `{{{{cursor}}}}`, so `{c}` would not limit what is read; add e.g. `WHERE {{{{cursor}}}} IS NULL OR {c} > {{{{cursor}}}}`"
                    ));
                }
                (None, true) => {
                    return Err(format!(
                        "{key}: the query uses `{{{{cursor}}}}`; set `cursor` to the column it tracks (e.g. cursor = \"updated_at\")"
                    ));
                }
                _ => {}
            }
            models.insert(
                name.clone(),
                Model {
                    name,
                    source: m.source,
                    primary_key: m.primary_key,
                    cursor: m.cursor,
                    query,
                    diff: m.diff,
                },
            );
        }

        let mut destinations = BTreeMap::new();
        for (name, d) in raw.destinations {
            let key = format!("destinations.{name}");
            let plugin = self.plugin_ref(
                &key,
                format!("destination `{name}` ({})", d.plugin),
                &d.plugin,
                d.sha256,
            )?;
            let allow_dir = match d.allow_dir {
                Some(dir) => {
                    let p = self.path(&dir);
                    std::fs::create_dir_all(&p).map_err(|e| {
                        format!("{key}.allow_dir: cannot create {}: {e}", p.display())
                    })?;
                    Some(p)
                }
                None => None,
            };
            let config = self.json_with_secrets(&format!("{key}.config"), d.config)?;
            if d.max_in_flight == Some(0) || d.batch_size == Some(0) {
                return Err(format!(
                    "{key}: max_in_flight and batch_size must be at least 1"
                ));
            }
            destinations.insert(
                name.clone(),
                Destination {
                    name,
                    plugin,
                    allow_hosts: d.allow_hosts,
                    allow_dir,
                    config,
                    max_in_flight: d.max_in_flight.unwrap_or(4),
                    batch_size: d.batch_size,
                    plugin_limits: plugin_limits(&key, &d.limits)?,
                },
            );
        }

        let mut syncs = BTreeMap::new();
        for (name, s) in raw.syncs {
            let key = format!("syncs.{name}");
            if !models.contains_key(&s.model) {
                return Err(format!(
                    "{key}.model: no model named `{}`; defined models: {}",
                    s.model,
                    list_or_none(models.keys())
                ));
            }
            if !destinations.contains_key(&s.destination) {
                return Err(format!(
                    "{key}.destination: no destination named `{}`; defined destinations: {}",
                    s.destination,
                    list_or_none(destinations.keys())
                ));
            }
            let on = match s.on {
                None => vec![Op::Added, Op::Updated, Op::Deleted],
                Some(list) => list
                    .iter()
                    .map(|o| {
                        Op::parse(o).ok_or_else(|| {
                            format!(
                                "{key}.on: unknown change `{o}`; use any of added, updated, deleted"
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            let mut transforms = Vec::new();
            for (i, t) in s.transforms.into_iter().enumerate() {
                let tkey = format!("{key}.transforms[{i}]");
                transforms.push(Transform {
                    plugin: self.plugin_ref(
                        &tkey,
                        format!("transform {} ({}) of sync `{name}`", i + 1, t.plugin),
                        &t.plugin,
                        t.sha256,
                    )?,
                    config: self.json_with_secrets(&format!("{tkey}.config"), t.config)?,
                    limits: plugin_limits(&tkey, &t.limits)?,
                });
            }
            let mapping = match s.mapping {
                Some(table) => Some(
                    crate::mapping::Mapping::parse(&table)
                        .map_err(|e| format!("{key}.mapping: {e}"))?,
                ),
                None => None,
            };
            let defaults = Retry::default();
            let retry = Retry {
                max_attempts: s.retry.max_attempts.unwrap_or(defaults.max_attempts).max(1),
                initial_backoff: s
                    .retry
                    .initial_backoff_ms
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.initial_backoff),
                max_backoff: s
                    .retry
                    .max_backoff_ms
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.max_backoff),
            };
            let schedule = match s.schedule {
                None => Schedule::Manual,
                Some(schedule) => Schedule::parse(
                    &format!("{key}.schedule"),
                    schedule,
                    Duration::from_secs(raw.limits.shortest_interval_secs),
                )?,
            };
            syncs.insert(
                name.clone(),
                Sync {
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
                },
            );
        }

        let listen = raw
            .server
            .listen
            .unwrap_or_else(|| "127.0.0.1:7878".to_owned());
        Ok(Config {
            file: path.to_path_buf(),
            state_url,
            keep_runs: raw.state.keep_runs.unwrap_or(DEFAULT_KEEP_RUNS),
            lease,
            cache_dir,
            limits: raw.limits,
            alerts: raw
                .alerts
                .map(|a| {
                    Ok::<_, String>(crate::alert::Alerts {
                        webhook: self.secrets("alerts.webhook", &a.webhook)?,
                        on: match a.on {
                            Some(on) => statuses("alerts.on", &on)?,
                            None => vec![Status::Failed, Status::Partial],
                        },
                    })
                })
                .transpose()?,
            server: Server {
                public_url: raw
                    .server
                    .public_url
                    .unwrap_or_else(|| format!("http://{listen}")),
                listen,
                api_token: raw
                    .server
                    .api_token
                    .map(|t| self.secrets("server.api_token", &t))
                    .transpose()?,
                max_runs: match raw.server.max_runs {
                    None => 8,
                    Some(0) => return Err("server.max_runs: must be at least 1".into()),
                    Some(n) => n,
                },
            },
            sources,
            models,
            destinations,
            syncs,
        })
    }

    /// `sources.NAME.ssh`: only for kinds that reach their database over
    /// TCP, with a URL whose host and port the tunnel can stand in for.
    fn ssh(&self, source: &str, kind: SourceKind, url: &str, raw: RawSsh) -> Result<Ssh, String> {
        let key = format!("{source}.ssh");
        match kind {
            SourceKind::Sqlite => {
                return Err(format!(
                    "{key}: an SQLite warehouse is a local file, so there is nothing to tunnel to; remove `ssh` (it serves postgres, redshift and mysql sources)"
                ));
            }
            SourceKind::Snowflake | SourceKind::Bigquery | SourceKind::Databricks => {
                return Err(format!(
                    "{key}: this source is reached over its HTTPS API, not a database connection; remove `ssh` (it serves postgres, redshift and mysql sources)"
                ));
            }
            SourceKind::Postgres | SourceKind::Redshift | SourceKind::Mysql => {}
        }
        crate::source::ssh::target(url, kind).map_err(|e| format!("{source}.url: {e}"))?;
        let text = |field: &str, value: &str| self.secrets(&format!("{key}.{field}"), value);
        let ssh = Ssh {
            host: text("host", &raw.host)?,
            port: raw.port,
            user: text("user", &raw.user)?,
            private_key: text("private_key", &raw.private_key)?,
            private_key_passphrase: raw
                .private_key_passphrase
                .map(|p| text("private_key_passphrase", &p))
                .transpose()?,
            host_key: text("host_key", &raw.host_key)?,
        };
        if ssh.port == 0 || ssh.host.trim().is_empty() || ssh.user.trim().is_empty() {
            return Err(format!(
                "{key}: `host`, `user` and a non-zero `port` are required"
            ));
        }
        if !crate::source::ssh::is_fingerprint(&ssh.host_key) {
            return Err(format!(
                "{key}.host_key: `{}` is not a SHA256 host key fingerprint; write it as `ssh-keygen -lf` prints it (SHA256: and 43 base64 characters), e.g. from `ssh-keyscan -p {} {} | ssh-keygen -lf -`",
                ssh.host_key, ssh.port, ssh.host
            ));
        }
        Ok(ssh)
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    fn existing_file(&self, key: &str, p: &str) -> Result<PathBuf, String> {
        let path = self.path(p);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{key}: file {} does not exist; fix the path (relative paths start at the config file's folder)",
                path.display()
            ))
        }
    }

    /// `sqlite://relative.db` is relative to the config file's directory.
    fn sqlite_url(&self, url: &str) -> String {
        match url.strip_prefix("sqlite://") {
            Some(rest) if !rest.starts_with('/') && !rest.starts_with(':') => {
                format!("sqlite://{}", self.path(rest).display())
            }
            _ => url.to_string(),
        }
    }

    fn plugin_ref(
        &self,
        key: &str,
        label: String,
        plugin: &str,
        sha256: Option<String>,
    ) -> Result<PluginRef, String> {
        let location = match plugin.strip_prefix("ebb:") {
            Some(name) => {
                if plugin::builtin::get(name).is_none() {
                    return Err(format!(
                        "{key}.plugin: no built-in plugin `{plugin}`; built-ins are {}",
                        plugin::builtin::NAMES
                            .iter()
                            .map(|n| format!("ebb:{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                PluginLocation::Builtin(name.to_string())
            }
            None => PluginLocation::File(self.existing_file(&format!("{key}.plugin"), plugin)?),
        };
        if let Some(h) = &sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("{key}.sha256: expected 64 hex digits, got `{h}`"));
        }
        Ok(PluginRef {
            label,
            location,
            sha256,
        })
    }

    /// Substitutes `${env:NAME}` in a string value.
    fn secrets(&self, key: &str, s: &str) -> Result<String, String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${env:") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 6..];
            let end = after.find('}').ok_or_else(|| {
                format!("{key}: unterminated `${{env:` reference; write `${{env:NAME}}`")
            })?;
            let name = &after[..end];
            let value = (self.env)(name).ok_or_else(|| {
                format!(
                    "{key}: environment variable `{name}` is not set; export it before running ebb"
                )
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn json_with_secrets(&self, key: &str, v: toml::Value) -> Result<Value, String> {
        Ok(match v {
            toml::Value::String(s) => Value::String(self.secrets(key, &s)?),
            toml::Value::Integer(i) => Value::from(i),
            toml::Value::Float(f) => serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| format!("{key}: {f} cannot be represented in JSON"))?,
            toml::Value::Boolean(b) => Value::Bool(b),
            toml::Value::Datetime(d) => Value::String(d.to_string()),
            toml::Value::Array(a) => Value::Array(
                a.into_iter()
                    .enumerate()
                    .map(|(i, v)| self.json_with_secrets(&format!("{key}[{i}]"), v))
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(t) => Value::Object(
                t.into_iter()
                    .map(|(k, v)| {
                        Ok((k.clone(), self.json_with_secrets(&format!("{key}.{k}"), v)?))
                    })
                    .collect::<Result<_, String>>()?,
            ),
        })
    }
}

fn plugin_limits(key: &str, raw: &RawPluginLimits) -> Result<plugin::Limits, String> {
    let mut limits = plugin::Limits::default();
    if let Some(secs) = raw.timeout_secs {
        if !(0.01..=3600.0).contains(&secs) {
            return Err(format!("{key}.timeout_secs: must be between 0.01 and 3600"));
        }
        limits.call_timeout = Duration::from_secs_f64(secs);
    }
    if let Some(mb) = raw.memory_mb {
        if !(1..=256).contains(&mb) {
            return Err(format!("{key}.memory_mb: must be between 1 and 256"));
        }
        limits.memory_bytes = mb << 20;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(env: &dyn Fn(&str) -> Option<String>) -> Resolver<'_> {
        Resolver {
            dir: PathBuf::from("/cfg"),
            env,
        }
    }

    #[test]
    fn secrets_are_substituted_and_missing_ones_named() {
        let env = |n: &str| (n == "TOKEN").then(|| "s3cret".to_string());
        let r = resolver(&env);
        assert_eq!(
            r.secrets("k", "Bearer ${env:TOKEN}!").unwrap(),
            "Bearer s3cret!"
        );
        let e = r
            .secrets("destinations.crm.config.key", "${env:NOPE}")
            .unwrap_err();
        assert!(
            e.contains("destinations.crm.config.key") && e.contains("`NOPE`"),
            "{e}"
        );
        assert!(
            r.secrets("k", "${env:TOKEN")
                .unwrap_err()
                .contains("unterminated")
        );
    }

    #[test]
    fn sqlite_urls_are_relative_to_the_config() {
        let env = |_: &str| None;
        let r = resolver(&env);
        assert_eq!(r.sqlite_url("sqlite://wh.db"), "sqlite:///cfg/wh.db");
        assert_eq!(r.sqlite_url("sqlite:///abs/wh.db"), "sqlite:///abs/wh.db");
        assert_eq!(r.sqlite_url("sqlite::memory:"), "sqlite::memory:");
    }
}
