//! How a statement written once runs on either of sqlx's two drivers. The
//! shared statements use `$N` placeholders, which sqlx's SQLite driver
//! reads as Postgres does, and go through [`Stmt`]; what the two databases
//! do differently is each one's [`super::dialect::Dialect`].
//!
//! sqlx says what a driver can do as bounds on other types (`&mut
//! Connection: Executor`, `i64: Encode<DB>`, …), and Rust does not carry
//! such bounds along with a type parameter: code generic over the database
//! would restate them on every function. So they are stated once, on the
//! blanket [`Driver`] impl, and the values and rows the statements use are
//! named by what both drivers do with them: [`Value`] and [`Columns`].

use futures::future::{self, BoxFuture};
use futures::{FutureExt, TryFutureExt, TryStreamExt};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Postgres, Sqlite, Type};

pub type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>;

type Fetch<'c, T> = BoxFuture<'c, sqlx::Result<T>>;

/// A value both drivers bind.
pub trait Value<'q>:
    Encode<'q, Sqlite> + Type<Sqlite> + Encode<'q, Postgres> + Type<Postgres> + Send + 'q
{
}

impl<'q, T> Value<'q> for T where
    T: Encode<'q, Sqlite> + Type<Sqlite> + Encode<'q, Postgres> + Type<Postgres> + Send + 'q
{
}

/// A row both drivers decode (a tuple of the columns selected).
pub trait Columns:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

impl<T> Columns for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

/// Which of a [`Value`]'s or [`Columns`]' two encodings a driver takes.
pub trait Codec: Database {
    fn bind<'q, T: Value<'q>>(query: Query<'q, Self>, value: T) -> Query<'q, Self>;
    fn decode<O: Columns>(row: &Self::Row) -> sqlx::Result<O>;
}

impl Codec for Sqlite {
    fn bind<'q, T: Value<'q>>(query: Query<'q, Self>, value: T) -> Query<'q, Self> {
        query.bind(value)
    }
    fn decode<O: Columns>(row: &SqliteRow) -> sqlx::Result<O> {
        O::from_row(row)
    }
}

impl Codec for Postgres {
    fn bind<'q, T: Value<'q>>(query: Query<'q, Self>, value: T) -> Query<'q, Self> {
        query.bind(value)
    }
    fn decode<O: Columns>(row: &PgRow) -> sqlx::Result<O> {
        O::from_row(row)
    }
}

/// Runs statements on a connection. The futures are boxed, so the
/// functions awaiting them are `Send` without rustc having to prove
/// sqlx's higher-ranked `Executor` bounds again in each of them.
pub trait Driver: Codec {
    fn run<'c, 'q: 'c>(conn: &'c mut Self::Connection, query: Query<'q, Self>) -> Fetch<'c, ()>;
    fn rows<'c, 'q: 'c, O: Columns>(
        conn: &'c mut Self::Connection,
        query: Query<'q, Self>,
    ) -> Fetch<'c, Vec<O>>;
    fn row<'c, 'q: 'c, O: Columns>(
        conn: &'c mut Self::Connection,
        query: Query<'q, Self>,
    ) -> Fetch<'c, Option<O>>;
    /// Several statements without parameters, such as a migration.
    fn script<'c>(conn: &'c mut Self::Connection, sql: &'c str) -> Fetch<'c, ()>;
}

impl<DB> Driver for DB
where
    DB: Codec,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    fn run<'c, 'q: 'c>(conn: &'c mut DB::Connection, query: Query<'q, DB>) -> Fetch<'c, ()> {
        conn.execute(query).map_ok(drop).boxed()
    }

    fn rows<'c, 'q: 'c, O: Columns>(
        conn: &'c mut DB::Connection,
        query: Query<'q, DB>,
    ) -> Fetch<'c, Vec<O>> {
        // Decoded as they arrive, as sqlx's `query_as` does: a large
        // snapshot range is never held twice.
        conn.fetch(query)
            .and_then(|row| future::ready(DB::decode(&row)))
            .try_collect()
            .boxed()
    }

    fn row<'c, 'q: 'c, O: Columns>(
        conn: &'c mut DB::Connection,
        query: Query<'q, DB>,
    ) -> Fetch<'c, Option<O>> {
        conn.fetch_optional(query)
            .map(|row| row?.map(|row| DB::decode(&row)).transpose())
            .boxed()
    }

    fn script<'c>(conn: &'c mut DB::Connection, sql: &'c str) -> Fetch<'c, ()> {
        conn.execute(sqlx::raw_sql(sql)).map_ok(drop).boxed()
    }
}

/// A statement and the values bound to it so far.
pub struct Stmt<'q, DB: Database>(Query<'q, DB>);

impl<'q, DB: Database> From<Query<'q, DB>> for Stmt<'q, DB> {
    fn from(query: Query<'q, DB>) -> Self {
        Stmt(query)
    }
}

impl<'q, DB: Driver> Stmt<'q, DB> {
    pub fn new(sql: &'q str) -> Self {
        Stmt(sqlx::query(sql))
    }

    pub fn bind<T: Value<'q>>(self, value: T) -> Self {
        Stmt(DB::bind(self.0, value))
    }

    pub fn execute<'c>(self, conn: &'c mut DB::Connection) -> Fetch<'c, ()>
    where
        'q: 'c,
    {
        DB::run(conn, self.0)
    }

    pub fn fetch_all<'c, O: Columns>(self, conn: &'c mut DB::Connection) -> Fetch<'c, Vec<O>>
    where
        'q: 'c,
    {
        DB::rows(conn, self.0)
    }

    pub fn fetch_optional<'c, O: Columns>(
        self,
        conn: &'c mut DB::Connection,
    ) -> Fetch<'c, Option<O>>
    where
        'q: 'c,
    {
        DB::row(conn, self.0)
    }

    /// The first column of the only row.
    pub fn scalar<'c, T>(self, conn: &'c mut DB::Connection) -> Fetch<'c, T>
    where
        'q: 'c,
        (T,): Columns,
    {
        DB::row(conn, self.0)
            .map(|row| match row? {
                Some((value,)) => Ok(value),
                None => Err(sqlx::Error::RowNotFound),
            })
            .boxed()
    }

    /// The first column of the first row, if there is a row.
    pub fn optional_scalar<'c, T>(self, conn: &'c mut DB::Connection) -> Fetch<'c, Option<T>>
    where
        'q: 'c,
        (T,): Columns,
    {
        DB::row(conn, self.0)
            .map_ok(|row| row.map(|(value,)| value))
            .boxed()
    }
}
