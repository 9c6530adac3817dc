//! How reading a warehouse fails, in the words `ebb check` uses.

/// What went wrong, in the words `ebb check` uses, so an operator knows at
/// a glance whether to look at the network, the certificates, the
/// credentials, the grants, the SQL or the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// DNS did not resolve, or nothing answered at the address.
    Connect,
    Tls,
    /// The SSH server's host key is not the one the config pins.
    HostKey,
    Authentication,
    /// Connected and authenticated, but not allowed to read what the query reads.
    Permission,
    /// The database refused or failed the SQL itself.
    Sql,
    Timeout,
    /// Anything else (a protocol error, a bad value).
    Other,
}

impl Problem {
    pub fn label(self) -> &'static str {
        match self {
            Problem::Connect => "connection failed",
            Problem::Tls => "TLS failed",
            Problem::HostKey => "SSH host key mismatch",
            Problem::Authentication => "authentication failed",
            Problem::Permission => "permission denied",
            Problem::Sql => "SQL error",
            Problem::Timeout => "timed out",
            Problem::Other => "failed",
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{source_name}`: {problem}: {message}")]
    Connect {
        source_name: String,
        problem: Problem,
        message: String,
    },
    #[error("model `{model}`: {problem}: {message}")]
    Query {
        model: String,
        problem: Problem,
        message: String,
    },
    #[error(
        "model `{model}`: column `{column}` has type {type_name}, which Ebb cannot read yet; cast it to text in the query"
    )]
    UnsupportedType {
        model: String,
        column: String,
        type_name: String,
    },
}
