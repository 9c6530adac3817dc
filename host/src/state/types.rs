//! What the state store takes and gives: the changes a run commits, the
//! rows it owes, its runs as recorded. Both stores speak these types; how
//! they are stored is rows.rs.

use serde::Serialize;

use crate::event::Op;
use crate::param::Param;
use crate::status::{Counts, Status};

/// How a change moves into the snapshot once acknowledged.
#[derive(Debug, Clone)]
pub enum Commit {
    Upsert {
        key: String,
        key_hash: u128,
        fingerprint: u128,
        /// The record as JSON, as the diff fingerprinted it.
        json: String,
    },
    Delete {
        key: String,
        key_hash: u128,
    },
    /// The key is no longer owed; its snapshot is kept in the warehouse
    /// (`diff = "warehouse"`), not here.
    Settle {
        key: String,
    },
}

/// A record as the snapshot holds it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub fingerprint: u128,
    /// The record as JSON.
    pub json: String,
}

/// A row the destination did not take (or that failed before it).
#[derive(Debug, Clone)]
pub struct RowError {
    pub key: String,
    pub op: Op,
    pub message: String,
    /// The event envelope that was attempted, as JSON.
    pub payload: serde_json::Value,
    /// What the snapshot takes if the operator drops the row (`ebb errors
    /// --drop`), so that it is not sent again unless it changes: the record
    /// the attempt was derived from. `None` for a deletion (dropping it
    /// forgets the key) and for rows that never became a change (a missing
    /// or repeated key).
    pub if_dropped: Option<Snapshot>,
    /// The delivery id the change was sent with; `None` for rows that
    /// never became a change.
    pub delivery_id: Option<String>,
    /// Of the events a transform split the change into, the delivery ids
    /// the destination acknowledged (in this run or while it was owed
    /// before): the next run sends only the others.
    pub delivered: Vec<String>,
}

/// What an entry of a sync's history records. Resets and replays are
/// entries too: they are claimed as runs are, so none overlaps a run, and
/// the history shows who changed what the sync delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// The pipeline: extract, diff, deliver, commit.
    Run,
    /// `ebb reset`: the sync forgot what it delivered.
    Reset,
    /// `ebb replay`: one run's deliveries sent again.
    Replay,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Run => "run",
            RunKind::Reset => "reset",
            RunKind::Replay => "replay",
        }
    }
}

impl From<&str> for RunKind {
    fn from(s: &str) -> RunKind {
        match s {
            "reset" => RunKind::Reset,
            "replay" => RunKind::Replay,
            _ => RunKind::Run,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunRecord {
    pub run_id: i64,
    pub kind: RunKind,
    pub status: Status,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub counts: Counts,
    /// Milliseconds spent per stage (extract, diff, load, commit, …).
    #[schema(value_type = Object)]
    pub timings_ms: serde_json::Value,
    pub error: Option<String>,
    /// What a reset or replay did (`replayed run 12`); none for a run.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OwedRow {
    pub key: String,
    pub op: String,
    /// The run it last failed in.
    pub run_id: i64,
    pub attempts: i64,
    pub error: String,
    /// The event as it was last attempted.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// Which owed rows a listing takes.
#[derive(Debug, Clone, Copy, Default)]
pub struct OwedFilter<'a> {
    /// Only those that last failed in this run.
    pub run: Option<i64>,
    /// Only those that last failed with exactly this error.
    pub error: Option<&'a str>,
}

/// A stretch of a listing: at most `limit` items after the first `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// One page of owed rows in natural key order, and how many match in all.
#[derive(Debug, Clone)]
pub struct OwedPage {
    pub total: i64,
    pub rows: Vec<OwedRow>,
}

/// The owed rows that last failed with one error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorGroup {
    pub error: String,
    /// How many rows it holds.
    pub count: i64,
    /// Its first few keys in natural order.
    pub keys: Vec<String>,
    /// The latest run any of its rows failed in.
    pub last_run: i64,
}

/// One page of the owed rows grouped by error, the largest group first.
#[derive(Debug, Clone)]
pub struct ErrorGroups {
    /// How many rows match, in all groups.
    pub rows: i64,
    /// How many groups there are.
    pub groups_total: i64,
    pub groups: Vec<ErrorGroup>,
}

/// How a run ended, as recorded.
#[derive(Clone, Copy)]
pub struct RunEnd<'a> {
    pub status: Status,
    pub counts: &'a Counts,
    pub timings_ms: &'a serde_json::Value,
    pub error: Option<&'a str>,
    /// The cursor to keep if the run succeeded.
    pub cursor: Option<&'a Param>,
}

pub enum Claim {
    /// The run may go ahead under this id.
    Started(i64),
    /// Another run of the sync is in progress; a skipped run was recorded.
    Busy { running: i64, skipped: i64 },
}

/// What claiming a reset or replay got.
pub enum Claimed {
    /// It may go ahead, recorded under this id.
    Started(i64),
    /// This run (or reset, or replay) of the sync is in progress; nothing
    /// was recorded.
    Busy(i64),
}

/// Which owed rows `ebb errors --drop` / `--drop-all` removes.
pub enum Dropping<'a> {
    Keys(&'a [String]),
    /// Every owed row, or those that last failed in this run.
    All {
        run: Option<i64>,
    },
}

pub enum Dropped {
    /// The rows no longer owed.
    Rows(Vec<OwedRow>),
    /// These keys are not owed; nothing was dropped.
    Unknown(Vec<String>),
}

/// What `ebb serve` keeps about a sync besides its runs.
#[derive(Debug, Clone, Default)]
pub struct SyncControl {
    /// When its next scheduled run is due (Unix ms); `None` if none is.
    pub due_at: Option<i64>,
    /// Switched off through the API.
    pub disabled: bool,
}

/// Events delivered, kept for `ebb replay`: their JSON, a line each, written
/// into one buffer as they are acknowledged rather than into a string each
/// that a commit joins.
#[derive(Debug, Default)]
pub struct EventLines(Vec<u8>);

impl EventLines {
    /// Adds `event`'s JSON as the next line.
    pub fn push(&mut self, event: &impl serde::Serialize) -> serde_json::Result<()> {
        let len = self.0.len();
        if len > 0 {
            self.0.push(b'\n');
        }
        serde_json::to_writer(&mut self.0, event).inspect_err(|_| self.0.truncate(len))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The lines, `\n` between them (JSON keeps its own escaped).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What one commit moves into the store.
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    pub commits: &'a [Commit],
    pub errors: &'a [RowError],
    /// The events delivered, in the order they were acknowledged.
    pub delivered: &'a EventLines,
    /// What the run has counted so far, shown while it runs.
    pub counts: &'a Counts,
}
