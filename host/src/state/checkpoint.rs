//! Copies the SQLite state file's write-ahead log back into the file from a
//! connection of its own, while the next commit is written.
//!
//! In WAL mode every committed page is written twice: into the log, and
//! again when a checkpoint copies it into the database file. SQLite's
//! automatic checkpoint makes that copy on the connection that has just
//! committed, so each of a run's commits also waited for the copy of the
//! one before. Here a task runs a passive checkpoint after every commit on
//! another pooled connection (another SQLite thread), beside the run.
//!
//! SQLite's own checkpoint stays as the backstop, at a longer log
//! ([`WAL_PAGES`]). A log is started again from its beginning only by a
//! transaction that begins once every page in it has been copied, which a
//! writer that begins while the task is still copying never sees. Once the
//! log is that long, the committing connection copies the little that is
//! left itself, and the next transaction starts the log over: the log stays
//! bounded even while commits follow each other without a pause.

use sqlx::SqlitePool;
use tokio::sync::mpsc;

/// The log's length, in pages, at which the committing connection copies
/// what is left itself (SQLite's `wal_autocheckpoint`; its default is
/// 1,000). The log takes up to this much disk (64 MiB) beside the file,
/// plus what commits add while a copy runs.
///
/// A run usually ends before its last commits are copied, and the next
/// process to open the file counts every page of that log as not copied
/// (SQLite rebuilds the log's index and starts its count over). At 8,192
/// pages the next run's first large commit went past the line with them
/// and copied the whole log itself, `fsync` included, while the run waited
/// (0.15 s of an incremental run of a million rows); this leaves that copy
/// to the task.
pub const WAL_PAGES: u32 = 16384;

/// Wakes the copying task; dropped with the store, which ends the task.
pub struct Checkpointer {
    wake: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts the task copying `pool`'s log.
    pub fn start(pool: SqlitePool) -> Checkpointer {
        // One wake-up waiting is enough: a copy takes every page committed
        // before it starts.
        let (wake, mut woken) = mpsc::channel(1);
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                // A passive checkpoint neither waits nor makes others wait;
                // a failed one leaves its pages to the next.
                if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    tracing::debug!(%error, "checkpoint of the state file's log");
                }
            }
        });
        Checkpointer { wake }
    }

    /// Says a transaction has committed pages to the log.
    pub fn committed(&self) {
        // Full means a copy is already due; closed means the runtime that
        // ran the task is gone, and SQLite's own checkpoint copies alone.
        let _ = self.wake.try_send(());
    }
}
