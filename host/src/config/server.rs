//! `[server]`: what `ebb serve` listens on, the token its API wants, how
//! many runs it runs at once and where people reach its dashboard.

use serde::Deserialize;

use super::error::{Invalid, Lazy, lazy};
use super::resolver::Resolver;

/// `[server]` as checked.
#[derive(Clone)]
pub struct Server {
    pub listen: String,
    /// Bearer token for the HTTP API; `ebb serve` refuses to start without
    /// one. Only `serve` needs its secret set.
    pub api_token: Lazy<Option<String>>,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    listen: Option<String>,
    api_token: Option<String>,
    max_runs: Option<usize>,
    public_url: Option<String>,
}

pub fn resolve(raw: RawServer, r: &Resolver) -> Result<Server, Invalid> {
    let listen = raw.listen.unwrap_or_else(|| "127.0.0.1:7878".to_owned());
    Ok(Server {
        public_url: raw.public_url.unwrap_or_else(|| format!("http://{listen}")),
        listen,
        api_token: lazy(r.secret("server", "api_token", raw.api_token))?,
        max_runs: match raw.max_runs {
            None => 8,
            Some(0) => return Err(Invalid::new("server.max_runs", "must be at least 1")),
            Some(n) => n,
        },
    })
}
