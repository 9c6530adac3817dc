//! The embedded state store: one SQLite file, WAL mode. Migrations are the
//! numbered statements below, tracked in `PRAGMA user_version`, so a newer
//! binary upgrades an older file in place.
//!
//! Checkpoints copy the log into the file beside the writes (checkpoint.rs).
//!
//! One transaction at a time writes to the file. One that reads and then
//! writes begins IMMEDIATE, taking the write lock before it reads, so what
//! it read cannot change before it writes; there are no row locks to take.
//! Bulk writes are multi-row `VALUES` and `IN` lists, kept under SQLite's
//! limit of 32,766 parameters a statement.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Encode, QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Type};

use super::checkpoint::{Checkpointer, WAL_PAGES};
use super::dialect::{Dialect, Lookup, Pool, RowLock, Tx};
use super::error::{Result, StateError};
use super::packing::Packed;
use super::record_blocks;
use super::rows::{CommitColumns, SnapshotRows, hash_bytes};
use super::schema::{self, ColumnTypes, Migration};
use super::sql::{Columns, Driver, Stmt};

/// Rows the SQLite worker may read ahead of the task taking them.
const ROW_CHANNEL: usize = 4096;

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Rows (or values) written by one bulk statement.
const CHUNK: usize = 1000;

/// Key hashes looked up by one statement.
const LOOKUP_CHUNK: usize = 500;

const MIGRATIONS: &[Migration] = &[
    Migration::Own(
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
    ),
    Migration::Own(
        r#"
ALTER TABLE sync_state ADD COLUMN cursor TEXT;
"#,
    ),
    // One running run per sync, enforced by the database; and what the
    // snapshot takes when an owed row is dropped.
    Migration::Own(
        r#"
UPDATE runs SET status = 'failed', error = 'abandoned: a later run of this sync started'
WHERE status = 'running' AND id NOT IN (SELECT max(id) FROM runs WHERE status = 'running' GROUP BY sync);
CREATE UNIQUE INDEX one_running_run ON runs (sync) WHERE status = 'running';
ALTER TABLE row_errors ADD COLUMN fingerprint BLOB;
ALTER TABLE row_errors ADD COLUMN record TEXT;
"#,
    ),
    Migration::Own(
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
    id INTEGER PRIMARY KEY,
    sync TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    events BLOB NOT NULL
);
CREATE INDEX delivered_by_run ON delivered (sync, run_id, id);
INSERT INTO delivered (sync, run_id, events)
    SELECT sync, run_id, CAST(event AS BLOB) FROM deliveries ORDER BY id;
DROP TABLE deliveries;
",
    ),
    Migration::RecordBlocks {
        add: "
CREATE TABLE record_blocks (
    id INTEGER PRIMARY KEY,
    sync TEXT NOT NULL,
    size INTEGER NOT NULL,
    live INTEGER NOT NULL
);
CREATE TABLE record_block_bytes (
    id INTEGER PRIMARY KEY,
    records BLOB NOT NULL
);
CREATE INDEX record_blocks_sparse ON record_blocks (sync, id) WHERE live < (size + 1) / 2;
ALTER TABLE snapshot RENAME TO snapshot_with_records;
CREATE TABLE snapshot (
    sync TEXT NOT NULL,
    key_hash BLOB NOT NULL,
    key TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    place INTEGER NOT NULL,
    PRIMARY KEY (sync, key_hash)
) WITHOUT ROWID;
",
        then: "
DROP TABLE snapshot_with_records;
CREATE TRIGGER snapshot_record_replaced AFTER UPDATE OF place ON snapshot
    WHEN old.place <> new.place
    BEGIN UPDATE record_blocks SET live = live - 1 WHERE id = old.place / 16; END;
CREATE TRIGGER snapshot_record_deleted AFTER DELETE ON snapshot
    BEGIN UPDATE record_blocks SET live = live - 1 WHERE id = old.place / 16; END;
",
    },
];

/// After this migration the snapshot is ordered by key hash, which SQL
/// cannot compute: its rows are copied over by [`rehash_snapshot`].
const REHASH_AFTER: usize = 4;

/// How this store spells the column types [`Migration::Alike`] uses.
const TYPES: ColumnTypes = ColumnTypes {
    serial: "INTEGER PRIMARY KEY",
    int: "INTEGER",
    flag: "INTEGER NOT NULL DEFAULT 0",
    bytes: "BLOB",
};

/// A state store in a SQLite file.
pub struct SqliteFile {
    checkpointer: Checkpointer,
}

impl Dialect for SqliteFile {
    type Db = Sqlite;

    const MIGRATIONS: &'static [Migration] = MIGRATIONS;
    const TYPES: ColumnTypes = TYPES;
    const SNAPSHOT_RANGE: &'static str = "SELECT CAST(group_concat(key_hash || fingerprint, '') AS BLOB) FROM snapshot \
         WHERE sync = $1 AND key_hash >= $2 AND key_hash < $3";
    // One writer at a time holds the file, so the next ids are free.
    const BLOCK_IDS: &'static str = "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         SELECT (SELECT COALESCE(max(id), 0) FROM record_blocks) + i FROM n";

    async fn connect(url: &str, create: bool) -> Result<Option<(SqlitePool, SqliteFile)>> {
        let opts = options(url)?;
        let file = opts.get_filename();
        if !create && !file.exists() {
            return Ok(None);
        }
        if create && let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|error| StateError::Folder {
                dir: dir.to_owned(),
                error,
            })?;
        }
        let pool = connect(opts.create_if_missing(create)).await?;
        let checkpointer = Checkpointer::start(pool.clone());
        Ok(Some((pool, SqliteFile { checkpointer })))
    }

    fn describe(&self) -> String {
        "the state store".into()
    }

    fn committed(&self) {
        self.checkpointer.committed();
    }

    async fn begin_migration(&self, pool: &SqlitePool) -> Result<Tx<Self>> {
        // Two processes opening a new file migrate one after the other.
        Ok(Self::begin_write(pool).await?)
    }

    async fn schema_version(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
        Self::query("PRAGMA user_version").scalar(conn).await
    }

    async fn migrated(conn: &mut SqliteConnection, version: usize) -> sqlx::Result<()> {
        if version == REHASH_AFTER {
            rehash_snapshot(conn).await?;
        }
        Sqlite::script(conn, &format!("PRAGMA user_version = {version}")).await
    }

    async fn begin_write(pool: &Pool<Self>) -> sqlx::Result<Tx<Self>> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// The write lock taken at `BEGIN IMMEDIATE` holds the whole file.
    fn lock(select: &'static str, _: RowLock) -> Cow<'static, str> {
        Cow::Borrowed(select)
    }

    async fn by_key_hash<O: Columns>(
        conn: &mut SqliteConnection,
        lookup: Lookup<'_>,
    ) -> sqlx::Result<Vec<O>> {
        let mut out = Vec::with_capacity(lookup.hashes.len());
        for chunk in lookup.hashes.chunks(LOOKUP_CHUNK) {
            let list: Vec<String> = (2..chunk.len() + 2).map(|n| format!("${n}")).collect();
            let sql = format!("{} IN ({})", lookup.select, list.join(","));
            let mut q = Self::query(&sql).bind(lookup.sync);
            for h in chunk {
                q = q.bind(hash_bytes(*h));
            }
            out.extend(q.fetch_all::<O>(conn).await?);
        }
        Ok(out)
    }

    async fn insert_blocks(
        conn: &mut SqliteConnection,
        sync: &str,
        ids: &[i64],
        blocks: &[Packed],
    ) -> sqlx::Result<()> {
        for start in (0..ids.len()).step_by(CHUNK) {
            let rows = start..ids.len().min(start + CHUNK);
            let mut q =
                QueryBuilder::<Sqlite>::new("INSERT INTO record_blocks (id, sync, size, live) ");
            q.push_values(rows.clone(), |mut row, i| {
                row.push_bind(ids[i])
                    .push_bind(sync)
                    .push_bind(blocks[i].size)
                    .push_bind(blocks[i].size);
            });
            Stmt::from(q.build()).execute(&mut *conn).await?;
            let mut q =
                QueryBuilder::<Sqlite>::new("INSERT INTO record_block_bytes (id, records) ");
            q.push_values(rows, |mut row, i| {
                row.push_bind(ids[i]).push_bind(&blocks[i].bytes[..]);
            });
            Stmt::from(q.build()).execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn upsert_snapshot(
        conn: &mut SqliteConnection,
        sync: &str,
        rows: &SnapshotRows<'_>,
    ) -> sqlx::Result<()> {
        let n = rows.keys.len();
        for start in (0..n).step_by(CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO snapshot (sync, key_hash, key, fingerprint, place) ",
            );
            q.push_values(start..n.min(start + CHUNK), |mut row, i| {
                row.push_bind(sync)
                    .push_bind(&rows.hashes[i][..])
                    .push_bind(rows.keys[i])
                    .push_bind(&rows.fingerprints[i][..])
                    .push_bind(rows.places[i]);
            });
            q.push(
                " ON CONFLICT (sync, key_hash) DO UPDATE SET key = excluded.key, \
                 fingerprint = excluded.fingerprint, place = excluded.place",
            );
            Stmt::from(q.build()).execute(conn).await?;
        }
        Ok(())
    }

    async fn write_commit(
        conn: &mut SqliteConnection,
        chunk: &CommitColumns<'_>,
    ) -> sqlx::Result<()> {
        let sync = chunk.sync;
        record_blocks::upsert::<Self>(conn, sync, &chunk.upserts).await?;
        delete_in(conn, "snapshot", "key_hash", sync, &chunk.deletes).await?;
        // Most commits settle keys nobody owes: one lookup spares them the
        // deletes.
        let owes: bool = Self::query("SELECT EXISTS (SELECT 1 FROM row_errors WHERE sync = $1)")
            .bind(sync)
            .scalar(&mut *conn)
            .await?;
        if owes {
            delete_in(conn, "row_errors", "key", sync, &chunk.keys).await?;
        }
        if let Some(events) = &chunk.delivered {
            Self::query("INSERT INTO delivered (sync, run_id, events) VALUES ($1, $2, $3)")
                .bind(sync)
                .bind(chunk.run_id)
                .bind(&events[..])
                .execute(&mut *conn)
                .await?;
        }
        record_blocks::tidy::<Self>(conn, sync, chunk.changed()).await
    }
}

fn options(url: &str) -> Result<SqliteConnectOptions> {
    let opts = SqliteConnectOptions::from_str(url).map_err(|error| StateError::SqliteUrl {
        url: url.to_owned(),
        error,
    })?;
    Ok(opts
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .pragma("wal_autocheckpoint", WAL_PAGES.to_string())
        .busy_timeout(BUSY_TIMEOUT)
        // SQLite runs on a worker thread that hands rows over a channel;
        // at sqlx's default of 50 the reader and the worker wake each
        // other every few rows of a snapshot range.
        .row_buffer_size(ROW_CHANNEL)
        // A multi-row upsert keeps a statement journal: in memory, not in
        // a temporary file.
        .pragma("temp_store", "memory"))
}

/// Opens the pool, waiting out another process that holds the file's lock
/// while it opens or migrates it.
///
/// Switching a new file to WAL takes an exclusive lock, and SQLite answers
/// a second process doing the same at the same moment with "database is
/// locked" at once, without waiting out `busy_timeout`, so opening is
/// retried here for as long as that timeout.
async fn connect(opts: SqliteConnectOptions) -> Result<SqlitePool> {
    let file = opts.get_filename().display().to_string();
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(10);
    loop {
        match SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.clone())
            .await
        {
            Err(error) if is_busy(&error) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            opened => return opened.map_err(|error| StateError::Open { file, error }),
        }
    }
}

/// Whether SQLite refused because another connection holds a lock
/// (`SQLITE_BUSY` or `SQLITE_LOCKED`, with any extended code).
fn is_busy(error: &sqlx::Error) -> bool {
    let Some(code) = error.as_database_error().and_then(|e| e.code()) else {
        return false;
    };
    code.parse::<i32>()
        .is_ok_and(|code| matches!(code & 0xff, 5 | 6))
}

/// Deletes the sync's rows of `table` whose `column` is one of `values`,
/// CHUNK values a statement.
async fn delete_in<'a, T>(
    conn: &mut SqliteConnection,
    table: &str,
    column: &str,
    sync: &'a str,
    values: &'a [T],
) -> sqlx::Result<()>
where
    &'a T: Encode<'a, Sqlite> + Type<Sqlite> + Send,
{
    for chunk in values.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE sync = "));
        q.push_bind(sync).push(format_args!(" AND {column} IN ("));
        let mut list = q.separated(", ");
        for value in chunk {
            list.push_bind(value);
        }
        q.push(")");
        Stmt::from(q.build()).execute(conn).await?;
    }
    Ok(())
}

/// Moves the rows of the snapshot as it was keyed before schema 3 into the
/// table keyed by key hash.
async fn rehash_snapshot(conn: &mut SqliteConnection) -> sqlx::Result<()> {
    let rows: Vec<(String, String, Vec<u8>, String)> =
        SqliteFile::query("SELECT sync, key, fingerprint, record FROM snapshot_by_key")
            .fetch_all(conn)
            .await?;
    for (sync, key, fingerprint, record) in rows {
        SqliteFile::query(
            "INSERT INTO snapshot (sync, key_hash, key, fingerprint, record) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sync)
        .bind(hash_bytes(crate::diff::key_hash(&key)))
        .bind(key)
        .bind(fingerprint)
        .bind(record)
        .execute(conn)
        .await?;
    }
    Sqlite::script(conn, "DROP TABLE snapshot_by_key").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Entry;
    use crate::state::owed::OwedRows;
    use crate::state::rows::now_ms;
    use crate::state::runs::Runs;
    use crate::state::snapshot::Snapshots;
    use crate::state::store::Store;
    use crate::state::types::{Batch, Claim, EventLines};
    use crate::status::Counts;

    /// Processes started together (two `ebb run`s, a run beside `ebb serve`)
    /// all open and migrate a new file at once; each waits its turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn stores_opening_one_new_file_together_all_open_it() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("state.db").display());
            let opening: Vec<_> = (0..8)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move { Store::<SqliteFile>::open(&url, true).await })
                })
                .collect();
            for store in opening {
                let store = store.await.expect("task");
                assert!(matches!(store, Ok(Some(_))), "{:?}", store.err());
            }
        }
    }

    /// A file written before runs were unique per sync may hold two
    /// `running` rows of one sync (a dead run and a later one); upgrading
    /// keeps the later, closes the other, and from then on the index holds.
    #[tokio::test]
    async fn upgrading_an_older_file_moves_the_snapshot_and_closes_extra_running_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let old = connect(options(&url).expect("url").create_if_missing(true))
            .await
            .expect("create");
        for migration in &MIGRATIONS[..2] {
            let sql = migration.sql(&TYPES);
            sqlx::raw_sql(&sql).execute(&old).await.expect("old schema");
        }
        sqlx::raw_sql("PRAGMA user_version = 2")
            .execute(&old)
            .await
            .expect("old version");
        for sync in ["s", "s", "t"] {
            sqlx::query(
                "INSERT INTO runs (sync, status, started_at, heartbeat_at) VALUES (?, 'running', ?, ?)",
            )
            .bind(sync)
            .bind(now_ms())
            .bind(now_ms())
            .execute(&old)
            .await
            .expect("old runs");
        }
        sqlx::query(
            r#"INSERT INTO snapshot (sync, key, fingerprint, record) VALUES ('s', 'k', ?, '{"a":1}')"#,
        )
        .bind(hash_bytes(7))
        .execute(&old)
        .await
        .expect("old snapshot");
        old.close().await;

        let store = Store::<SqliteFile>::open(&url, true)
            .await
            .expect("upgrade")
            .expect("store");
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
                fingerprint: 7
            }]
        );
        // Its record moved into a block.
        let records = store.records("s", &[key_hash]).await.expect("records");
        assert_eq!(records[&key_hash].json(), r#"{"a":1}"#);
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

    /// Rows owed before the store kept their natural key order get it when
    /// the file is upgraded.
    #[tokio::test]
    async fn upgrading_an_older_file_orders_the_rows_already_owed() {
        let before = MIGRATIONS
            .iter()
            .position(|m| matches!(m, Migration::OwedKeyOrder))
            .expect("the migration that orders owed rows");
        let (_dir, url, old) = older_file(before).await;
        for key in ["a10", "10", "a2", "9", "b"] {
            sqlx::query(
                "INSERT INTO row_errors (sync, key, op, run_id, attempts, error, payload) \
                 VALUES ('s', ?, 'added', 1, 1, 'refused', '{}')",
            )
            .bind(key)
            .execute(&old)
            .await
            .expect("old row errors");
        }
        old.close().await;

        let store = upgraded(&url).await;
        let owed = store.owed("s", None).await.expect("owed");
        let keys: Vec<&str> = owed.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["9", "10", "a2", "a10", "b"]);
    }

    /// Events kept one a row before deliveries were packed are still
    /// replayed, in order, after the upgrade, and new ones follow them.
    #[tokio::test]
    async fn upgrading_an_older_file_keeps_the_deliveries_kept() {
        let before = MIGRATIONS
            .iter()
            .position(
                |m| matches!(m, Migration::Own(sql) if sql.contains("CREATE TABLE delivered")),
            )
            .expect("the migration that packs kept events");
        let (_dir, url, old) = older_file(before).await;
        for event in [r#"{"id":"2"}"#, r#"{"id":"1","fields":{"s":"a\\nb"}}"#] {
            sqlx::query("INSERT INTO deliveries (sync, run_id, event) VALUES ('s', 7, ?)")
                .bind(event)
                .execute(&old)
                .await
                .expect("old delivery");
        }
        old.close().await;

        let store = upgraded(&url).await;
        let claim = store.claim("s", Duration::from_secs(60)).await;
        let Ok(Claim::Started(run_id)) = claim else {
            panic!("not claimed: {:?}", claim.err())
        };
        let mut delivered = EventLines::default();
        for id in ["3", "4"] {
            delivered
                .push(&serde_json::json!({ "id": id }))
                .expect("event");
        }
        commit_events(&store, run_id, &delivered).await;
        assert_eq!(
            store.deliveries("s", 7).await.expect("old run"),
            [r#"{"id":"2"}"#, r#"{"id":"1","fields":{"s":"a\\nb"}}"#]
        );
        assert_eq!(
            store.deliveries("s", run_id).await.expect("new run"),
            [r#"{"id":"3"}"#, r#"{"id":"4"}"#]
        );
    }

    /// A commit's pages are copied from the log into the file soon after,
    /// by the store's own checkpoint, long before SQLite's would run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_is_copied_into_the_file_beside_the_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("state.db");
        let url = format!("sqlite://{}", file.display());
        let store = upgraded(&url).await;
        let Ok(Claim::Started(run_id)) = store.claim("s", Duration::from_secs(60)).await else {
            panic!("not claimed")
        };
        // 4 MB of random hex, which zstd halves: well under SQLite's own
        // checkpoint at WAL_PAGES.
        let mut seed = 1u64;
        let mut delivered = EventLines::default();
        for id in 0..1000 {
            let noise: String = (0..4096)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    format!("{:x}", seed >> 60)
                })
                .collect();
            let event = serde_json::json!({ "id": id.to_string(), "noise": noise });
            delivered.push(&event).expect("event");
        }
        let before = std::fs::metadata(&file).expect("file").len();
        commit_events(&store, run_id, &delivered).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&file).expect("file").len() < before + 1_500_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the commit is still only in the log"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Commits events delivered by run `run_id` of sync `s`, and nothing else.
    async fn commit_events(store: &Store<SqliteFile>, run_id: i64, delivered: &EventLines) {
        let batch = Batch {
            commits: &[],
            errors: &[],
            delivered,
            counts: &Counts::default(),
        };
        let columns = CommitColumns::of("s", run_id, batch);
        assert!(store.commit(&columns).await.expect("commit"));
    }

    /// Records replaced over and over stay readable, each the last one
    /// committed, while no block is left less than half live (so the
    /// blocks never hold more than twice the records still live).
    #[tokio::test]
    async fn records_replaced_again_and_again_keep_their_blocks_tidy() {
        use std::collections::BTreeMap;

        use crate::state::packing::BLOCK;
        use crate::state::types::Commit;

        let (_dir, store, run_id) = running().await;
        let keys: Vec<String> = (0..10 * BLOCK).map(|i| format!("k{i}")).collect();
        let mut live: BTreeMap<&str, String> = BTreeMap::new();
        for round in 0..12 {
            let mut commits = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                let key_hash = crate::diff::key_hash(key);
                // Every key first; then three in four, a different three each
                // round; a few deleted now and then, and back later.
                if round > 0 && (i + round) % 4 == 0 {
                    continue;
                }
                if round % 5 == 3 && i % 7 == 0 {
                    commits.push(Commit::Delete {
                        key: key.clone(),
                        key_hash,
                    });
                    live.remove(key.as_str());
                    continue;
                }
                let json = format!(r#"{{"key":"{key}","round":{round}}}"#);
                commits.push(Commit::Upsert {
                    key: key.clone(),
                    key_hash,
                    fingerprint: round as u128,
                    json: json.clone(),
                });
                live.insert(key, json);
            }
            let batch = Batch {
                commits: &commits,
                errors: &[],
                delivered: &EventLines::default(),
                counts: &Counts::default(),
            };
            let columns = CommitColumns::of("s", run_id, batch);
            assert!(store.commit(&columns).await.expect("commit"));

            let hashes: Vec<u128> = keys.iter().map(|k| crate::diff::key_hash(k)).collect();
            let records = store.records("s", &hashes).await.expect("records");
            let read: BTreeMap<&str, String> = keys
                .iter()
                .filter_map(|k| {
                    let fields = records.get(&crate::diff::key_hash(k))?;
                    Some((k.as_str(), fields.json().to_owned()))
                })
                .collect();
            assert_eq!(read, live, "round {round}");
            let (blocks, size, held, sparse, bytes): (i64, i64, i64, i64, i64) = sqlx::query_as(
                "SELECT count(*), sum(size), sum(live), sum(2 * live < size), \
                 (SELECT count(*) FROM record_block_bytes) FROM record_blocks",
            )
            .fetch_one(&store.pool)
            .await
            .expect("blocks");
            assert_eq!(held, live.len() as i64, "round {round}");
            assert!(
                size <= 2 * held,
                "round {round}: {size} records kept for {held}"
            );
            assert_eq!((sparse, bytes), (0, blocks), "round {round}");
        }
        store.reset("s").await.expect("reset");
        let left: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM record_blocks), (SELECT count(*) FROM record_block_bytes)",
        )
        .fetch_one(&store.pool)
        .await
        .expect("blocks");
        assert_eq!(left, (0, 0));
    }

    /// A block that no longer unpacks, or a row whose block is gone, is an
    /// error naming the sync and what to do, not a missing `previous`.
    #[tokio::test]
    async fn a_lost_record_is_an_error_that_names_the_sync() {
        use crate::state::types::Commit;

        let (_dir, store, run_id) = running().await;
        let key_hash = crate::diff::key_hash("k");
        let commits = [Commit::Upsert {
            key: "k".into(),
            key_hash,
            fingerprint: 1,
            json: r#"{"a":1}"#.into(),
        }];
        let batch = Batch {
            commits: &commits,
            errors: &[],
            delivered: &EventLines::default(),
            counts: &Counts::default(),
        };
        assert!(
            store
                .commit(&CommitColumns::of("s", run_id, batch))
                .await
                .expect("commit")
        );
        for (damage, says) in [
            (
                "UPDATE record_block_bytes SET records = x'00ff'",
                "cannot be read",
            ),
            ("DELETE FROM record_block_bytes", "has lost the record"),
        ] {
            sqlx::query(damage)
                .execute(&store.pool)
                .await
                .expect("damage");
            let error = store
                .records("s", &[key_hash])
                .await
                .expect_err("no record");
            let error = error.to_string();
            assert!(error.contains(says), "{error}");
            assert!(
                error.contains("sync `s`") && error.contains("`ebb reset s`"),
                "{error}"
            );
        }
    }

    /// A file as an Ebb that knew the first `version` migrations left it,
    /// with its URL and a pool on it.
    async fn older_file(version: usize) -> (tempfile::TempDir, String, SqlitePool) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let pool = connect(options(&url).expect("url").create_if_missing(true))
            .await
            .expect("create");
        for migration in &MIGRATIONS[..version] {
            let sql = migration.sql(&TYPES);
            sqlx::raw_sql(&sql)
                .execute(&pool)
                .await
                .expect("old schema");
        }
        sqlx::raw_sql(&format!("PRAGMA user_version = {version}"))
            .execute(&pool)
            .await
            .expect("old version");
        (dir, url, pool)
    }

    /// A new store in a temporary folder, with a run of sync `s` started.
    async fn running() -> (tempfile::TempDir, Store<SqliteFile>, i64) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let store = upgraded(&url).await;
        let Ok(Claim::Started(run_id)) = store.claim("s", Duration::from_secs(60)).await else {
            panic!("not claimed")
        };
        (dir, store, run_id)
    }

    /// The store on `url`, upgraded.
    async fn upgraded(url: &str) -> Store<SqliteFile> {
        Store::<SqliteFile>::open(url, true)
            .await
            .expect("upgrade")
            .expect("store")
    }
}
