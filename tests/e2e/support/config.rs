//! Writing `ebb.toml` for a test: one source `wh`, one model `users`, one
//! destination `out` and one sync `users_out`, with the parts a test varies
//! (query, destination, sync options) set by builder methods.

use std::path::{Path, PathBuf};

use super::project::SYNC;
use super::server::Server;
use super::warehouse::Warehouse;

/// The model's default query: every user, without the `pairs` column.
pub const USERS_QUERY: &str = "SELECT id, email, plan FROM users ORDER BY id";

/// The file destination writing one JSON line per event to
/// [`super::project::FILE_OUTPUT`].
pub const FILE_DESTINATION: &str = r#"[destinations.out]
plugin = "ebb:file"
allow_dir = "out"
config = { file = "events.jsonl" }
"#;

/// One precompiled-plugin cache for the whole suite: compiling a component
/// in a debug build takes seconds, loading it milliseconds. The cache writes
/// each artifact under a temporary name and renames it, so parallel tests
/// can share it.
pub fn plugin_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-plugin-cache")
}

/// A `[destinations.out]` block of `ebb:plugin`, granted `host`, with
/// `config` the inside of its inline config table.
pub fn vendor_block(plugin: &str, host: &str, config: &str) -> String {
    format!(
        "[destinations.out]\nplugin = \"ebb:{plugin}\"\nallow_hosts = [\"{host}\"]\nconfig = {{ {config} }}\n"
    )
}

pub struct Config {
    source: String,
    primary_key: String,
    query: String,
    model_lines: Vec<String>,
    destination: String,
    sync_lines: Vec<String>,
}

impl Config {
    /// `users` from `wh` into the file destination, all ops.
    pub fn new(wh: &Warehouse) -> Config {
        Config {
            source: wh.source_toml().to_owned(),
            primary_key: "id".to_owned(),
            query: USERS_QUERY.to_owned(),
            model_lines: wh.model_lines().to_vec(),
            destination: FILE_DESTINATION.to_owned(),
            sync_lines: Vec::new(),
        }
    }

    pub fn query(mut self, query: &str) -> Config {
        self.query = query.to_owned();
        self
    }

    pub fn primary_key(mut self, column: &str) -> Config {
        self.primary_key = column.to_owned();
        self
    }

    /// Adds a `key = value` line to `[sources.wh]`.
    pub fn source_setting(mut self, line: &str) -> Config {
        self.source.push_str(line);
        self.source.push('\n');
        self
    }

    /// Adds a `key = value` line to `[models.users]`.
    pub fn model(mut self, line: &str) -> Config {
        self.model_lines.push(line.to_owned());
        self
    }

    /// Replaces the whole `[destinations.out]` block.
    pub fn destination(mut self, block: &str) -> Config {
        self.destination = block.to_owned();
        self
    }

    /// `ebb:plugin` as `[destinations.out]`, granted `host`, with `config`
    /// the inside of its inline config table.
    pub fn vendor(self, plugin: &str, host: &str, config: &str) -> Config {
        self.destination(&vendor_block(plugin, host, config))
    }

    /// Adds a `key = value` line to `[destinations.out]`.
    pub fn destination_setting(mut self, line: &str) -> Config {
        self.destination.push_str(line);
        self.destination.push('\n');
        self
    }

    /// `ebb:http` posting to `server`, granted `allow_host`, one batch in
    /// flight (so scripted answers hit batches deterministically) of at
    /// most `batch_size` events, each call limited to 3 s.
    pub fn http(self, server: &Server, allow_host: &str, batch_size: usize) -> Config {
        self.http_within(server, allow_host, batch_size, 3)
    }

    /// [`Config::http`] with each call limited to `timeout_secs`, for tests
    /// that hold a request open while they act.
    pub fn http_within(
        self,
        server: &Server,
        allow_host: &str,
        batch_size: usize,
        timeout_secs: u64,
    ) -> Config {
        self.destination(&format!(
            r#"[destinations.out]
plugin = "ebb:http"
allow_hosts = ["{allow_host}"]
max_in_flight = 1
timeout_secs = {timeout_secs}
config = {{ url = "{url}", batch_size = {batch_size} }}
"#,
            url = server.url()
        ))
    }

    /// Adds a `key = value` line to `[syncs.users_out]`.
    pub fn sync(mut self, line: &str) -> Config {
        self.sync_lines.push(line.to_owned());
        self
    }

    pub fn render(&self) -> String {
        format!(
            r#"{source}
[plugins]
cache_dir = '{cache}'

[models.users]
source = "wh"
primary_key = "{pk}"
query = '''{query}'''
{model}

{destination}
[syncs.{SYNC}]
model = "users"
destination = "out"
{sync}
"#,
            source = self.source,
            cache = plugin_cache().display(),
            pk = self.primary_key,
            query = self.query,
            model = self.model_lines.join("\n"),
            destination = self.destination,
            sync = self.sync_lines.join("\n"),
        )
    }
}
