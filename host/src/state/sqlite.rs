//! The embedded state store: one SQLite file, WAL mode. Migrations are the
//! numbered statements below, tracked in `PRAGMA user_version`, so a newer
//! binary upgrades an older file in place. Statements mirror postgres.rs one
//! for one; keep them that way.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqliteConnection, SqlitePool};

use super::EntryColumns;
use super::{
    CLAIM_ATTEMPTS, Claim, Commit, Dropped, Dropping, LatestColumns, OwedColumns, OwedRow, Result,
    RowError, RunColumns, RunEnd, RunRecord, ScheduleColumns, Status, abandoned, busy,
    claim_contended, commit_columns, hash_bytes, hash_of, if_dropped_columns, json, latest, now_ms,
    range_end, stale_before, to_json,
};
use crate::diff::Entry;
use crate::event::Record;
use crate::param::Param;

/// Rows the SQLite worker may read ahead of the task taking them.
const ROW_CHANNEL: usize = 4096;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE snapshot (
    sync TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (sync, key)
) WITHOUT ROWID;
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sync TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    finished_at INTEGER,
    counts TEXT NOT NULL DEFAULT '{}',
    timings TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
CREATE INDEX runs_by_sync ON runs (sync, id);
CREATE TABLE row_errors (
    sync TEXT NOT NULL,
    key TEXT NOT NULL,
    op TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (sync, key)
) WITHOUT ROWID;
CREATE TABLE sync_state (
    sync TEXT PRIMARY KEY,
    last_sync_time INTEGER NOT NULL
);
"#,
    r#"
ALTER TABLE sync_state ADD COLUMN cursor TEXT;
"#,
    // One running run per sync, enforced by the database; and what the
    // snapshot takes when an owed row is dropped.
    r#"
UPDATE runs SET status = 'failed', error = 'abandoned: a later run of this sync started'
WHERE status = 'running' AND id NOT IN (SELECT max(id) FROM runs WHERE status = 'running' GROUP BY sync);
CREATE UNIQUE INDEX one_running_run ON runs (sync) WHERE status = 'running';
ALTER TABLE row_errors ADD COLUMN fingerprint BLOB;
ALTER TABLE row_errors ADD COLUMN record TEXT;
"#,
    r#"
ALTER TABLE snapshot RENAME TO snapshot_by_key;
CREATE TABLE snapshot (
    sync TEXT NOT NULL,
    key_hash BLOB NOT NULL,
    key TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (sync, key_hash)
) WITHOUT ROWID;
"#,
    // What each run delivered, for `ebb replay`.
    r#"
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    sync TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX deliveries_by_run ON deliveries (sync, run_id, id);
"#,
    // When `ebb serve` next runs each sync, and which are switched off.
    r#"
CREATE TABLE schedules (
    sync TEXT PRIMARY KEY,
    schedule TEXT,
    due_at INTEGER,
    disabled INTEGER NOT NULL DEFAULT 0
);
"#,
];

/// After this migration the snapshot is ordered by key hash, which SQL
/// cannot compute: its rows are copied over by [`rehash_snapshot`].
const REHASH_AFTER: usize = 4;

/// Marks a run alive, if it still is (another process may have closed it
/// as abandoned).
const BEAT: &str = "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'";

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        let opts = Self::options(url)?;
        if let Some(dir) = opts.get_filename().parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("cannot create the state folder {}: {e}", dir.display())
            })?;
        }
        let store = Self::connect(opts.create_if_missing(true)).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn open_existing(url: &str) -> anyhow::Result<Option<Store>> {
        let opts = Self::options(url)?;
        if !opts.get_filename().exists() {
            return Ok(None);
        }
        let store = Self::connect(opts).await?;
        store.migrate().await?;
        Ok(Some(store))
    }

    fn options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
        Ok(SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("state.url `{url}`: {e}"))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            // SQLite runs on a worker thread that hands rows over a channel;
            // at sqlx's default of 50 the reader and the worker wake each
            // other every few rows of a snapshot range.
            .row_buffer_size(ROW_CHANNEL))
    }

    async fn connect(opts: SqliteConnectOptions) -> anyhow::Result<Store> {
        let file = opts.get_filename().display().to_string();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the state store {file}: {e}"))?;
        Ok(Store { pool })
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        // IMMEDIATE takes the write lock first: two processes opening a new
        // file migrate one after the other.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            anyhow::bail!(
                "the state store was written by a newer Ebb (schema {version}, this binary knows {known}); upgrade ebb"
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            if i + 1 == REHASH_AFTER {
                rehash_snapshot(&mut tx).await?;
            }
            sqlx::raw_sql(&format!("PRAGMA user_version = {}", i + 1))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Snapshot entries whose key hash is in `lo..hi` (`hi` `None`: to the end).
    pub async fn snapshot_range(
        &self,
        sync: &str,
        lo: u128,
        hi: Option<u128>,
    ) -> Result<Vec<Entry>> {
        let rows: Vec<EntryColumns> = sqlx::query_as(
            "SELECT key_hash, key, fingerprint FROM snapshot \
             WHERE sync = ? AND key_hash >= ? AND key_hash < ?",
        )
        .bind(sync)
        .bind(hash_bytes(lo))
        .bind(range_end(hi))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Entry::from).collect())
    }

    /// Snapshot entries for these key hashes (those that exist).
    pub async fn snapshot_entries(&self, sync: &str, hashes: &[u128]) -> Result<Vec<Entry>> {
        let mut out = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "SELECT key_hash, key, fingerprint FROM snapshot WHERE sync = ? AND key_hash IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query_as::<_, EntryColumns>(&sql).bind(sync);
            for h in chunk {
                q = q.bind(hash_bytes(*h));
            }
            out.extend(q.fetch_all(&self.pool).await?.into_iter().map(Entry::from));
        }
        Ok(out)
    }

    pub async fn claim(&self, sync: &str, lease: Duration) -> anyhow::Result<Claim> {
        // IMMEDIATE takes the write lock first, so the read below cannot go
        // stale before the writes; the unique index is what forbids two
        // running runs.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_ms();
        let stale: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, heartbeat_at FROM runs \
             WHERE sync = ? AND status = 'running' AND heartbeat_at < ?",
        )
        .bind(sync)
        .bind(stale_before(now, lease))
        .fetch_all(&mut *tx)
        .await?;
        for (id, heartbeat_at) in stale {
            close_abandoned(&mut tx, now, id, heartbeat_at).await?;
        }
        for _ in 0..CLAIM_ATTEMPTS {
            let started: Option<i64> = sqlx::query_scalar(
                "INSERT INTO runs (sync, status, started_at, heartbeat_at) VALUES (?, 'running', ?, ?) \
                 ON CONFLICT (sync) WHERE status = 'running' DO NOTHING RETURNING id",
            )
            .bind(sync)
            .bind(now)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = started {
                tx.commit().await?;
                return Ok(Claim::Started(id));
            }
            let running: Option<i64> =
                sqlx::query_scalar("SELECT id FROM runs WHERE sync = ? AND status = 'running'")
                    .bind(sync)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(running) = running else { continue };
            let skipped = record_skipped(&mut tx, sync, now, running).await?;
            tx.commit().await?;
            return Ok(Claim::Busy { running, skipped });
        }
        Err(claim_contended(sync))
    }

    pub async fn skip_if_running(&self, sync: &str, lease: Duration) -> Result<Option<(i64, i64)>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_ms();
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE sync = ? AND status = 'running' AND heartbeat_at >= ?",
        )
        .bind(sync)
        .bind(stale_before(now, lease))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(running) = running else {
            return Ok(None);
        };
        let skipped = record_skipped(&mut tx, sync, now, running).await?;
        tx.commit().await?;
        Ok(Some((running, skipped)))
    }

    pub async fn heartbeat(&self, run_id: i64) -> Result<bool> {
        let beat = sqlx::query(BEAT)
            .bind(now_ms())
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(beat.rows_affected() == 1)
    }

    pub async fn last_sync_time(&self, sync: &str) -> Result<i64> {
        let t: Option<i64> =
            sqlx::query_scalar("SELECT last_sync_time FROM sync_state WHERE sync = ?")
                .bind(sync)
                .fetch_optional(&self.pool)
                .await?;
        Ok(t.unwrap_or(0))
    }

    pub async fn cursor(&self, sync: &str) -> Result<Option<Param>> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("SELECT cursor FROM sync_state WHERE sync = ?")
                .bind(sync)
                .fetch_optional(&self.pool)
                .await?;
        text.flatten().map(|t| json(&t)).transpose()
    }

    /// The committed records for these key hashes (those that exist).
    pub async fn records(&self, sync: &str, hashes: &[u128]) -> Result<HashMap<u128, Record>> {
        let mut out = HashMap::with_capacity(hashes.len());
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "SELECT key_hash, record FROM snapshot WHERE sync = ? AND key_hash IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query_as::<_, (Vec<u8>, String)>(&sql).bind(sync);
            for h in chunk {
                q = q.bind(hash_bytes(*h));
            }
            for (hash, record) in q.fetch_all(&self.pool).await? {
                out.insert(hash_of(hash), json(&record)?);
            }
        }
        Ok(out)
    }

    pub async fn commit(
        &self,
        sync: &str,
        run_id: i64,
        commits: &[Commit],
        errors: &[RowError],
        delivered: &[String],
    ) -> Result<bool> {
        if commits.is_empty() && errors.is_empty() && delivered.is_empty() {
            return Ok(true);
        }
        let mut tx = self.pool.begin().await?;
        let beat = sqlx::query(BEAT)
            .bind(now_ms())
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        if beat.rows_affected() == 0 {
            return Ok(false);
        }
        let columns = commit_columns(commits);
        // SQLite binds at most 32,766 parameters per statement.
        for chunk in columns.upserts.chunks(1000) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO snapshot (sync, key_hash, key, fingerprint, record) ",
            );
            q.push_values(chunk, |mut row, (hash, key, fingerprint, record)| {
                row.push_bind(sync)
                    .push_bind(hash)
                    .push_bind(*key)
                    .push_bind(fingerprint)
                    .push_bind(record);
            });
            q.push(
                " ON CONFLICT (sync, key_hash) DO UPDATE SET key = excluded.key, \
                 fingerprint = excluded.fingerprint, record = excluded.record",
            );
            q.build().execute(&mut *tx).await?;
        }
        for chunk in columns.deletes.chunks(1000) {
            let mut q = sqlx::QueryBuilder::new("DELETE FROM snapshot WHERE sync = ");
            q.push_bind(sync).push(" AND key_hash IN (");
            let mut list = q.separated(", ");
            for hash in chunk {
                list.push_bind(hash);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        let owes: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM row_errors WHERE sync = ?)")
                .bind(sync)
                .fetch_one(&mut *tx)
                .await?;
        if owes {
            for chunk in columns.keys.chunks(1000) {
                let mut q = sqlx::QueryBuilder::new("DELETE FROM row_errors WHERE sync = ");
                q.push_bind(sync).push(" AND key IN (");
                let mut list = q.separated(", ");
                for key in chunk {
                    list.push_bind(*key);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
        }
        for chunk in delivered.chunks(1000) {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO deliveries (sync, run_id, event) ");
            q.push_values(chunk, |mut row, event| {
                row.push_bind(sync).push_bind(run_id).push_bind(event);
            });
            q.build().execute(&mut *tx).await?;
        }
        for e in errors {
            let (fingerprint, record) = if_dropped_columns(e);
            sqlx::query(
                "INSERT INTO row_errors (sync, key, op, run_id, attempts, error, payload, fingerprint, record) \
                 VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?) \
                 ON CONFLICT (sync, key) DO UPDATE SET op = excluded.op, run_id = excluded.run_id, \
                 attempts = CASE WHEN row_errors.run_id = excluded.run_id THEN row_errors.attempts ELSE row_errors.attempts + 1 END, \
                 error = excluded.error, payload = excluded.payload, \
                 fingerprint = excluded.fingerprint, record = excluded.record",
            )
            .bind(sync)
            .bind(&e.key)
            .bind(e.op.as_str())
            .bind(run_id)
            .bind(&e.message)
            .bind(e.payload.to_string())
            .bind(fingerprint)
            .bind(record)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn finish(&self, sync: &str, run_id: i64, end: &RunEnd<'_>) -> Result<()> {
        let RunEnd {
            status,
            counts,
            timings_ms,
            error,
            cursor,
        } = *end;
        let mut tx = self.pool.begin().await?;
        let closed = sqlx::query("UPDATE runs SET status = ?, finished_at = ?, counts = ?, timings = ?, error = ? WHERE id = ? AND status = 'running'")
            .bind(status.as_str())
            .bind(now_ms())
            .bind(to_json(counts))
            .bind(timings_ms.to_string())
            .bind(error)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        if closed.rows_affected() == 0 {
            // Closed as abandoned by another process: its record stays so.
            return Ok(());
        }
        if matches!(status, Status::Success | Status::Partial) {
            sqlx::query("DELETE FROM row_errors WHERE sync = ? AND run_id < ?")
                .bind(sync)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
        }
        if status == Status::Success {
            sqlx::query(
                "INSERT INTO sync_state (sync, last_sync_time, cursor) \
                 SELECT sync, started_at / 1000, ? FROM runs WHERE id = ? \
                 ON CONFLICT (sync) DO UPDATE SET last_sync_time = excluded.last_sync_time, cursor = excluded.cursor",
            )
            .bind(cursor.map(to_json))
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    pub async fn history(&self, sync: &str, limit: i64) -> Result<Vec<RunRecord>> {
        let rows: Vec<RunColumns> = sqlx::query_as(
            "SELECT id, status, started_at, finished_at, counts, timings, error FROM runs \
             WHERE sync = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(sync)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(RunRecord::from).collect())
    }

    pub async fn owed(&self, sync: &str, run: Option<i64>) -> Result<Vec<OwedRow>> {
        let mut conn = self.pool.acquire().await?;
        Self::owed_in(&mut conn, sync, run).await
    }

    async fn owed_in(
        conn: &mut sqlx::SqliteConnection,
        sync: &str,
        run: Option<i64>,
    ) -> Result<Vec<OwedRow>> {
        let rows: Vec<OwedColumns> = sqlx::query_as(
            "SELECT key, op, run_id, attempts, error, payload FROM row_errors \
             WHERE sync = ? AND (? IS NULL OR run_id = ?) ORDER BY key",
        )
        .bind(sync)
        .bind(run)
        .bind(run)
        .fetch_all(conn)
        .await?;
        Ok(rows.into_iter().map(OwedRow::from).collect())
    }

    pub async fn drop_owed(&self, sync: &str, which: &Dropping<'_>) -> Result<Dropped> {
        let mut tx = self.pool.begin().await?;
        let rows = match which {
            Dropping::All { run } => Self::owed_in(&mut tx, sync, *run).await?,
            Dropping::Keys(keys) => {
                let mut rows = Vec::with_capacity(keys.len());
                let mut unknown = Vec::new();
                for key in *keys {
                    let row: Option<OwedColumns> = sqlx::query_as(
                        "SELECT key, op, run_id, attempts, error, payload FROM row_errors \
                         WHERE sync = ? AND key = ?",
                    )
                    .bind(sync)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match row {
                        Some(row) => rows.push(OwedRow::from(row)),
                        None => unknown.push(key.clone()),
                    }
                }
                if !unknown.is_empty() {
                    return Ok(Dropped::Unknown(unknown));
                }
                rows
            }
        };
        for row in &rows {
            let key_hash = hash_bytes(crate::diff::key_hash(&row.key));
            if row.op == "deleted" {
                sqlx::query("DELETE FROM snapshot WHERE sync = ? AND key_hash = ?")
                    .bind(sync)
                    .bind(&key_hash)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO snapshot (sync, key_hash, key, fingerprint, record) \
                     SELECT sync, ?, key, fingerprint, record FROM row_errors \
                     WHERE sync = ? AND key = ? AND fingerprint IS NOT NULL \
                     ON CONFLICT (sync, key_hash) DO UPDATE SET fingerprint = excluded.fingerprint, record = excluded.record",
                )
                .bind(&key_hash)
                .bind(sync)
                .bind(&row.key)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM row_errors WHERE sync = ? AND key = ?")
                .bind(sync)
                .bind(&row.key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Dropped::Rows(rows))
    }

    pub async fn deliveries(&self, sync: &str, run_id: i64) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT event FROM deliveries WHERE sync = ? AND run_id = ? ORDER BY id")
            .bind(sync)
            .bind(run_id)
            .fetch_all(&self.pool)
            .await
    }

    pub async fn prune_deliveries(&self, sync: &str, keep_runs: u32) -> Result<()> {
        sqlx::query(
            // A range below the oldest run kept (all of them when none is).
            "DELETE FROM deliveries WHERE sync = ?1 AND run_id < COALESCE( \
             (SELECT min(id) FROM (SELECT id FROM runs WHERE sync = ?1 ORDER BY id DESC LIMIT ?2) AS kept), \
             9223372036854775807)",
        )
        .bind(sync)
        .bind(i64::from(keep_runs))
        .execute(&self.pool)
        .await
        .map(drop)
    }

    pub async fn plan_schedule(&self, sync: &str, schedule: &str, due: Option<i64>) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedules (sync, schedule, due_at) VALUES (?, ?, ?) \
             ON CONFLICT (sync) DO UPDATE SET schedule = excluded.schedule, due_at = excluded.due_at \
             WHERE schedules.schedule IS NOT excluded.schedule",
        )
        .bind(sync)
        .bind(schedule)
        .bind(due)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    pub async fn take_due(
        &self,
        now: i64,
        next: &[(String, Option<i64>)],
    ) -> Result<Vec<(String, i64)>> {
        let mut taken = Vec::new();
        for (sync, next_due) in next {
            // IMMEDIATE: of two processes on one file, one takes the slot.
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let due: Option<i64> = sqlx::query_scalar(
                "SELECT due_at FROM schedules WHERE sync = ? AND due_at <= ? AND NOT disabled",
            )
            .bind(sync)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(due) = due {
                sqlx::query("UPDATE schedules SET due_at = ? WHERE sync = ?")
                    .bind(next_due)
                    .bind(sync)
                    .execute(&mut *tx)
                    .await?;
                taken.push((sync.clone(), due));
            }
            tx.commit().await?;
        }
        Ok(taken)
    }

    pub async fn take_over_stale(&self, lease: Duration) -> Result<Vec<(String, i64)>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_ms();
        let stale: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT sync, id, heartbeat_at FROM runs WHERE status = 'running' AND heartbeat_at < ?",
        )
        .bind(stale_before(now, lease))
        .fetch_all(&mut *tx)
        .await?;
        for (_, id, heartbeat_at) in &stale {
            close_abandoned(&mut tx, now, *id, *heartbeat_at).await?;
        }
        tx.commit().await?;
        Ok(stale.into_iter().map(|(sync, id, _)| (sync, id)).collect())
    }

    pub async fn set_disabled(&self, sync: &str, disabled: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedules (sync, disabled) VALUES (?, ?) \
             ON CONFLICT (sync) DO UPDATE SET disabled = excluded.disabled",
        )
        .bind(sync)
        .bind(disabled)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    pub async fn schedules(&self) -> Result<Vec<ScheduleColumns>> {
        sqlx::query_as("SELECT sync, due_at, disabled FROM schedules")
            .fetch_all(&self.pool)
            .await
    }

    pub async fn run(&self, sync: &str, run_id: i64) -> Result<Option<RunRecord>> {
        let row: Option<RunColumns> = sqlx::query_as(
            "SELECT id, status, started_at, finished_at, counts, timings, error FROM runs \
             WHERE sync = ? AND id = ?",
        )
        .bind(sync)
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(RunRecord::from))
    }

    pub async fn latest_runs(&self) -> Result<Vec<(String, RunRecord)>> {
        let rows: Vec<LatestColumns> = sqlx::query_as(
            "SELECT sync, id, status, started_at, finished_at, counts, timings, error FROM runs \
             WHERE id IN (SELECT max(id) FROM runs GROUP BY sync)",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(latest).collect())
    }

    pub async fn reset(&self, sync: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for table in ["snapshot", "row_errors", "sync_state"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE sync = ?"))
                .bind(sync)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}

/// Moves the rows of the snapshot as it was keyed before schema 3 into the
/// table keyed by key hash.
async fn rehash_snapshot(tx: &mut sqlx::SqliteConnection) -> Result<()> {
    let rows: Vec<(String, String, Vec<u8>, String)> =
        sqlx::query_as("SELECT sync, key, fingerprint, record FROM snapshot_by_key")
            .fetch_all(&mut *tx)
            .await?;
    for (sync, key, fingerprint, record) in rows {
        sqlx::query(
            "INSERT INTO snapshot (sync, key_hash, key, fingerprint, record) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(sync)
        .bind(hash_bytes(crate::diff::key_hash(&key)))
        .bind(&key)
        .bind(fingerprint)
        .bind(record)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::raw_sql("DROP TABLE snapshot_by_key")
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Records a trigger that found run `running` of `sync` in progress, as a
/// skipped run; returns its id.
async fn record_skipped(
    conn: &mut SqliteConnection,
    sync: &str,
    now: i64,
    running: i64,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO runs (sync, status, started_at, heartbeat_at, finished_at, error) \
         VALUES (?, 'skipped', ?, ?, ?, ?) RETURNING id",
    )
    .bind(sync)
    .bind(now)
    .bind(now)
    .bind(now)
    .bind(busy(running))
    .fetch_one(conn)
    .await
}

/// Closes run `id`, whose heartbeat stopped at `heartbeat_at`, as failed.
async fn close_abandoned(
    conn: &mut SqliteConnection,
    now: i64,
    id: i64,
    heartbeat_at: i64,
) -> Result<()> {
    sqlx::query("UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?")
        .bind(now)
        .bind(abandoned(heartbeat_at))
        .bind(id)
        .execute(conn)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written before runs were unique per sync may hold two
    /// `running` rows of one sync (a dead run and a later one); upgrading
    /// keeps the later, closes the other, and from then on the index holds.
    #[tokio::test]
    async fn upgrading_an_older_file_rehashes_the_snapshot_and_closes_extra_running_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let old = Store::connect(Store::options(&url).expect("url").create_if_missing(true))
            .await
            .expect("create");
        for sql in &MIGRATIONS[..2] {
            sqlx::raw_sql(sql)
                .execute(&old.pool)
                .await
                .expect("old schema");
        }
        sqlx::raw_sql("PRAGMA user_version = 2")
            .execute(&old.pool)
            .await
            .expect("old version");
        for sync in ["s", "s", "t"] {
            sqlx::query(
                "INSERT INTO runs (sync, status, started_at, heartbeat_at) VALUES (?, 'running', ?, ?)",
            )
            .bind(sync)
            .bind(now_ms())
            .bind(now_ms())
            .execute(&old.pool)
            .await
            .expect("old runs");
        }
        sqlx::query(
            "INSERT INTO snapshot (sync, key, fingerprint, record) VALUES ('s', 'k', ?, '{}')",
        )
        .bind(hash_bytes(7))
        .execute(&old.pool)
        .await
        .expect("old snapshot");
        old.pool.close().await;

        let store = Store::open(&url).await.expect("upgrade");
        // The snapshot moved to its key-hash order, fingerprints intact.
        let key_hash = crate::diff::key_hash("k");
        let entries = store
            .snapshot_entries("s", &[key_hash])
            .await
            .expect("entries");
        assert_eq!(
            entries,
            [Entry {
                key_hash,
                key: "k".into(),
                fingerprint: 7
            }]
        );
        let statuses: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, status FROM runs ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .expect("runs");
        let statuses: Vec<(i64, &str)> = statuses.iter().map(|(i, s)| (*i, s.as_str())).collect();
        assert_eq!(statuses, [(1, "failed"), (2, "running"), (3, "running")]);
        match store
            .claim("s", Duration::from_secs(30))
            .await
            .expect("claim")
        {
            Claim::Busy { running, .. } => assert_eq!(running, 2),
            Claim::Started(id) => panic!("run {id} started beside running run 2"),
        }
    }
}
