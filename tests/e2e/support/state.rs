//! Where a test's Ebb keeps its state: the default SQLite file in the
//! project, or a schema of its own in the local Postgres (named uniquely,
//! created by Ebb itself on first use, dropped when the test ends). Tests
//! reach into the store only to stage what a binary cannot, such as a run
//! whose process died long ago, or to see what a process killed before it
//! could report had committed.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::runtime::Runtime;

use super::warehouse::{POSTGRES_URL, postgres_or_skip, runtime, unique_schema};

/// Ages the heartbeat of every running run by a minute, past the 30 s after
/// which the next claim closes it as abandoned: what a killed process's run
/// looks like once that time has passed, without waiting for it.
pub const STALE_RUNS: &str =
    "UPDATE runs SET heartbeat_at = heartbeat_at - 60000 WHERE status = 'running'";

pub struct PostgresState {
    rt: Runtime,
    pool: PgPool,
    schema: String,
}

impl PostgresState {
    /// A state schema name nobody uses yet, or `None` (after saying so)
    /// when no Postgres is reachable outside CI.
    pub fn new() -> Option<PostgresState> {
        let rt = runtime();
        let pool = postgres_or_skip(&rt)?;
        Some(PostgresState {
            rt,
            pool,
            schema: unique_schema(),
        })
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `state.url` for this store.
    pub fn url(&self) -> String {
        format!("{POSTGRES_URL}?schema={}", self.schema)
    }

    /// Runs one statement with the state schema first on the search path.
    pub fn exec(&self, sql: &str) {
        let sql = format!("SET search_path TO {}; {sql}", self.schema);
        self.rt
            .block_on(sqlx::raw_sql(&sql).execute(&self.pool))
            .unwrap_or_else(|e| panic!("state statement failed: {sql}: {e}"));
    }

    /// The migrations recorded in `schema_version`, in order (empty if Ebb
    /// has not created the schema).
    pub fn versions(&self) -> Vec<i64> {
        let sql = format!(
            "SELECT version FROM {}.schema_version ORDER BY version",
            self.schema
        );
        self.rt
            .block_on(sqlx::query_scalar(&sql).fetch_all(&self.pool))
            .unwrap_or_default()
    }

    /// The records the snapshot holds for `sync`, by key: what Ebb has
    /// committed as delivered (a deletion, by the key's absence). The keys
    /// come from the table; the records, packed in blocks, through Ebb's
    /// own reader.
    pub fn snapshot(&self, sync: &str) -> BTreeMap<String, Value> {
        let sql = format!("SELECT key FROM {}.snapshot WHERE sync = $1", self.schema);
        let keys: Vec<String> = self
            .rt
            .block_on(sqlx::query_scalar(&sql).bind(sync).fetch_all(&self.pool))
            .unwrap_or_else(|e| panic!("reading the snapshot of {sync}: {e}"));
        let hashes: Vec<u128> = keys.iter().map(|k| ebb::diff::key_hash(k)).collect();
        let mut records = self
            .rt
            .block_on(async {
                let state = ebb::state::State::open(&self.url()).await?;
                state.records(sync, &hashes).await
            })
            .unwrap_or_else(|e| panic!("reading the records of {sync}: {e}"));
        keys.into_iter()
            .zip(hashes)
            .map(|(key, hash)| {
                let fields = records
                    .remove(&hash)
                    .unwrap_or_else(|| panic!("no record of {key} in the snapshot"));
                let record = serde_json::from_str(fields.json())
                    .unwrap_or_else(|e| panic!("snapshot record of {key} is not JSON: {e}"));
                (key, record)
            })
            .collect()
    }

    /// The records of a table of the same database with `sync`, `key` and
    /// `record` columns, by key: a warehouse's `diff = "warehouse"`
    /// snapshot.
    pub fn snapshot_in(&self, table: &str, sync: &str) -> BTreeMap<String, Value> {
        let sql = format!("SELECT key, record FROM {table} WHERE sync = $1");
        let rows: Vec<(String, String)> = self
            .rt
            .block_on(sqlx::query_as(&sql).bind(sync).fetch_all(&self.pool))
            .unwrap_or_else(|e| panic!("reading the snapshot of {sync}: {e}"));
        rows.into_iter()
            .map(|(key, record)| {
                let record = serde_json::from_str(&record)
                    .unwrap_or_else(|e| panic!("snapshot record of {key} is not JSON: {e}"));
                (key, record)
            })
            .collect()
    }
}

impl Drop for PostgresState {
    fn drop(&mut self) {
        let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        if let Err(e) = self.rt.block_on(sqlx::query(&drop).execute(&self.pool)) {
            eprintln!("could not drop state schema {}: {e}", self.schema);
        }
        self.rt.block_on(self.pool.close());
    }
}

/// Runs one statement on a SQLite state file.
pub fn sqlite_exec(file: &Path, sql: &str) {
    let rt = runtime();
    rt.block_on(async {
        let mut conn = SqliteConnectOptions::new().filename(file).connect().await?;
        sqlx::raw_sql(sql).execute(&mut conn).await?;
        conn.close().await
    })
    .unwrap_or_else(|e| panic!("state statement failed on {}: {sql}: {e}", file.display()));
}

/// One integer a query returns from a SQLite state file.
pub fn sqlite_scalar(file: &Path, sql: &str) -> i64 {
    let rt = runtime();
    rt.block_on(async {
        let mut conn = SqliteConnectOptions::new().filename(file).connect().await?;
        let value: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok::<_, sqlx::Error>(value)
    })
    .unwrap_or_else(|e| panic!("state query failed on {}: {sql}: {e}", file.display()))
}
