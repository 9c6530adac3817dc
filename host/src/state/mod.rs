//! Where Ebb remembers what it delivered: per sync, the snapshot of every
//! acknowledged record (key, fingerprint, record), the runs, and the rows
//! still owed with their errors. Only acknowledged records enter the
//! snapshot, which is what makes "nothing is lost" hold across failures: the
//! next run re-derives everything that was not acknowledged.

mod sqlite;

use serde::Serialize;

use crate::event::{Op, Record};

pub use sqlite::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

    fn parse(s: &str) -> Status {
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
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

/// How a change moves into the snapshot once acknowledged.
#[derive(Debug, Clone)]
pub enum Commit {
    Upsert {
        key: String,
        key_hash: u128,
        fingerprint: u128,
        record: Record,
    },
    Delete {
        key: String,
        key_hash: u128,
    },
}

/// A row the destination did not take (or that failed before it).
#[derive(Debug, Clone)]
pub struct RowError {
    pub key: String,
    pub op: Op,
    pub message: String,
    /// The event envelope that was attempted, as JSON.
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub run_id: i64,
    pub status: Status,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub counts: Counts,
    pub timings_ms: serde_json::Value,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OwedRow {
    pub key: String,
    pub op: String,
    pub run_id: i64,
    pub attempts: i64,
    pub error: String,
    pub payload: serde_json::Value,
}

/// How a run ended, as recorded.
#[derive(Clone, Copy)]
pub struct RunEnd<'a> {
    pub status: Status,
    pub counts: &'a Counts,
    pub timings_ms: &'a serde_json::Value,
    pub error: Option<&'a str>,
    /// The cursor to keep if the run succeeded.
    pub cursor: Option<&'a crate::source::Param>,
}

pub enum Claim {
    /// The run may go ahead under this id.
    Started(i64),
    /// Another run of the sync is in progress; a skipped run was recorded.
    Busy { running: i64, skipped: i64 },
}
