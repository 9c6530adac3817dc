//! The shared state store: tables in a Postgres schema Ebb owns, so several
//! machines can run syncs against one state. `state.url` is a Postgres URL;
//! `?schema=NAME` on it picks the schema (default `ebb`), which becomes the
//! connections' `search_path`, so the statements stay unqualified and are
//! the same as on SQLite.
//!
//! Migrations are the numbered statements below, recorded in
//! `schema_version` and applied when the store is opened, in one transaction
//! that first takes `pg_advisory_xact_lock` on the schema's name: processes
//! starting together migrate one after the other, and the later ones find
//! nothing left to do.
//!
//! Transactions that read and then write lock the rows they read (`FOR
//! UPDATE`, or `SKIP LOCKED` where another process may take a row instead),
//! and bulk writes bind whole columns as arrays (`UNNEST`, `= ANY`), one
//! statement a chunk however large.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Postgres};

use super::dialect::{Dialect, Lookup, Pool, RowLock, Tx};
use super::error::{Result, StateError};
use super::rows::{CommitColumns, hash_bytes};
use super::schema::{self, ColumnTypes, Migration};
use super::sql::{Columns, Driver, Stmt};

/// The schema Ebb's tables live in unless the URL names one with `?schema=`.
const DEFAULT_SCHEMA: &str = "ebb";

const MIGRATIONS: &[Migration] = &[
    Migration::Own(
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
    ),
    Migration::Alike(schema::deliveries),
    Migration::Alike(schema::schedules),
    Migration::Alike(schema::owed_delivery_ids),
    Migration::Alike(schema::run_kinds),
    Migration::Alike(schema::owed_delivered_events),
    Migration::OwedKeyOrder,
    Migration::Own(
        "
CREATE TABLE delivered (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sync TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    events BYTEA NOT NULL
);
CREATE INDEX delivered_by_run ON delivered (sync, run_id, id);
INSERT INTO delivered (sync, run_id, events)
    SELECT sync, run_id, convert_to(event, 'UTF8') FROM deliveries ORDER BY id;
DROP TABLE deliveries;
",
    ),
];

/// How this store spells the column types [`Migration::Alike`] uses.
const TYPES: ColumnTypes = ColumnTypes {
    serial: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    int: "BIGINT",
    flag: "BOOLEAN NOT NULL DEFAULT FALSE",
    bytes: "BYTEA",
};

/// A state store in a Postgres schema.
pub struct PgSchema {
    /// A checked identifier (see [`split_schema`]).
    name: String,
}

impl Dialect for PgSchema {
    type Db = Postgres;

    const MIGRATIONS: &'static [Migration] = MIGRATIONS;
    const TYPES: ColumnTypes = TYPES;
    const SNAPSHOT_RANGE: &'static str = "SELECT string_agg(key_hash || fingerprint, ''::bytea) FROM snapshot \
         WHERE sync = $1 AND key_hash >= $2 AND key_hash < $3";

    async fn connect(url: &str, create: bool) -> Result<Option<(PgPool, PgSchema)>> {
        let (url, name) = split_schema(url)?;
        let opts = PgConnectOptions::from_str(&url)
            .map_err(StateError::PostgresUrl)?
            .options([("search_path", name.as_str())]);
        let place = format!(
            "{}:{}/{}",
            opts.get_host(),
            opts.get_port(),
            opts.get_database().unwrap_or_default()
        );
        // One connection first: a pool that cannot connect only reports
        // that it timed out, not why.
        let first = opts
            .connect()
            .await
            .map_err(|error| StateError::Connect { place, error })?;
        first.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(opts);
        if !create && !has_store(&pool, &name).await? {
            return Ok(None);
        }
        Ok(Some((pool, PgSchema { name })))
    }

    fn describe(&self) -> String {
        format!("the state store (schema `{}`)", self.name)
    }

    async fn begin_migration(&self, pool: &PgPool) -> Result<Tx<Self>> {
        let schema = &self.name;
        let mut tx = pool.begin().await?;
        Self::query("SELECT 1 FROM pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("ebb state schema {schema}"))
            .execute(&mut tx)
            .await?;
        // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE right
        // on the database even when an administrator made the schema.
        let has_schema: bool =
            Self::query("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .scalar(&mut tx)
                .await?;
        if !has_schema {
            Postgres::script(&mut tx, &format!("CREATE SCHEMA \"{schema}\""))
                .await
                .map_err(|error| StateError::CreateSchema {
                    schema: schema.clone(),
                    error,
                })?;
        }
        Postgres::script(
            &mut tx,
            "CREATE TABLE IF NOT EXISTS schema_version (\
             version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
        Ok(tx)
    }

    async fn schema_version(conn: &mut PgConnection) -> sqlx::Result<i64> {
        Self::query("SELECT COALESCE(max(version), 0) FROM schema_version")
            .scalar(conn)
            .await
    }

    async fn migrated(conn: &mut PgConnection, version: usize) -> sqlx::Result<()> {
        Self::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind(version as i64)
            .execute(conn)
            .await
    }

    async fn begin_write(pool: &Pool<Self>) -> sqlx::Result<Tx<Self>> {
        pool.begin().await
    }

    fn lock(select: &'static str, lock: RowLock) -> Cow<'static, str> {
        Cow::Owned(match lock {
            RowLock::Wait => format!("{select} FOR UPDATE"),
            RowLock::Skip => format!("{select} FOR UPDATE SKIP LOCKED"),
        })
    }

    async fn by_key_hash<O: Columns>(
        conn: &mut PgConnection,
        at: Lookup<'_>,
    ) -> sqlx::Result<Vec<O>> {
        let hashes: Vec<Vec<u8>> = at.hashes.iter().map(|h| hash_bytes(*h)).collect();
        let sql = format!("{} = ANY($2)", at.select);
        Stmt::from(sqlx::query(&sql).bind(at.sync).bind(hashes))
            .fetch_all(conn)
            .await
    }

    async fn write_commit(conn: &mut PgConnection, chunk: &CommitColumns<'_>) -> sqlx::Result<()> {
        let CommitColumns {
            sync,
            run_id,
            upserts,
            deletes,
            keys,
            delivered,
            ..
        } = chunk;
        if !upserts.keys.is_empty() {
            let upsert = sqlx::query(
                "INSERT INTO snapshot (sync, key_hash, key, fingerprint, record) \
                 SELECT $1, h, k, f, r FROM UNNEST($2::bytea[], $3::text[], $4::bytea[], $5::text[]) AS t (h, k, f, r) \
                 ON CONFLICT (sync, key_hash) DO UPDATE SET key = excluded.key, \
                 fingerprint = excluded.fingerprint, record = excluded.record",
            )
            .bind(*sync)
            .bind(&upserts.hashes)
            .bind(&upserts.keys)
            .bind(&upserts.fingerprints)
            .bind(&upserts.records);
            Stmt::from(upsert).execute(conn).await?;
        }
        if !deletes.is_empty() {
            let delete = sqlx::query("DELETE FROM snapshot WHERE sync = $1 AND key_hash = ANY($2)")
                .bind(*sync)
                .bind(deletes);
            Stmt::from(delete).execute(conn).await?;
        }
        let settle = sqlx::query("DELETE FROM row_errors WHERE sync = $1 AND key = ANY($2)")
            .bind(*sync)
            .bind(keys);
        Stmt::from(settle).execute(conn).await?;
        if let Some(events) = delivered {
            let keep = sqlx::query::<Postgres>(
                "INSERT INTO delivered (sync, run_id, events) VALUES ($1, $2, $3)",
            )
            .bind(*sync)
            .bind(*run_id)
            .bind(&events[..]);
            Stmt::from(keep).execute(conn).await?;
        }
        Ok(())
    }
}

/// Whether Ebb has made its tables in `schema`.
async fn has_store(pool: &PgPool, schema: &str) -> sqlx::Result<bool> {
    let mut conn = pool.acquire().await?;
    PgSchema::query(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
         WHERE table_schema = $1 AND table_name = 'schema_version')",
    )
    .bind(schema)
    .scalar(&mut conn)
    .await
}

/// Takes `schema=NAME` out of the URL's query (sqlx would ignore it with a
/// warning), returning the URL without it and the schema to use.
fn split_schema(url: &str) -> Result<(String, String)> {
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
        return Err(StateError::BadSchema(schema.to_owned()));
    }
    let url = match rest.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", rest.join("&")),
    };
    Ok((url, schema.to_string()))
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
