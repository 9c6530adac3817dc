//! Where Ebb remembers what it delivered: per sync, the snapshot of every
//! acknowledged record (key, fingerprint, record), the runs, and the rows
//! still owed with their errors. Only acknowledged records enter the
//! snapshot, which is what makes "nothing is lost" hold across failures: the
//! next run re-derives everything that was not acknowledged.
//!
//! Two stores hold the same tables with the same statements: an embedded
//! SQLite file (the default, one machine) and a Postgres schema (several
//! machines sharing one state). The database, not the process, keeps a sync
//! to one run at a time (see runs.rs).
//!
//! Each statement is written once, in the module named after what it keeps
//! (runs.rs, snapshot.rs, record_blocks.rs for the snapshot's records,
//! owed.rs, schedules.rs), and runs on either database through sql.rs.
//! What the two databases do differently (how they connect and migrate,
//! how a transaction keeps others from writing between its read and its
//! write, how a chunk of commits is written in a few statements) is each
//! one's `Dialect` (dialect.rs): sqlite.rs and postgres.rs hold that and
//! nothing else, but for the task that copies SQLite's log into its file
//! beside the writes (checkpoint.rs). How values are stored and columns
//! decode is rows.rs; how records are packed into blocks, packing.rs.

mod checkpoint;
mod dialect;
mod error;
mod owed;
mod packing;
mod postgres;
mod record_blocks;
mod rows;
mod runs;
mod schedules;
mod schema;
mod snapshot;
mod sql;
mod sqlite;
mod store;
mod types;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use self::owed::OwedRows;
use self::postgres::PgSchema;
use self::runs::Runs;
use self::schedules::Schedules;
use self::snapshot::Snapshots;
use self::sqlite::SqliteFile;
use self::store::Store;
use crate::delivery_id::DeliveryIds;
use crate::diff::Entry;
use crate::event::Fields;
use crate::param::Param;
use crate::status::Status;

use self::error::Result;
pub use self::error::StateError;
pub use self::rows::{CommitColumns, time};
pub use self::types::{
    Batch, Claim, Claimed, Commit, Dropped, Dropping, ErrorGroup, ErrorGroups, EventLines,
    OwedFilter, OwedPage, OwedRow, Page, RowError, RunEnd, RunKind, RunRecord, Snapshot,
    SyncControl,
};

/// The store behind `[state] url`; commands use it without knowing which.
#[derive(Clone)]
pub struct State(Arc<dyn Backend>);

/// Everything a store does, whichever database it is on.
trait Backend: Runs + Snapshots + OwedRows + Schedules + Send + Sync {}

impl<T: Runs + Snapshots + OwedRows + Schedules + Send + Sync> Backend for T {}

impl State {
    /// Opens (creating and migrating if needed) the store at `url`.
    pub async fn open(url: &str) -> Result<State> {
        match State::at(url, true).await? {
            Some(state) => Ok(state),
            None => unreachable!("a store opened to be created is there"),
        }
    }

    /// Opens the store only if it exists, for commands that must not create it.
    pub async fn open_existing(url: &str) -> Result<Option<State>> {
        State::at(url, false).await
    }

    async fn at(url: &str, create: bool) -> Result<Option<State>> {
        fn state(store: impl Backend + 'static) -> State {
            State(Arc::new(store))
        }
        Ok(match Kind::of(url)? {
            Kind::Sqlite => Store::<SqliteFile>::open(url, create).await?.map(state),
            Kind::Postgres => Store::<PgSchema>::open(url, create).await?.map(state),
        })
    }

    /// Starts a run unless one of the same sync is alive. A running run
    /// whose heartbeat stopped more than `lease` ago (its process died) is
    /// first closed as failed.
    pub async fn claim(&self, sync: &str, lease: Duration) -> Result<Claim> {
        self.0.claim(sync, lease).await
    }

    /// Records a reset or replay of the sync as running (closing runs
    /// whose heartbeat is older than `lease` as abandoned), unless a run,
    /// reset or replay of the sync is in progress; then nothing is
    /// recorded. Closed with [`State::finish`], which moves nothing of the
    /// sync's own for these.
    pub async fn claim_for(
        &self,
        sync: &str,
        lease: Duration,
        kind: RunKind,
        detail: Option<&str>,
    ) -> Result<Claimed> {
        self.0.claim_for(sync, lease, kind, detail).await
    }

    /// Records a skipped run if a live run of the sync is in progress, and
    /// returns the ids of the running and the skipped run; `None` if no run
    /// is in progress. Cheaper than checking the sync and then
    /// [`State::claim`]ing it, so a trigger that finds its sync running
    /// costs one short transaction.
    pub async fn skip_if_running(&self, sync: &str, lease: Duration) -> Result<Option<(i64, i64)>> {
        self.0.skip_if_running(sync, lease).await
    }

    /// Marks the run alive; `false` if it is no longer running (another
    /// process closed it as abandoned).
    pub async fn heartbeat(&self, run_id: i64) -> Result<bool> {
        self.0.heartbeat(run_id).await
    }

    /// Unix seconds of the start of the last successful run (0 if none since
    /// the last reset).
    pub async fn last_sync_time(&self, sync: &str) -> Result<i64> {
        self.0.last_sync_time(sync).await
    }

    /// The cursor a cursor model's last successful run left (see [`crate::cursor`]).
    pub async fn cursor(&self, sync: &str) -> Result<Option<Param>> {
        self.0.cursor(sync).await
    }

    /// Snapshot entries whose key hash is in `lo..hi` (`hi` `None`: to the
    /// end): one partition of the diff.
    pub async fn snapshot_range(
        &self,
        sync: &str,
        lo: u128,
        hi: Option<u128>,
    ) -> Result<Vec<Entry>> {
        self.0.snapshot_range(sync, lo, hi).await
    }

    /// Snapshot entries for these key hashes (those that exist).
    pub async fn snapshot_entries(&self, sync: &str, hashes: &[u128]) -> Result<Vec<Entry>> {
        self.0.snapshot_entries(sync, hashes).await
    }

    /// The keys of these key hashes in the snapshot (those that exist).
    pub async fn snapshot_keys(
        &self,
        sync: &str,
        hashes: &[u128],
    ) -> Result<HashMap<u128, String>> {
        self.0.snapshot_keys(sync, hashes).await
    }

    /// The committed records for these key hashes (those that exist).
    pub async fn records(&self, sync: &str, hashes: &[u128]) -> Result<HashMap<u128, Fields>> {
        self.0.records(sync, hashes).await
    }

    /// Moves acknowledged changes into the snapshot, keeps the events
    /// delivered (for `ebb replay`), records row errors and the run's
    /// counts so far, atomically, if the run is still running; `false`
    /// (and nothing written) if another process closed it as abandoned.
    pub async fn commit(&self, commit: &CommitColumns<'_>) -> Result<bool> {
        self.0.commit(commit).await
    }

    /// The events run `run_id` delivered (as JSON), in the order they were
    /// acknowledged; empty when none are kept.
    pub async fn deliveries(&self, sync: &str, run_id: i64) -> Result<Vec<String>> {
        self.0.deliveries(sync, run_id).await
    }

    /// Forgets what runs other than the sync's last `keep_runs` delivered.
    pub async fn prune_deliveries(&self, sync: &str, keep_runs: u32) -> Result<()> {
        self.0.prune_deliveries(sync, keep_runs).await
    }

    /// Closes a run, unless another process closed it as abandoned. A run
    /// that went through every change also clears owed
    /// rows it did not meet again (they are no longer owed); a successful
    /// one moves `{{last_sync_time}}` to its start and `{{cursor}}` to
    /// `cursor`.
    pub async fn finish(&self, sync: &str, run_id: i64, end: &RunEnd<'_>) -> Result<()> {
        self.0.finish(sync, run_id, end).await
    }

    pub async fn history(&self, sync: &str, limit: i64) -> Result<Vec<RunRecord>> {
        self.0.history(sync, limit).await
    }

    /// What gives this run's changes their delivery ids: the sync's last
    /// finished run and the ids its owed rows were sent with.
    pub async fn delivery_ids(&self, sync: &str) -> Result<DeliveryIds> {
        self.0.delivery_ids(sync).await
    }

    /// Every row the sync owes (that last failed in `run`), in natural key
    /// order.
    pub async fn owed(&self, sync: &str, run: Option<i64>) -> Result<Vec<OwedRow>> {
        self.0.owed(sync, run).await
    }

    /// How many rows each sync owes (syncs that owe none are left out).
    pub async fn owed_counts(&self) -> Result<HashMap<String, i64>> {
        self.0.owed_counts().await
    }

    /// One page of the rows the sync owes that `filter` takes, in natural
    /// key order, with how many it takes in all.
    pub async fn owed_page(
        &self,
        sync: &str,
        filter: OwedFilter<'_>,
        page: Page,
    ) -> Result<OwedPage> {
        self.0.owed_page(sync, filter, page).await
    }

    /// The rows the sync owes (that last failed in `run`) grouped by their
    /// error, the largest group first: one page of groups, each with its
    /// first few keys.
    pub async fn error_groups(
        &self,
        sync: &str,
        run: Option<i64>,
        page: Page,
    ) -> Result<ErrorGroups> {
        self.0.error_groups(sync, run, page).await
    }

    /// Stops owing rows: each leaves the list and the snapshot takes it as
    /// delivered ([`RowError::if_dropped`]; a deletion forgets the key), so
    /// the next run sends it only if it changes again. All or nothing: if a
    /// key is not owed, nothing is dropped.
    pub async fn drop_owed(&self, sync: &str, which: Dropping<'_>) -> Result<Dropped> {
        self.0.drop_owed(sync, which).await
    }

    /// Records the sync's schedule as `ebb serve` reads it from the config,
    /// due first at `due` (Unix ms). Nothing changes if the schedule is the
    /// one already recorded: its next slot stands, even if that was missed.
    pub async fn plan_schedule(&self, sync: &str, schedule: &str, due: Option<i64>) -> Result<()> {
        self.0.plan_schedule(sync, schedule, due).await
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
        self.0.take_due(now, next).await
    }

    /// Closes, as failed, every run whose heartbeat is older than `lease`
    /// (its process died), and returns their syncs and ids: the caller runs
    /// each again, so what the dead run did not commit is sent now. Of
    /// several processes asking at once, each stale run goes to exactly one.
    pub async fn take_over_stale(&self, lease: Duration) -> Result<Vec<(String, i64)>> {
        self.0.take_over_stale(lease).await
    }

    /// Switches a sync off (no run starts, scheduled or asked) or on again.
    pub async fn set_disabled(&self, sync: &str, disabled: bool) -> Result<()> {
        self.0.set_disabled(sync, disabled).await
    }

    /// Every sync's next slot and whether it is switched off.
    pub async fn schedules(&self) -> Result<HashMap<String, SyncControl>> {
        self.0.schedules().await
    }

    /// One run of the sync, if there is such a run.
    pub async fn run(&self, sync: &str, run_id: i64) -> Result<Option<RunRecord>> {
        self.0.run(sync, run_id).await
    }

    /// How the sync's last finished run before `run_id` ended (success,
    /// partial or failed; skipped runs, resets and replays do not count).
    pub async fn status_before(&self, sync: &str, run_id: i64) -> Result<Option<Status>> {
        self.0.status_before(sync, run_id).await
    }

    /// The latest run of every sync that has run.
    pub async fn latest_runs(&self) -> Result<HashMap<String, RunRecord>> {
        self.0.latest_runs().await
    }

    /// Forgets what the sync delivered; its run history stays.
    pub async fn reset(&self, sync: &str) -> Result<()> {
        self.0.reset(sync).await
    }
}

enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    fn of(url: &str) -> Result<Kind> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "sqlite" => Ok(Kind::Sqlite),
            "postgres" | "postgresql" => Ok(Kind::Postgres),
            // Only the scheme: the rest may hold a password.
            _ => Err(StateError::UnknownScheme {
                scheme: scheme.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
