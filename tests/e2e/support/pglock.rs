//! Table locks a test takes in the local Postgres to stop `ebb` at a known
//! point without a hook in the product: a statement of Ebb's that needs a
//! conflicting lock waits for the test, and `pg_locks` shows that it does
//! and for which lock, so the test knows where the process is.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::runtime::Runtime;

use super::warehouse::{POSTGRES_URL, runtime};

/// One connection of the test's own, holding at most one lock at a time.
pub struct Locker {
    rt: Runtime,
    conn: Option<PgConnection>,
    holding: bool,
}

impl Locker {
    pub fn connect() -> Locker {
        let rt = runtime();
        let options = PgConnectOptions::from_str(POSTGRES_URL).expect("Postgres URL");
        let conn = rt
            .block_on(options.connect())
            .expect("connecting to the local Postgres");
        Locker {
            rt,
            conn: Some(conn),
            holding: false,
        }
    }

    /// Locks `table` (schema-qualified) in `mode` (e.g. `SHARE`, `ACCESS
    /// EXCLUSIVE`) until [`Locker::release`].
    pub fn hold(&mut self, table: &str, mode: &str) {
        assert!(!self.holding, "already holding a lock");
        self.exec(&format!("BEGIN; LOCK TABLE {table} IN {mode} MODE"));
        self.holding = true;
    }

    pub fn release(&mut self) {
        assert!(self.holding, "holding no lock");
        self.exec("ROLLBACK");
        self.holding = false;
    }

    /// Whether another backend waits for a lock on `table` in `mode` as
    /// `pg_locks` names it (e.g. `AccessShareLock` for a read,
    /// `RowExclusiveLock` for a write).
    pub fn waited_for(&mut self, table: &str, mode: &str) -> bool {
        let conn = self.conn.as_mut().expect("connected");
        self.rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks \
                     WHERE relation = $1::regclass AND mode = $2 AND NOT granted)",
                )
                .bind(table)
                .bind(mode)
                .fetch_one(conn),
            )
            .unwrap_or_else(|e| panic!("reading pg_locks for {table}: {e}"))
    }

    fn exec(&mut self, sql: &str) {
        let conn = self.conn.as_mut().expect("connected");
        self.rt
            .block_on(sqlx::raw_sql(sql).execute(conn))
            .unwrap_or_else(|e| panic!("lock statement failed: {sql}: {e}"));
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Closing ends the transaction, so no lock outlives the test.
            let _ = self.rt.block_on(conn.close());
        }
    }
}
