//! Where Ebb remembers what it delivered: per sync, the snapshot of every
//! acknowledged record (key, fingerprint, record), the runs, and the rows
//! still owed with their errors. Only acknowledged records enter the
//! snapshot, which is what makes "nothing is lost" hold across failures: the
//! next run re-derives everything that was not acknowledged.
//!
//! Two stores hold the same tables with the same statements: an embedded
//! SQLite file (the default, one machine) and a Postgres schema (several
//! machines sharing one state). The database, not the process, keeps a sync
//! to one run at a time: a unique index admits one `running` run per sync,
//! so of two claims racing, the second inserts nothing and is recorded as
//! skipped. Everything that is not SQL (the types, how columns decode, time
//! formatting, messages) lives here so the two files stay statement for
//! statement alike.

mod postgres;
mod sqlite;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde::Serialize;

use crate::diff::Entry;
use crate::event::{Op, Record};
use crate::param::Param;
use crate::status::{Counts, Status};

/// How many times a claim retries when the run it collided with finished
/// before it could be named.
const CLAIM_ATTEMPTS: usize = 3;

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
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunRecord {
    pub run_id: i64,
    pub status: Status,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub counts: Counts,
    /// Milliseconds spent per stage (extract, diff, load, commit, …).
    #[schema(value_type = Object)]
    pub timings_ms: serde_json::Value,
    pub error: Option<String>,
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

/// How a run ended, as recorded.
#[derive(Clone, Copy)]
pub struct RunEnd<'a> {
    pub status: Status,
    pub counts: &'a Counts,
    pub timings_ms: &'a serde_json::Value,
    pub error: Option<&'a str>,
    /// The cursor to keep if the run succeeded.
    pub cursor: Option<&'a crate::param::Param>,
}

pub enum Claim {
    /// The run may go ahead under this id.
    Started(i64),
    /// Another run of the sync is in progress; a skipped run was recorded.
    Busy { running: i64, skipped: i64 },
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

/// The store behind `[state] url`; commands use it without knowing which.
#[derive(Clone)]
pub enum State {
    Sqlite(sqlite::Store),
    Postgres(postgres::Store),
}

type Result<T> = std::result::Result<T, sqlx::Error>;

/// Calls the same method on whichever store this is.
macro_rules! dispatch {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            State::Sqlite(s) => s.$method($($arg),*).await,
            State::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl State {
    /// Opens (creating and migrating if needed) the store at `url`.
    pub async fn open(url: &str) -> anyhow::Result<State> {
        Ok(match Kind::of(url)? {
            Kind::Sqlite => State::Sqlite(sqlite::Store::open(url).await?),
            Kind::Postgres => State::Postgres(postgres::Store::open(url).await?),
        })
    }

    /// Opens the store only if it exists, for commands that must not create it.
    pub async fn open_existing(url: &str) -> anyhow::Result<Option<State>> {
        Ok(match Kind::of(url)? {
            Kind::Sqlite => sqlite::Store::open_existing(url).await?.map(State::Sqlite),
            Kind::Postgres => postgres::Store::open_existing(url)
                .await?
                .map(State::Postgres),
        })
    }

    /// Starts a run unless one of the same sync is alive. A running run
    /// whose heartbeat stopped more than `lease` ago (its process died) is
    /// first closed as failed.
    pub async fn claim(&self, sync: &str, lease: Duration) -> anyhow::Result<Claim> {
        dispatch!(self.claim(sync, lease))
    }

    /// Records a skipped run if a live run of the sync is in progress, and
    /// returns the ids of the running and the skipped run; `None` if no run
    /// is in progress. Cheaper than checking the sync and then
    /// [`State::claim`]ing it, so a trigger that finds its sync running
    /// costs one short transaction.
    pub async fn skip_if_running(&self, sync: &str, lease: Duration) -> Result<Option<(i64, i64)>> {
        dispatch!(self.skip_if_running(sync, lease))
    }

    /// Marks the run alive; `false` if it is no longer running (another
    /// process closed it as abandoned).
    pub async fn heartbeat(&self, run_id: i64) -> Result<bool> {
        dispatch!(self.heartbeat(run_id))
    }

    /// Unix seconds of the start of the last successful run (0 if none since
    /// the last reset).
    pub async fn last_sync_time(&self, sync: &str) -> Result<i64> {
        dispatch!(self.last_sync_time(sync))
    }

    /// The cursor a cursor model's last successful run left (see [`crate::cursor`]).
    pub async fn cursor(&self, sync: &str) -> Result<Option<Param>> {
        dispatch!(self.cursor(sync))
    }

    /// Snapshot entries whose key hash is in `lo..hi` (`hi` `None`: to the
    /// end): one partition of the diff.
    pub async fn snapshot_range(
        &self,
        sync: &str,
        lo: u128,
        hi: Option<u128>,
    ) -> Result<Vec<Entry>> {
        dispatch!(self.snapshot_range(sync, lo, hi))
    }

    /// Snapshot entries for these key hashes (those that exist).
    pub async fn snapshot_entries(&self, sync: &str, hashes: &[u128]) -> Result<Vec<Entry>> {
        dispatch!(self.snapshot_entries(sync, hashes))
    }

    /// The committed records for these key hashes (those that exist).
    pub async fn records(&self, sync: &str, hashes: &[u128]) -> Result<HashMap<u128, Record>> {
        dispatch!(self.records(sync, hashes))
    }

    /// Moves acknowledged changes into the snapshot, keeps the events
    /// delivered (for `ebb replay`) and records row errors, atomically, if
    /// the run is still running; `false` (and nothing
    /// written) if another process closed it as abandoned.
    pub async fn commit(
        &self,
        sync: &str,
        run_id: i64,
        commits: &[Commit],
        errors: &[RowError],
        delivered: &[String],
    ) -> Result<bool> {
        dispatch!(self.commit(sync, run_id, commits, errors, delivered))
    }

    /// The events run `run_id` delivered (as JSON), in the order they were
    /// acknowledged; empty when none are kept.
    pub async fn deliveries(&self, sync: &str, run_id: i64) -> Result<Vec<String>> {
        dispatch!(self.deliveries(sync, run_id))
    }

    /// Forgets what runs other than the sync's last `keep_runs` delivered.
    pub async fn prune_deliveries(&self, sync: &str, keep_runs: u32) -> Result<()> {
        dispatch!(self.prune_deliveries(sync, keep_runs))
    }

    /// Closes a run, unless another process closed it as abandoned. A run
    /// that went through every change also clears owed
    /// rows it did not meet again (they are no longer owed); a successful
    /// one moves `{{last_sync_time}}` to its start and `{{cursor}}` to
    /// `cursor`.
    pub async fn finish(&self, sync: &str, run_id: i64, end: &RunEnd<'_>) -> Result<()> {
        dispatch!(self.finish(sync, run_id, end))
    }

    pub async fn history(&self, sync: &str, limit: i64) -> Result<Vec<RunRecord>> {
        dispatch!(self.history(sync, limit))
    }

    pub async fn owed(&self, sync: &str, run: Option<i64>) -> Result<Vec<OwedRow>> {
        dispatch!(self.owed(sync, run))
    }

    /// Stops owing rows: each leaves the list and the snapshot takes it as
    /// delivered ([`RowError::if_dropped`]; a deletion forgets the key), so
    /// the next run sends it only if it changes again. All or nothing: if a
    /// key is not owed, nothing is dropped.
    pub async fn drop_owed(&self, sync: &str, which: Dropping<'_>) -> Result<Dropped> {
        dispatch!(self.drop_owed(sync, &which))
    }

    /// Records the sync's schedule as `ebb serve` reads it from the config,
    /// due first at `due` (Unix ms). Nothing changes if the schedule is the
    /// one already recorded: its next slot stands, even if that was missed.
    pub async fn plan_schedule(&self, sync: &str, schedule: &str, due: Option<i64>) -> Result<()> {
        dispatch!(self.plan_schedule(sync, schedule, due))
    }

    /// Takes the slots due at `now` (Unix ms) among `next`, each a sync with
    /// the slot after the one taken, and returns the syncs taken with the
    /// slot each was due at. Of several processes asking at once, each slot
    /// goes to exactly one; a disabled sync's slot is never taken.
    pub async fn take_due(
        &self,
        now: i64,
        next: &[(String, Option<i64>)],
    ) -> Result<Vec<(String, i64)>> {
        dispatch!(self.take_due(now, next))
    }

    /// Closes, as failed, every run whose heartbeat is older than `lease`
    /// (its process died), and returns their syncs and ids: the caller runs
    /// each again, so what the dead run did not commit is sent now. Of
    /// several processes asking at once, each stale run goes to exactly one.
    pub async fn take_over_stale(&self, lease: Duration) -> Result<Vec<(String, i64)>> {
        dispatch!(self.take_over_stale(lease))
    }

    /// Switches a sync off (no run starts, scheduled or asked) or on again.
    pub async fn set_disabled(&self, sync: &str, disabled: bool) -> Result<()> {
        dispatch!(self.set_disabled(sync, disabled))
    }

    /// Every sync's next slot and whether it is switched off.
    pub async fn schedules(&self) -> Result<HashMap<String, SyncControl>> {
        let rows = dispatch!(self.schedules())?;
        Ok(rows
            .into_iter()
            .map(|(sync, due_at, disabled)| (sync, SyncControl { due_at, disabled }))
            .collect())
    }

    /// One run of the sync, if there is such a run.
    pub async fn run(&self, sync: &str, run_id: i64) -> Result<Option<RunRecord>> {
        dispatch!(self.run(sync, run_id))
    }

    /// The latest run of every sync that has run.
    pub async fn latest_runs(&self) -> Result<HashMap<String, RunRecord>> {
        Ok(dispatch!(self.latest_runs())?.into_iter().collect())
    }

    /// Forgets what the sync delivered; its run history stays.
    pub async fn reset(&self, sync: &str) -> Result<()> {
        dispatch!(self.reset(sync))
    }
}

enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    fn of(url: &str) -> anyhow::Result<Kind> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "sqlite" => Ok(Kind::Sqlite),
            "postgres" | "postgresql" => Ok(Kind::Postgres),
            // Only the scheme: the rest may hold a password.
            _ => anyhow::bail!(
                "state.url: `{scheme}:` is not a state store; use sqlite://PATH or postgres://USER@HOST/DB"
            ),
        }
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// RFC 3339 in UTC with milliseconds, as `history` shows times.
pub fn time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The error a claim records on a run whose heartbeat is stale.
fn abandoned(heartbeat_ms: i64) -> String {
    format!(
        "abandoned: no heartbeat since {}; closed as failed so that the sync can run again",
        time(heartbeat_ms)
    )
}

/// The error a skipped run records.
fn busy(running: i64) -> String {
    format!("run {running} of this sync was still in progress")
}

/// The claim could not name the run it collided with, [`CLAIM_ATTEMPTS`] times.
fn claim_contended(sync: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "sync `{sync}`: runs kept starting and finishing while this one tried to claim it; try again"
    )
}

fn stale_before(now: i64, lease: Duration) -> i64 {
    now - lease.as_millis() as i64
}

fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Key hashes and fingerprints are stored big-endian, so the database's
/// byte order is their numeric order and a diff partition is a contiguous
/// range of the snapshot.
fn hash_bytes(h: u128) -> Vec<u8> {
    h.to_be_bytes().to_vec()
}

/// The exclusive end of a key-hash range as stored. The last range has no
/// end; 17 bytes of 0xff sort after every 16-byte hash, so one statement
/// with a bound the index can stop on serves all ranges (`? IS NULL OR …`
/// would make the database scan to the end of the sync's snapshot).
fn range_end(hi: Option<u128>) -> Vec<u8> {
    hi.map(hash_bytes).unwrap_or_else(|| vec![0xff; 17])
}

fn hash_of(bytes: Vec<u8>) -> u128 {
    bytes.try_into().map(u128::from_be_bytes).unwrap_or(0)
}

/// A chunk of commits as columns, so each store writes it in a few
/// statements rather than one per row.
struct CommitColumns<'a> {
    /// `(key_hash, key, fingerprint, record)` of each upsert.
    upserts: Vec<(Vec<u8>, &'a str, Vec<u8>, &'a str)>,
    /// Key hashes of deletions.
    deletes: Vec<Vec<u8>>,
    /// Every committed key: none of them is owed any more.
    keys: Vec<&'a str>,
}

fn commit_columns(commits: &[Commit]) -> CommitColumns<'_> {
    let mut out = CommitColumns {
        upserts: Vec::new(),
        deletes: Vec::new(),
        keys: Vec::with_capacity(commits.len()),
    };
    for c in commits {
        match c {
            Commit::Upsert {
                key,
                key_hash,
                fingerprint,
                json,
            } => {
                out.upserts
                    .push((hash_bytes(*key_hash), key, hash_bytes(*fingerprint), json));
                out.keys.push(key);
            }
            Commit::Delete { key, key_hash } => {
                out.deletes.push(hash_bytes(*key_hash));
                out.keys.push(key);
            }
            Commit::Settle { key } => out.keys.push(key),
        }
    }
    out
}

/// The fingerprint and record columns a row error stores for [`RowError::if_dropped`].
fn if_dropped_columns(e: &RowError) -> (Option<Vec<u8>>, Option<String>) {
    match &e.if_dropped {
        Some(s) => (Some(hash_bytes(s.fingerprint)), Some(s.json.clone())),
        None => (None, None),
    }
}

/// `SELECT id, status, started_at, finished_at, counts, timings, error FROM runs`
type RunColumns = (
    i64,
    String,
    i64,
    Option<i64>,
    String,
    String,
    Option<String>,
);

impl From<RunColumns> for RunRecord {
    fn from((run_id, status, started, finished, counts, timings, error): RunColumns) -> Self {
        RunRecord {
            run_id,
            status: Status::parse(&status),
            started_at: time(started),
            finished_at: finished.map(time),
            counts: serde_json::from_str(&counts).unwrap_or_default(),
            timings_ms: serde_json::from_str(&timings).unwrap_or_default(),
            error,
        }
    }
}

/// `SELECT sync, id, status, … FROM runs`
type LatestColumns = (
    String,
    i64,
    String,
    i64,
    Option<i64>,
    String,
    String,
    Option<String>,
);

fn latest(
    (sync, id, status, started, finished, counts, timings, error): LatestColumns,
) -> (String, RunRecord) {
    let run = RunRecord::from((id, status, started, finished, counts, timings, error));
    (sync, run)
}

/// `SELECT sync, due_at, disabled FROM schedules`
type ScheduleColumns = (String, Option<i64>, bool);

/// What `ebb serve` keeps about a sync besides its runs.
#[derive(Debug, Clone, Default)]
pub struct SyncControl {
    /// When its next scheduled run is due (Unix ms); `None` if none is.
    pub due_at: Option<i64>,
    /// Switched off through the API.
    pub disabled: bool,
}

/// `SELECT key_hash, key, fingerprint FROM snapshot`
type EntryColumns = (Vec<u8>, String, Vec<u8>);

impl From<EntryColumns> for Entry {
    fn from((key_hash, key, fingerprint): EntryColumns) -> Self {
        Entry {
            key_hash: hash_of(key_hash),
            key,
            fingerprint: hash_of(fingerprint),
        }
    }
}

/// `SELECT key, op, run_id, attempts, error, payload FROM row_errors`
type OwedColumns = (String, String, i64, i64, String, String);

impl From<OwedColumns> for OwedRow {
    fn from((key, op, run_id, attempts, error, payload): OwedColumns) -> Self {
        OwedRow {
            key,
            op,
            run_id,
            attempts,
            error,
            payload: serde_json::from_str(&payload).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip_and_bad_bytes_read_as_zero() {
        let fp = 0x0123_4567_89ab_cdef_0011_2233_4455_6677_u128;
        assert_eq!(hash_of(hash_bytes(fp)), fp);
        assert_eq!(hash_of(vec![1, 2, 3]), 0);
    }

    #[test]
    fn abandoned_runs_name_their_last_heartbeat() {
        assert_eq!(
            abandoned(1_700_000_000_123),
            "abandoned: no heartbeat since 2023-11-14T22:13:20.123Z; closed as failed so that the sync can run again"
        );
    }

    #[test]
    fn only_sqlite_and_postgres_urls_are_state_stores() {
        assert!(matches!(
            Kind::of("sqlite://.ebb/state.db"),
            Ok(Kind::Sqlite)
        ));
        assert!(matches!(Kind::of("postgres://u@h/db"), Ok(Kind::Postgres)));
        assert!(matches!(
            Kind::of("postgresql://u@h/db"),
            Ok(Kind::Postgres)
        ));
        let err = Kind::of("mysql://root:secret@h/db")
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("`mysql:`"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}
