//! The embedded state store: one SQLite file, WAL mode. Migrations are the
//! numbered statements below, tracked in `PRAGMA user_version`, so a newer
//! binary upgrades an older file in place.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{Claim, Commit, OwedRow, RowError, RunEnd, RunRecord, Status};
use crate::diff::Entry;
use crate::event::Record;
use crate::source::Param;

/// A run whose heartbeat is older than this is taken to be dead (runs beat
/// every few seconds; a killed process stops beating).
const STALE_AFTER: Duration = Duration::from_secs(30);

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
];

/// After this migration the snapshot is ordered by key hash, which SQL
/// cannot compute: its rows are copied over by [`rehash_snapshot`].
const REHASH_AFTER: usize = 3;

#[derive(Clone)]
pub struct State {
    pool: SqlitePool,
}

type Result<T> = std::result::Result<T, sqlx::Error>;

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl State {
    /// Opens (creating and migrating if needed) the store at `url`.
    pub async fn open(url: &str) -> anyhow::Result<State> {
        let opts = Self::options(url)?;
        if let Some(dir) = opts.get_filename().parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("cannot create the state folder {}: {e}", dir.display())
            })?;
        }
        let state = Self::connect(opts.create_if_missing(true)).await?;
        state.migrate().await?;
        Ok(state)
    }

    /// Opens the store only if it exists, for commands that must not create it.
    pub async fn open_existing(url: &str) -> anyhow::Result<Option<State>> {
        let opts = Self::options(url)?;
        if !opts.get_filename().exists() {
            return Ok(None);
        }
        let state = Self::connect(opts).await?;
        state.migrate().await?;
        Ok(Some(state))
    }

    fn options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
        if !url.starts_with("sqlite:") {
            anyhow::bail!(
                "state.url `{url}`: only sqlite:// state stores are supported by this build"
            );
        }
        Ok(SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("state.url `{url}`: {e}"))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30)))
    }

    async fn connect(opts: SqliteConnectOptions) -> anyhow::Result<State> {
        let file = opts.get_filename().display().to_string();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the state store {file}: {e}"))?;
        Ok(State { pool })
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
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
        let rows = sqlx::query(
            "SELECT key_hash, key, fingerprint FROM snapshot \
             WHERE sync = ? AND key_hash >= ? AND (? IS NULL OR key_hash < ?)",
        )
        .bind(sync)
        .bind(hash_bytes(lo))
        .bind(hi.map(hash_bytes))
        .bind(hi.map(hash_bytes))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry).collect()
    }

    /// Snapshot entries for these key hashes (those that exist).
    pub async fn snapshot_entries(&self, sync: &str, hashes: &[u128]) -> Result<Vec<Entry>> {
        let mut out = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "SELECT key_hash, key, fingerprint FROM snapshot WHERE sync = ? AND key_hash IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(&sql).bind(sync);
            for h in chunk {
                q = q.bind(hash_bytes(*h));
            }
            for row in q.fetch_all(&self.pool).await? {
                out.push(entry(&row)?);
            }
        }
        Ok(out)
    }

    /// Starts a run unless one of the same sync is alive.
    pub async fn claim(&self, sync: &str) -> Result<Claim> {
        // IMMEDIATE takes the write lock first, so two claims cannot both see "no run".
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_ms();
        sqlx::query(
            "UPDATE runs SET status = 'failed', finished_at = ?, \
             error = 'abandoned: the process running it stopped without finishing' \
             WHERE sync = ? AND status = 'running' AND heartbeat_at < ?",
        )
        .bind(now)
        .bind(sync)
        .bind(now - STALE_AFTER.as_millis() as i64)
        .execute(&mut *tx)
        .await?;
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE sync = ? AND status = 'running' ORDER BY id LIMIT 1",
        )
        .bind(sync)
        .fetch_optional(&mut *tx)
        .await?;
        let status = if running.is_some() {
            "skipped"
        } else {
            "running"
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (sync, status, started_at, heartbeat_at, finished_at, error) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(sync)
        .bind(status)
        .bind(now)
        .bind(now)
        .bind(running.map(|_| now))
        .bind(running.map(|r| format!("run {r} of this sync was still in progress")))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match running {
            Some(running) => Claim::Busy {
                running,
                skipped: id,
            },
            None => Claim::Started(id),
        })
    }

    pub async fn heartbeat(&self, run_id: i64) -> Result<()> {
        sqlx::query("UPDATE runs SET heartbeat_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Unix seconds of the start of the last successful run (0 if none since
    /// the last reset).
    pub async fn last_sync_time(&self, sync: &str) -> Result<i64> {
        let t: Option<i64> =
            sqlx::query_scalar("SELECT last_sync_time FROM sync_state WHERE sync = ?")
                .bind(sync)
                .fetch_optional(&self.pool)
                .await?;
        Ok(t.unwrap_or(0))
    }

    /// The cursor a cursor model's last successful run left (see [`crate::cursor`]).
    pub async fn cursor(&self, sync: &str) -> Result<Option<Param>> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("SELECT cursor FROM sync_state WHERE sync = ?")
                .bind(sync)
                .fetch_optional(&self.pool)
                .await?;
        text.flatten()
            .map(|t| serde_json::from_str(&t).map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .transpose()
    }

    /// The committed records for these key hashes (those that exist).
    pub async fn records(&self, sync: &str, hashes: &[u128]) -> Result<HashMap<u128, Record>> {
        let mut out = HashMap::with_capacity(hashes.len());
        for chunk in hashes.chunks(500) {
            let sql = format!(
                "SELECT key_hash, record FROM snapshot WHERE sync = ? AND key_hash IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(&sql).bind(sync);
            for h in chunk {
                q = q.bind(hash_bytes(*h));
            }
            for row in q.fetch_all(&self.pool).await? {
                let text: String = row.get(1);
                let record: Record =
                    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                out.insert(hash_of(row.get(0))?, record);
            }
        }
        Ok(out)
    }

    /// Moves acknowledged changes into the snapshot and records row errors,
    /// atomically.
    pub async fn commit(
        &self,
        sync: &str,
        run_id: i64,
        commits: &[Commit],
        errors: &[RowError],
    ) -> Result<()> {
        if commits.is_empty() && errors.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for c in commits {
            let key = match c {
                Commit::Upsert {
                    key,
                    key_hash,
                    fingerprint,
                    record,
                } => {
                    sqlx::query(
                        "INSERT INTO snapshot (sync, key_hash, key, fingerprint, record) VALUES (?, ?, ?, ?, ?) \
                         ON CONFLICT (sync, key_hash) DO UPDATE SET key = excluded.key, fingerprint = excluded.fingerprint, record = excluded.record",
                    )
                    .bind(sync)
                    .bind(hash_bytes(*key_hash))
                    .bind(key)
                    .bind(hash_bytes(*fingerprint))
                    .bind(serde_json::to_string(record).unwrap_or_default())
                    .execute(&mut *tx)
                    .await?;
                    key
                }
                Commit::Delete { key, key_hash } => {
                    sqlx::query("DELETE FROM snapshot WHERE sync = ? AND key_hash = ?")
                        .bind(sync)
                        .bind(hash_bytes(*key_hash))
                        .execute(&mut *tx)
                        .await?;
                    key
                }
            };
            sqlx::query("DELETE FROM row_errors WHERE sync = ? AND key = ?")
                .bind(sync)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        for e in errors {
            sqlx::query(
                "INSERT INTO row_errors (sync, key, op, run_id, attempts, error, payload) VALUES (?, ?, ?, ?, 1, ?, ?) \
                 ON CONFLICT (sync, key) DO UPDATE SET op = excluded.op, run_id = excluded.run_id, \
                 attempts = CASE WHEN row_errors.run_id = excluded.run_id THEN row_errors.attempts ELSE row_errors.attempts + 1 END, \
                 error = excluded.error, payload = excluded.payload",
            )
            .bind(sync)
            .bind(&e.key)
            .bind(e.op.as_str())
            .bind(run_id)
            .bind(&e.message)
            .bind(e.payload.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Closes a run. A run that went through every change also clears owed
    /// rows it did not meet again (they are no longer owed); a successful
    /// one moves `{{last_sync_time}}` to its start and `{{cursor}}` to
    /// `cursor`.
    pub async fn finish(&self, sync: &str, run_id: i64, end: &RunEnd<'_>) -> Result<()> {
        let RunEnd {
            status,
            counts,
            timings_ms,
            error,
            cursor,
        } = *end;
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE runs SET status = ?, finished_at = ?, counts = ?, timings = ?, error = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(now_ms())
            .bind(serde_json::to_string(counts).unwrap_or_default())
            .bind(timings_ms.to_string())
            .bind(error)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
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
            .bind(cursor.and_then(|c| serde_json::to_string(c).ok()))
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    pub async fn history(&self, sync: &str, limit: i64) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT id, status, started_at, finished_at, counts, timings, error FROM runs \
             WHERE sync = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(sync)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| RunRecord {
                run_id: r.get(0),
                status: Status::parse(r.get(1)),
                started_at: time(r.get(2)),
                finished_at: r.get::<Option<i64>, _>(3).map(time),
                counts: serde_json::from_str(r.get(4)).unwrap_or_default(),
                timings_ms: serde_json::from_str(r.get(5)).unwrap_or_default(),
                error: r.get(6),
            })
            .collect())
    }

    pub async fn owed(&self, sync: &str, run: Option<i64>) -> Result<Vec<OwedRow>> {
        let rows = sqlx::query(
            "SELECT key, op, run_id, attempts, error, payload FROM row_errors \
             WHERE sync = ? AND (? IS NULL OR run_id = ?) ORDER BY key",
        )
        .bind(sync)
        .bind(run)
        .bind(run)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| OwedRow {
                key: r.get(0),
                op: r.get(1),
                run_id: r.get(2),
                attempts: r.get(3),
                error: r.get(4),
                payload: serde_json::from_str(r.get(5)).unwrap_or_default(),
            })
            .collect())
    }

    /// Forgets what the sync delivered; its run history stays.
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

/// Hashes are stored big-endian, so the database's byte order is their
/// numeric order and a partition is a contiguous range.
fn hash_bytes(h: u128) -> Vec<u8> {
    h.to_be_bytes().to_vec()
}

fn hash_of(bytes: Vec<u8>) -> Result<u128> {
    bytes
        .try_into()
        .map(u128::from_be_bytes)
        .map_err(|_| sqlx::Error::Decode("a snapshot hash is not 16 bytes".into()))
}

fn entry(row: &sqlx::sqlite::SqliteRow) -> Result<Entry> {
    Ok(Entry {
        key_hash: hash_of(row.get(0))?,
        key: row.get(1),
        fingerprint: hash_of(row.get(2))?,
    })
}

/// Moves the rows of the snapshot as it was keyed before schema 3 into the
/// table keyed by key hash.
async fn rehash_snapshot(tx: &mut sqlx::SqliteConnection) -> Result<()> {
    let rows = sqlx::query("SELECT sync, key, fingerprint, record FROM snapshot_by_key")
        .fetch_all(&mut *tx)
        .await?;
    for row in rows {
        let key: String = row.get(1);
        sqlx::query(
            "INSERT INTO snapshot (sync, key_hash, key, fingerprint, record) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(row.get::<String, _>(0))
        .bind(hash_bytes(crate::diff::key_hash(&key)))
        .bind(&key)
        .bind(row.get::<Vec<u8>, _>(2))
        .bind(row.get::<String, _>(3))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::raw_sql("DROP TABLE snapshot_by_key")
        .execute(&mut *tx)
        .await?;
    Ok(())
}
