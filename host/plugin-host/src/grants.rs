//! What the operator grants a destination: the hosts it may reach, a
//! folder it may write, its HTTP timeouts and its per-call limits. The
//! engine turns these into the sandbox of each call; nothing outside them
//! is reachable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::budget::Rate;
use crate::limits::Limits;

/// What the operator grants a destination.
#[derive(Debug, Clone)]
pub struct Grants {
    /// `host` (ports 80 and 443) or `host:port`; nothing else is reachable.
    pub allow_hosts: Vec<String>,
    /// A folder the plugin may read and write, seen by the guest as `/out`.
    pub dir: Option<PathBuf>,
    pub http_connect_timeout: Duration,
    pub http_first_byte_timeout: Duration,
    pub http_between_bytes_timeout: Duration,
    /// Bytes of one HTTP response the plugin may read; reading past it
    /// fails.
    pub http_response_bytes: u64,
    pub limits: Limits,
    /// The destination's name, under which every handle of it shares one
    /// rate budget, and the rate the operator set; `None` for a handle of
    /// its own, with no budget (`ebb plugin test`).
    pub budget: Option<BudgetFor>,
    /// Sends every allowed request to this local mock instead (`ebb plugin
    /// test`); see [`ORIGIN_HEADER`](crate::ORIGIN_HEADER).
    pub intercept: Option<SocketAddr>,
}

/// Which destination's budget a handle draws from.
#[derive(Debug, Clone)]
pub struct BudgetFor {
    pub destination: String,
    /// The operator's rate; `None` takes the plugin's declared one.
    pub rate: Option<Rate>,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            allow_hosts: Vec::new(),
            dir: None,
            http_connect_timeout: Duration::from_secs(10),
            http_first_byte_timeout: Duration::from_secs(30),
            http_between_bytes_timeout: Duration::from_secs(30),
            http_response_bytes: 16 << 20,
            limits: Limits::default(),
            budget: None,
            intercept: None,
        }
    }
}
