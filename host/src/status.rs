//! How a run ended and what it counted. The run records them, the state
//! store keeps them, and the API, alerts, metrics and the CLI show them, so
//! they belong to none of those.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Success,
    Partial,
    Failed,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Success => "success",
            Status::Partial => "partial",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }

    /// A status as stored; anything unknown reads as failed.
    pub fn parse(s: &str) -> Status {
        match s {
            "running" => Status::Running,
            "success" => Status::Success,
            "partial" => Status::Partial,
            "skipped" => Status::Skipped,
            _ => Status::Failed,
        }
    }
}

/// Per-run counters, stored with the run and shown in summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Counts {
    pub extracted: u64,
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Records handed to the destination (each record once, however often retried).
    pub sent: u64,
    pub ok: u64,
    pub rejected: u64,
    /// Extra attempts after a retryable outcome.
    pub retried: u64,
    /// Dropped by a transform (committed, not sent).
    pub dropped: u64,
    /// Not in the sync's `on` list (committed, not sent).
    pub filtered: u64,
    /// Row errors other than rejections: bad keys, failed transforms, failed batches.
    pub failed: u64,
}
