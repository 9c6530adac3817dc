//! Typed plugin errors. The kind tells the host what to do next (retry,
//! wait, stop and ask the operator), so a plugin never has to encode that in
//! message text.

use crate::bindings::destination::ebb::plugin::types as wit;
use std::fmt;

/// What went wrong, as the host understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The plugin's config is wrong; the operator must fix it.
    InvalidConfig,
    /// Credentials were refused.
    Auth,
    /// The remote asked us to slow down; see [`Error::retry_after_ms`].
    RateLimited,
    /// May succeed if retried (5xx, timeouts, resets).
    Transient,
    /// The remote refused the record itself; retrying will not help.
    Rejected,
    /// A bug or unexpected state inside the plugin.
    Internal,
}

/// A plugin error: a kind, a message for the operator and an optional hint
/// for when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }

    pub fn rate_limited(message: impl Into<String>, retry_after_ms: Option<u64>) -> Self {
        Self::new(ErrorKind::RateLimited, message).with_retry_after_ms(retry_after_ms)
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Rejected, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Sets how long the host should wait before retrying.
    pub fn with_retry_after_ms(mut self, retry_after_ms: Option<u64>) -> Self {
        self.retry_after_ms = retry_after_ms;
        self
    }

    /// Whether trying the same records again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::RateLimited | ErrorKind::Transient)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for wit::Error {
    fn from(error: Error) -> Self {
        let kind = match error.kind {
            ErrorKind::InvalidConfig => wit::ErrorKind::InvalidConfig,
            ErrorKind::Auth => wit::ErrorKind::Auth,
            ErrorKind::RateLimited => wit::ErrorKind::RateLimited,
            ErrorKind::Transient => wit::ErrorKind::Transient,
            ErrorKind::Rejected => wit::ErrorKind::Rejected,
            ErrorKind::Internal => wit::ErrorKind::Internal,
        };
        wit::Error {
            kind,
            message: error.message,
            retry_after_ms: error.retry_after_ms,
        }
    }
}
