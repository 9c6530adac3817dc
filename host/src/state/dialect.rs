//! What the two stores do differently, and only that: how they connect and
//! migrate, how a transaction that reads and then writes keeps others from
//! writing in between, and how a chunk of commits is written in a few
//! statements. Every other statement is written once, in runs.rs,
//! snapshot.rs, owed.rs and schedules.rs, and so is every table the two
//! create alike (schema.rs).

use std::borrow::Cow;

use super::error::Result;
use super::packing::Packed;
use super::rows::{CommitColumns, SnapshotRows};
use super::schema::{ColumnTypes, Migration};
use super::sql::{Columns, Driver, Stmt};

pub type Pool<D> = sqlx::Pool<<D as Dialect>::Db>;
pub type Conn<D> = <<D as Dialect>::Db as sqlx::Database>::Connection;
pub type Tx<D> = sqlx::Transaction<'static, <D as Dialect>::Db>;

/// The rows a read locks until its transaction ends.
#[derive(Clone, Copy)]
pub enum RowLock {
    /// Waits for rows another transaction holds, and then sees them as it
    /// left them.
    Wait,
    /// Passes over rows another transaction holds: they are its to take.
    Skip,
}

/// The rows of `select`, a statement ending in `AND key_hash` that binds
/// the sync as `$1`, whose key hash is one of `hashes`.
pub struct Lookup<'a> {
    pub select: &'static str,
    pub sync: &'a str,
    pub hashes: &'a [u128],
}

pub trait Dialect: Send + Sync + Sized + 'static {
    type Db: Driver;

    /// The numbered migrations, oldest first: a store at schema version N
    /// has the first N applied.
    const MIGRATIONS: &'static [Migration];

    /// How the store spells the column types the migrations both stores
    /// share use.
    const TYPES: ColumnTypes;

    /// Reads the snapshot entries of a key-hash range (`$1` the sync, `$2`
    /// and `$3` the bounds) as one value: each `key_hash || fingerprint`,
    /// concatenated (see [`super::rows::entries_of`]). Drivers
    /// handle every row on its own, which cost several times the
    /// database's own scan; one value a range does not.
    const SNAPSHOT_RANGE: &'static str;

    /// Gives `$1` new ids for `record_blocks`, one a row, inside a
    /// transaction that writes.
    const BLOCK_IDS: &'static str;

    /// Connects to the store at `url`; with `create` false, `None` if
    /// there is no store there yet (and nothing is created).
    fn connect(
        url: &str,
        create: bool,
    ) -> impl Future<Output = Result<Option<(Pool<Self>, Self)>>> + Send;

    /// How messages name the store.
    fn describe(&self) -> String;

    /// Told after a commit's transaction has committed.
    fn committed(&self) {}

    /// The transaction migrations run in, holding what makes processes
    /// opening one store migrate one after the other.
    fn begin_migration(&self, pool: &Pool<Self>) -> impl Future<Output = Result<Tx<Self>>> + Send;

    /// The schema version the store is at (0 when new).
    fn schema_version(conn: &mut Conn<Self>) -> impl Future<Output = sqlx::Result<i64>> + Send;

    /// Records that migration `version` is applied, after doing what its
    /// SQL cannot.
    fn migrated(
        conn: &mut Conn<Self>,
        version: usize,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;

    /// Begins a transaction that reads and then writes what it read (a
    /// claim, taking a slot): no other such transaction may write in
    /// between. Where rows can be locked, its reads say which ([`Self::lock`]).
    fn begin_write(pool: &Pool<Self>) -> impl Future<Output = sqlx::Result<Tx<Self>>> + Send;

    /// `select` with the row locks it takes inside [`Self::begin_write`].
    fn lock(select: &'static str, lock: RowLock) -> Cow<'static, str>;

    /// The rows a [`Lookup`] finds, in as few statements as the database
    /// takes.
    fn by_key_hash<O: Columns>(
        conn: &mut Conn<Self>,
        lookup: Lookup<'_>,
    ) -> impl Future<Output = sqlx::Result<Vec<O>>> + Send;

    /// Writes blocks of `sync`'s records under `ids`, every record live.
    fn insert_blocks(
        conn: &mut Conn<Self>,
        sync: &str,
        ids: &[i64],
        blocks: &[Packed],
    ) -> impl Future<Output = sqlx::Result<()>> + Send;

    /// Inserts or updates (key, fingerprint, place) the snapshot rows of
    /// `sync` in a few statements.
    fn upsert_snapshot(
        conn: &mut Conn<Self>,
        sync: &str,
        rows: &SnapshotRows<'_>,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;

    /// Writes a chunk of commits in a few statements: the records' blocks,
    /// the snapshot's upserts and deletes, the keys no longer owed, the
    /// events delivered.
    fn write_commit(
        conn: &mut Conn<Self>,
        chunk: &CommitColumns<'_>,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;

    /// A statement on this store's database.
    fn query(sql: &str) -> Stmt<'_, Self::Db> {
        Stmt::new(sql)
    }
}
