//! What every kind of warehouse provides, so that [`Warehouse`](super::Warehouse)
//! reads each the same way: each kind's connection type is its [`Driver`],
//! which knows the kind's SQL dialect, connects, and describes, checks and
//! streams a query.
//!
//! A kind writes its driver as plain `async fn`s; they are boxed once, here
//! ([`DynDriver`] for the kind, [`DynConnection`] for an open connection),
//! so the warehouse can hold any kind's. That is one dynamic call per
//! connection and query: the rows themselves are read and written inside
//! each kind's `stream`, without dynamic dispatch.

use std::future::Future;
use std::marker::PhantomData;

use futures::future::BoxFuture;

use super::chunks::ChunkTx;
use super::error::SourceError;
use super::query::{BoundQuery, Column, Placeholders};
use crate::config::Source;
use crate::param::ParamKind;

/// One kind of warehouse, as its open connection.
pub trait Driver: Sized + Send + 'static {
    /// How the kind's SQL writes bind placeholders.
    const PLACEHOLDERS: Placeholders;

    /// What a column declared as a bare `TIMESTAMP` holds: a wall-clock
    /// time, unless the kind says it is an instant (read as UTC).
    const BARE_TIMESTAMP: ParamKind = ParamKind::Timestamp;

    /// Connects to the source (to its tunnel's local end, when it has one).
    fn connect(source: &Source) -> impl Future<Output = Result<Self, SourceError>> + Send;

    /// The query's columns, without reading a row.
    fn columns(
        &mut self,
        query: &BoundQuery,
    ) -> impl Future<Output = Result<Vec<Column>, SourceError>> + Send;

    /// Runs the query without reading a row, so the database checks the
    /// SQL, the grants and the column types the way a sync would. Where
    /// describing a query already runs it (over an empty result), that is
    /// all it takes.
    fn check(
        &mut self,
        query: &BoundQuery,
    ) -> impl Future<Output = Result<(), SourceError>> + Send {
        async move { self.columns(query).await.map(drop) }
    }

    /// Sends the query's rows to `tx` in chunks, in a read-only
    /// transaction where the database has them; the connection closes when
    /// it is done.
    fn stream(
        self,
        query: &BoundQuery,
        tx: &ChunkTx,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// The connection itself, if this is a Postgres warehouse (for the
    /// diff it runs there, which writes its own schema).
    fn postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        None
    }
}

/// Any kind's [`Driver`], before it connects.
pub trait DynDriver: Sync {
    fn placeholders(&self) -> Placeholders;
    fn bare_timestamp(&self) -> ParamKind;
    fn connect<'a>(
        &self,
        source: &'a Source,
    ) -> BoxFuture<'a, Result<Box<dyn DynConnection>, SourceError>>;
}

/// The kind whose driver is `D`.
pub struct Kind<D>(PhantomData<fn() -> D>);

impl<D: Driver> Kind<D> {
    pub const OF: &'static Kind<D> = &Kind(PhantomData);
}

impl<D: Driver> DynDriver for Kind<D> {
    fn placeholders(&self) -> Placeholders {
        D::PLACEHOLDERS
    }

    fn bare_timestamp(&self) -> ParamKind {
        D::BARE_TIMESTAMP
    }

    fn connect<'a>(
        &self,
        source: &'a Source,
    ) -> BoxFuture<'a, Result<Box<dyn DynConnection>, SourceError>> {
        Box::pin(async move { Ok(Box::new(D::connect(source).await?) as Box<dyn DynConnection>) })
    }
}

/// Any kind's [`Driver`], connected.
pub trait DynConnection: Send {
    fn columns<'a>(
        &'a mut self,
        query: &'a BoundQuery,
    ) -> BoxFuture<'a, Result<Vec<Column>, SourceError>>;
    fn check<'a>(&'a mut self, query: &'a BoundQuery) -> BoxFuture<'a, Result<(), SourceError>>;
    fn stream<'a>(
        self: Box<Self>,
        query: &'a BoundQuery,
        tx: &'a ChunkTx,
    ) -> BoxFuture<'a, Result<(), SourceError>>;
    fn postgres(&mut self) -> Option<&mut sqlx::PgConnection>;
}

impl<D: Driver> DynConnection for D {
    fn columns<'a>(
        &'a mut self,
        query: &'a BoundQuery,
    ) -> BoxFuture<'a, Result<Vec<Column>, SourceError>> {
        Box::pin(Driver::columns(self, query))
    }

    fn check<'a>(&'a mut self, query: &'a BoundQuery) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(Driver::check(self, query))
    }

    fn stream<'a>(
        self: Box<Self>,
        query: &'a BoundQuery,
        tx: &'a ChunkTx,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(Driver::stream(*self, query, tx))
    }

    fn postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        Driver::postgres(self)
    }
}
