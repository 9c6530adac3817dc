//! The state store over one database: its pool and its [`Dialect`]. It is
//! opened here, migrated here (the same steps on both databases: lock, read
//! the version, refuse a newer one, apply what is missing), and its
//! statements are in the modules named after what they keep. What a
//! migration adds that SQL cannot fill is filled here too.

use futures::future::BoxFuture;

use super::dialect::{Conn, Dialect, Pool};
use super::error::{Result, StateError};
use super::record_blocks;
use super::rows::natural_order;
use super::schema::Migration;
use super::sql::Driver;

/// What the store's methods return: boxed, so that [`super::State`] can
/// hold either store behind one trait object.
pub type Fut<'a, T> = BoxFuture<'a, Result<T>>;

/// Boxes a method's body (and tells the compiler which error its `?` raises).
pub fn boxed<'a, T>(body: impl Future<Output = Result<T>> + Send + 'a) -> Fut<'a, T> {
    Box::pin(body)
}

pub struct Store<D: Dialect> {
    pub(super) pool: Pool<D>,
    pub(super) dialect: D,
}

impl<D: Dialect> Store<D> {
    /// Opens and migrates the store at `url`, creating it if `create`;
    /// otherwise `None` if there is none.
    pub async fn open(url: &str, create: bool) -> Result<Option<Store<D>>> {
        let Some((pool, dialect)) = D::connect(url, create).await? else {
            return Ok(None);
        };
        let store = Store { pool, dialect };
        store.migrate().await?;
        Ok(Some(store))
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.dialect.begin_migration(&self.pool).await?;
        let version = D::schema_version(&mut tx).await?;
        let known = D::MIGRATIONS.len() as i64;
        if version > known {
            return Err(StateError::NewerSchema {
                store: self.dialect.describe(),
                version,
                known,
            });
        }
        for (i, migration) in D::MIGRATIONS.iter().enumerate().skip(version as usize) {
            D::Db::script(&mut tx, &migration.sql(&D::TYPES)).await?;
            match migration {
                Migration::OwedKeyOrder => order_keys::<D>(&mut tx).await?,
                Migration::RecordBlocks { then, .. } => {
                    record_blocks::move_into_blocks::<D>(&mut tx).await?;
                    D::Db::script(&mut tx, then).await?;
                }
                Migration::Own(_) | Migration::Alike(_) => {}
            }
            D::migrated(&mut tx, i + 1).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Fills the natural key order of the rows owed before the store kept it,
/// once the migration that adds the column has run.
async fn order_keys<D: Dialect>(conn: &mut Conn<D>) -> Result<()> {
    let owed: Vec<(String, String)> = D::query("SELECT sync, key FROM row_errors")
        .fetch_all(conn)
        .await?;
    for (sync, key) in owed {
        D::query("UPDATE row_errors SET key_order = $1 WHERE sync = $2 AND key = $3")
            .bind(natural_order(&key))
            .bind(&sync)
            .bind(&key)
            .execute(conn)
            .await?;
    }
    Ok(())
}
