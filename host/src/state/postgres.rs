//! The shared state store: tables in a Postgres schema Ebb owns, so several
//! machines can run syncs against one state. `state.url` is a Postgres URL;
//! `?schema=NAME` on it picks the schema (default `ebb`), which becomes the
//! connections' `search_path`, so the statements here stay unqualified and
//! mirror sqlite.rs one for one; keep them that way.
//!
//! Migrations are the numbered statements below, recorded in
//! `schema_version` and applied when the store is opened, in one transaction
//! that first takes `pg_advisory_xact_lock` on the schema's name: processes
//! starting together migrate one after the other, and the later ones find
//! nothing left to do.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

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

/// The schema Ebb's tables live in unless the URL names one with `?schema=`.
const DEFAULT_SCHEMA: &str = "ebb";

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE snapshot (
    sync TEXT NOT NULL,
    key_hash BYTEA NOT NULL,
    key TEXT NOT NULL,
    fingerprint BYTEA NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (sync, key_hash)
);
CREATE TABLE runs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sync TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    finished_at BIGINT,
    counts TEXT NOT NULL DEFAULT '{}',
    timings TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
CREATE INDEX runs_by_sync ON runs (sync, id);
CREATE UNIQUE INDEX one_running_run ON runs (sync) WHERE status = 'running';
CREATE TABLE row_errors (
    sync TEXT NOT NULL,
    key TEXT NOT NULL,
    op TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    error TEXT NOT NULL,
    payload TEXT NOT NULL,
    fingerprint BYTEA,
    record TEXT,
    PRIMARY KEY (sync, key)
);
CREATE TABLE sync_state (
    sync TEXT PRIMARY KEY,
    last_sync_time BIGINT NOT NULL,
    cursor TEXT
);
"#,
    // What each run delivered, for `ebb replay`.
    r#"
CREATE TABLE deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sync TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX deliveries_by_run ON deliveries (sync, run_id, id);
"#,
    // When `ebb serve` next runs each sync, and which are switched off.
    r#"
CREATE TABLE schedules (
    sync TEXT PRIMARY KEY,
    schedule TEXT,
    due_at BIGINT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE
);
"#,
];

/// Marks a run alive, if it still is (another process may have closed it
/// as abandoned).
const BEAT: &str = "UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND status = 'running'";

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        let (store, schema) = Self::connect(url).await?;
        store.migrate(&schema).await?;
        Ok(store)
    }

    pub async fn open_existing(url: &str) -> anyhow::Result<Option<Store>> {
        let (store, schema) = Self::connect(url).await?;
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
             WHERE table_schema = $1 AND table_name = 'schema_version')",
        )
        .bind(&schema)
        .fetch_one(&store.pool)
        .await?;
        if !exists {
            return Ok(None);
        }
        store.migrate(&schema).await?;
        Ok(Some(store))
    }

    async fn connect(url: &str) -> anyhow::Result<(Store, String)> {
        let (url, schema) = split_schema(url)?;
        let opts = PgConnectOptions::from_str(&url)
            .map_err(|e| anyhow::anyhow!("state.url is not a usable Postgres URL: {e}"))?
            .options([("search_path", schema.as_str())]);
        let place = format!(
            "{}:{}/{}",
            opts.get_host(),
            opts.get_port(),
            opts.get_database().unwrap_or_default()
        );
        // One connection first: a pool that cannot connect only reports
        // that it timed out, not why.
        let first = opts.connect().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to the Postgres state store at {place} (state.url): {e}"
            )
        })?;
        first.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(opts);
        Ok((Store { pool }, schema))
    }

    async fn migrate(&self, schema: &str) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("ebb state schema {schema}"))
            .execute(&mut *tx)
            .await?;
        // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE right
        // on the database even when an administrator made the schema.
        let has_schema: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(&mut *tx)
                .await?;
        if !has_schema {
            // `schema` is a checked identifier (see `split_schema`).
            sqlx::raw_sql(&format!("CREATE SCHEMA \"{schema}\""))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot create the state schema `{schema}` ({e}); create it for Ebb's database user, or grant that user CREATE on the database"
                    )
                })?;
        }
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_version (\
             version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(&mut *tx)
        .await?;
        let version: i64 =
            sqlx::query_scalar("SELECT COALESCE(max(version), 0) FROM schema_version")
                .fetch_one(&mut *tx)
                .await?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            anyhow::bail!(
                "the state store (schema `{schema}`) was written by a newer Ebb (schema {version}, this binary knows {known}); upgrade ebb"
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(i as i64 + 1)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn claim(&self, sync: &str, lease: Duration) -> anyhow::Result<Claim> {
        // FOR UPDATE makes a racing claim wait and then see the stale run
        // closed; the unique index is what forbids two running runs.
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let stale: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, heartbeat_at FROM runs \
             WHERE sync = $1 AND status = 'running' AND heartbeat_at < $2 FOR UPDATE",
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
                "INSERT INTO runs (sync, status, started_at, heartbeat_at) VALUES ($1, 'running', $2, $3) \
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
                sqlx::query_scalar("SELECT id FROM runs WHERE sync = $1 AND status = 'running'")
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
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE sync = $1 AND status = 'running' AND heartbeat_at >= $2",
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
            sqlx::query_scalar("SELECT last_sync_time FROM sync_state WHERE sync = $1")
                .bind(sync)
                .fetch_optional(&self.pool)
                .await?;
        Ok(t.unwrap_or(0))
    }

    pub async fn cursor(&self, sync: &str) -> Result<Option<Param>> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("SELECT cursor FROM sync_state WHERE sync = $1")
                .bind(sync)
                .fetch_optional(&self.pool)
                .await?;
        text.flatten().map(|t| json(&t)).transpose()
    }

    pub async fn snapshot_range(
        &self,
        sync: &str,
        lo: u128,
        hi: Option<u128>,
    ) -> Result<Vec<Entry>> {
        let rows: Vec<EntryColumns> = sqlx::query_as(
            "SELECT key_hash, key, fingerprint FROM snapshot \
             WHERE sync = $1 AND key_hash >= $2 AND key_hash < $3",
        )
        .bind(sync)
        .bind(hash_bytes(lo))
        .bind(range_end(hi))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Entry::from).collect())
    }

    pub async fn snapshot_entries(&self, sync: &str, hashes: &[u128]) -> Result<Vec<Entry>> {
        let hashes: Vec<Vec<u8>> = hashes.iter().map(|h| hash_bytes(*h)).collect();
        let rows: Vec<EntryColumns> = sqlx::query_as(
            "SELECT key_hash, key, fingerprint FROM snapshot WHERE sync = $1 AND key_hash = ANY($2)",
        )
        .bind(sync)
        .bind(hashes)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Entry::from).collect())
    }

    pub async fn records(&self, sync: &str, hashes: &[u128]) -> Result<HashMap<u128, Record>> {
        let hashes: Vec<Vec<u8>> = hashes.iter().map(|h| hash_bytes(*h)).collect();
        let rows: Vec<(Vec<u8>, String)> = sqlx::query_as(
            "SELECT key_hash, record FROM snapshot WHERE sync = $1 AND key_hash = ANY($2)",
        )
        .bind(sync)
        .bind(hashes)
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for (hash, record) in rows {
            out.insert(hash_of(hash), json(&record)?);
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
        if !columns.upserts.is_empty() {
            let (mut hashes, mut keys, mut fingerprints, mut records) = (
                Vec::with_capacity(columns.upserts.len()),
                Vec::with_capacity(columns.upserts.len()),
                Vec::with_capacity(columns.upserts.len()),
                Vec::with_capacity(columns.upserts.len()),
            );
            for (hash, key, fingerprint, record) in columns.upserts {
                hashes.push(hash);
                keys.push(key);
                fingerprints.push(fingerprint);
                records.push(record);
            }
            sqlx::query(
                "INSERT INTO snapshot (sync, key_hash, key, fingerprint, record) \
                 SELECT $1, h, k, f, r FROM UNNEST($2::bytea[], $3::text[], $4::bytea[], $5::text[]) AS t (h, k, f, r) \
                 ON CONFLICT (sync, key_hash) DO UPDATE SET key = excluded.key, \
                 fingerprint = excluded.fingerprint, record = excluded.record",
            )
            .bind(sync)
            .bind(hashes)
            .bind(keys)
            .bind(fingerprints)
            .bind(records)
            .execute(&mut *tx)
            .await?;
        }
        if !columns.deletes.is_empty() {
            sqlx::query("DELETE FROM snapshot WHERE sync = $1 AND key_hash = ANY($2)")
                .bind(sync)
                .bind(columns.deletes)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM row_errors WHERE sync = $1 AND key = ANY($2)")
            .bind(sync)
            .bind(columns.keys)
            .execute(&mut *tx)
            .await?;
        if !delivered.is_empty() {
            sqlx::query(
                "INSERT INTO deliveries (sync, run_id, event) SELECT $1, $2, e FROM UNNEST($3::text[]) AS t (e)",
            )
            .bind(sync)
            .bind(run_id)
            .bind(delivered)
            .execute(&mut *tx)
            .await?;
        }
        for e in errors {
            let (fingerprint, record) = if_dropped_columns(e);
            sqlx::query(
                "INSERT INTO row_errors (sync, key, op, run_id, attempts, error, payload, fingerprint, record) \
                 VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8) \
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
        let closed = sqlx::query("UPDATE runs SET status = $1, finished_at = $2, counts = $3, timings = $4, error = $5 WHERE id = $6 AND status = 'running'")
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
            sqlx::query("DELETE FROM row_errors WHERE sync = $1 AND run_id < $2")
                .bind(sync)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
        }
        if status == Status::Success {
            sqlx::query(
                "INSERT INTO sync_state (sync, last_sync_time, cursor) \
                 SELECT sync, started_at / 1000, $1 FROM runs WHERE id = $2 \
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
             WHERE sync = $1 ORDER BY id DESC LIMIT $2",
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
        conn: &mut sqlx::PgConnection,
        sync: &str,
        run: Option<i64>,
    ) -> Result<Vec<OwedRow>> {
        let rows: Vec<OwedColumns> = sqlx::query_as(
            "SELECT key, op, run_id, attempts, error, payload FROM row_errors \
             WHERE sync = $1 AND ($2::BIGINT IS NULL OR run_id = $2) ORDER BY key",
        )
        .bind(sync)
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
                         WHERE sync = $1 AND key = $2 FOR UPDATE",
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
                sqlx::query("DELETE FROM snapshot WHERE sync = $1 AND key_hash = $2")
                    .bind(sync)
                    .bind(&key_hash)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO snapshot (sync, key_hash, key, fingerprint, record) \
                     SELECT sync, $3, key, fingerprint, record FROM row_errors \
                     WHERE sync = $1 AND key = $2 AND fingerprint IS NOT NULL \
                     ON CONFLICT (sync, key_hash) DO UPDATE SET fingerprint = excluded.fingerprint, record = excluded.record",
                )
                .bind(sync)
                .bind(&row.key)
                .bind(&key_hash)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM row_errors WHERE sync = $1 AND key = $2")
                .bind(sync)
                .bind(&row.key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Dropped::Rows(rows))
    }

    pub async fn deliveries(&self, sync: &str, run_id: i64) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT event FROM deliveries WHERE sync = $1 AND run_id = $2 ORDER BY id",
        )
        .bind(sync)
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn prune_deliveries(&self, sync: &str, keep_runs: u32) -> Result<()> {
        sqlx::query(
            // A range below the oldest run kept (all of them when none is).
            "DELETE FROM deliveries WHERE sync = $1 AND run_id < COALESCE( \
             (SELECT min(id) FROM (SELECT id FROM runs WHERE sync = $1 ORDER BY id DESC LIMIT $2) AS kept), \
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
            "INSERT INTO schedules (sync, schedule, due_at) VALUES ($1, $2, $3) \
             ON CONFLICT (sync) DO UPDATE SET schedule = excluded.schedule, due_at = excluded.due_at \
             WHERE schedules.schedule IS DISTINCT FROM excluded.schedule",
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
            // SKIP LOCKED: a slot another worker is taking is its, not ours.
            let mut tx = self.pool.begin().await?;
            let due: Option<i64> = sqlx::query_scalar(
                "SELECT due_at FROM schedules WHERE sync = $1 AND due_at <= $2 AND NOT disabled \
                 FOR UPDATE SKIP LOCKED",
            )
            .bind(sync)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(due) = due {
                sqlx::query("UPDATE schedules SET due_at = $1 WHERE sync = $2")
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
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let stale: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT sync, id, heartbeat_at FROM runs \
             WHERE status = 'running' AND heartbeat_at < $1 FOR UPDATE SKIP LOCKED",
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
            "INSERT INTO schedules (sync, disabled) VALUES ($1, $2) \
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
             WHERE sync = $1 AND id = $2",
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
            sqlx::query(&format!("DELETE FROM {table} WHERE sync = $1"))
                .bind(sync)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}

/// Takes `schema=NAME` out of the URL's query (sqlx would ignore it with a
/// warning), returning the URL without it and the schema to use.
fn split_schema(url: &str) -> anyhow::Result<(String, String)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = DEFAULT_SCHEMA;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("schema=") {
            Some(name) => schema = name,
            None => rest.push(pair),
        }
    }
    let valid = schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        anyhow::bail!(
            "state.url: schema `{schema}` is not a plain Postgres name; use lowercase letters, digits and _ (at most 63, not starting with a digit)"
        );
    }
    let url = match rest.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", rest.join("&")),
    };
    Ok((url, schema.to_string()))
}

/// Records a trigger that found run `running` of `sync` in progress, as a
/// skipped run; returns its id.
async fn record_skipped(
    conn: &mut PgConnection,
    sync: &str,
    now: i64,
    running: i64,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO runs (sync, status, started_at, heartbeat_at, finished_at, error) \
         VALUES ($1, 'skipped', $2, $3, $4, $5) RETURNING id",
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
    conn: &mut PgConnection,
    now: i64,
    id: i64,
    heartbeat_at: i64,
) -> Result<()> {
    sqlx::query("UPDATE runs SET status = 'failed', finished_at = $1, error = $2 WHERE id = $3")
        .bind(now)
        .bind(abandoned(heartbeat_at))
        .bind(id)
        .execute(conn)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::split_schema;

    #[test]
    fn the_schema_comes_off_the_url_and_defaults_to_ebb() {
        let split = |url: &str| split_schema(url).map_err(|e| e.to_string());
        assert_eq!(
            split("postgres://u@h/db"),
            Ok(("postgres://u@h/db".into(), "ebb".into()))
        );
        assert_eq!(
            split("postgres://u@h/db?sslmode=disable&schema=ebb_prod&application_name=x"),
            Ok((
                "postgres://u@h/db?sslmode=disable&application_name=x".into(),
                "ebb_prod".into()
            ))
        );
        let err = split("postgres://u:secret@h/db?schema=Ebb;drop").unwrap_err();
        assert!(err.contains("`Ebb;drop`"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}
