//! The rows a sync still owes, with the error each last failed with. The
//! next run re-derives everything that was not acknowledged, so an owed row
//! is sent again until it goes through, changes or is dropped by the
//! operator (`ebb errors --drop`), which the snapshot then takes as
//! delivered.
//!
//! A failing destination can leave tens of thousands of rows owed, often
//! with one error repeated, so they are read a page at a time in natural
//! key order (the `key_order` column, indexed) and grouped by error, both
//! in SQL.

use std::collections::HashMap;

use super::dialect::{Conn, Dialect, RowLock};
use super::error::Result;
use super::record_blocks;
use super::rows::{OwedColumns, OwedIdColumns, hash_bytes, hash_of, owed_row};
use super::store::{Fut, Store, boxed};
use super::types::{
    Dropped, Dropping, ErrorGroup, ErrorGroups, OwedFilter, OwedPage, OwedRow, Page,
};
use crate::delivery_id::{DeliveryIds, Owed};
use crate::event::Op;

/// How many keys each error group shows.
const SAMPLE_KEYS: i64 = 5;

/// The owed rows an [`OwedFilter`] takes: the sync is `$1`, the run `$2`
/// and the error `$3` (the casts give Postgres the types of NULLs).
const MATCHING: &str = "FROM row_errors WHERE sync = $1 \
     AND (CAST($2 AS BIGINT) IS NULL OR run_id = $2) AND (CAST($3 AS TEXT) IS NULL OR error = $3)";

const OWED_KEY: &str = "SELECT key, op, run_id, attempts, error, payload FROM row_errors \
     WHERE sync = $1 AND key = $2";

pub trait OwedRows {
    fn owed<'a>(&'a self, sync: &'a str, run: Option<i64>) -> Fut<'a, Vec<OwedRow>>;
    fn owed_page<'a>(
        &'a self,
        sync: &'a str,
        filter: OwedFilter<'a>,
        page: Page,
    ) -> Fut<'a, OwedPage>;
    fn error_groups<'a>(
        &'a self,
        sync: &'a str,
        run: Option<i64>,
        page: Page,
    ) -> Fut<'a, ErrorGroups>;
    fn delivery_ids<'a>(&'a self, sync: &'a str) -> Fut<'a, DeliveryIds>;
    fn owed_counts(&self) -> Fut<'_, HashMap<String, i64>>;
    fn drop_owed<'a>(&'a self, sync: &'a str, which: Dropping<'a>) -> Fut<'a, Dropped>;
}

impl<D: Dialect> OwedRows for Store<D> {
    fn owed<'a>(&'a self, sync: &'a str, run: Option<i64>) -> Fut<'a, Vec<OwedRow>> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            owed_in::<D>(&mut conn, sync, run).await
        })
    }

    fn owed_page<'a>(
        &'a self,
        sync: &'a str,
        filter: OwedFilter<'a>,
        page: Page,
    ) -> Fut<'a, OwedPage> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let total: i64 = D::query(&format!("SELECT count(*) {MATCHING}"))
                .bind(sync)
                .bind(filter.run)
                .bind(filter.error)
                .scalar(&mut conn)
                .await?;
            let rows: Vec<OwedColumns> = D::query(&format!(
                "SELECT key, op, run_id, attempts, error, payload {MATCHING} \
                 ORDER BY key_order, key LIMIT $4 OFFSET $5"
            ))
            .bind(sync)
            .bind(filter.run)
            .bind(filter.error)
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&mut conn)
            .await?;
            Ok(OwedPage {
                total,
                rows: rows.into_iter().map(owed_row).collect(),
            })
        })
    }

    fn error_groups<'a>(
        &'a self,
        sync: &'a str,
        run: Option<i64>,
        page: Page,
    ) -> Fut<'a, ErrorGroups> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let (rows, groups_total): (i64, i64) = D::query(&format!(
                "SELECT count(*), count(DISTINCT error) {MATCHING}"
            ))
            .bind(sync)
            .bind(run)
            .bind(None::<&str>)
            .fetch_optional(&mut conn)
            .await?
            .unwrap_or_default();
            // The page of groups first, then the first keys of each of
            // those groups only.
            let found: Vec<(String, i64, i64, String)> = D::query(&format!(
                "WITH page AS ( \
                   SELECT error, count(*) AS n, max(run_id) AS last_run {MATCHING} \
                   GROUP BY error ORDER BY n DESC, error LIMIT $4 OFFSET $5), \
                 ranked AS ( \
                   SELECT r.error, r.key, \
                     ROW_NUMBER() OVER (PARTITION BY r.error ORDER BY r.key_order, r.key) AS i \
                   FROM row_errors r JOIN page ON page.error = r.error \
                   WHERE r.sync = $1 AND (CAST($2 AS BIGINT) IS NULL OR r.run_id = $2)) \
                 SELECT page.error, page.n, page.last_run, ranked.key \
                 FROM page JOIN ranked ON ranked.error = page.error AND ranked.i <= $6 \
                 ORDER BY page.n DESC, page.error, ranked.i"
            ))
            .bind(sync)
            .bind(run)
            .bind(None::<&str>)
            .bind(page.limit)
            .bind(page.offset)
            .bind(SAMPLE_KEYS)
            .fetch_all(&mut conn)
            .await?;
            let mut groups: Vec<ErrorGroup> = Vec::new();
            for (error, count, last_run, key) in found {
                match groups.last_mut() {
                    Some(group) if group.error == error => group.keys.push(key),
                    _ => groups.push(ErrorGroup {
                        error,
                        count,
                        keys: vec![key],
                        last_run,
                    }),
                }
            }
            Ok(ErrorGroups {
                rows,
                groups_total,
                groups,
            })
        })
    }

    fn owed_counts(&self) -> Fut<'_, HashMap<String, i64>> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let counts: Vec<(String, i64)> =
                D::query("SELECT sync, count(*) FROM row_errors GROUP BY sync")
                    .fetch_all(&mut conn)
                    .await?;
            Ok(counts.into_iter().collect())
        })
    }

    fn delivery_ids<'a>(&'a self, sync: &'a str) -> Fut<'a, DeliveryIds> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let epoch: Option<i64> = D::query(
                "SELECT max(id) FROM runs \
                 WHERE sync = $1 AND kind = 'run' AND status IN ('success', 'partial')",
            )
            .bind(sync)
            .scalar(&mut conn)
            .await?;
            let rows: Vec<OwedIdColumns> = D::query(
                "SELECT key, op, fingerprint, delivery_id, delivered FROM row_errors \
                 WHERE sync = $1 AND delivery_id IS NOT NULL",
            )
            .bind(sync)
            .fetch_all(&mut conn)
            .await?;
            let owed = rows
                .into_iter()
                .filter_map(|(key, op, fingerprint, delivery_id, delivered)| {
                    let owed = Owed {
                        op: Op::parse(&op)?,
                        fingerprint: fingerprint.map(hash_of),
                        delivery_id,
                        // Unreadable, it is as if none were taken: they
                        // are sent again, never lost.
                        delivered: delivered
                            .and_then(|d| serde_json::from_str(&d).ok())
                            .unwrap_or_default(),
                    };
                    Some((key, owed))
                })
                .collect();
            Ok(DeliveryIds::new(sync, epoch.unwrap_or(0), owed))
        })
    }

    fn drop_owed<'a>(&'a self, sync: &'a str, which: Dropping<'a>) -> Fut<'a, Dropped> {
        boxed(async move {
            let mut tx = self.pool.begin().await?;
            let rows = match which {
                Dropping::All { run } => owed_in::<D>(&mut tx, sync, run).await?,
                Dropping::Keys(keys) => {
                    let select = D::lock(OWED_KEY, RowLock::Wait);
                    let mut rows = Vec::with_capacity(keys.len());
                    let mut unknown = Vec::new();
                    for key in keys {
                        let row: Option<OwedColumns> = D::query(&select)
                            .bind(sync)
                            .bind(key)
                            .fetch_optional(&mut tx)
                            .await?;
                        match row {
                            Some(row) => rows.push(owed_row(row)),
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
                forget::<D>(&mut tx, sync, row).await?;
            }
            tx.commit().await?;
            Ok(Dropped::Rows(rows))
        })
    }
}

/// Every owed row of `sync` (of run `run`), in natural key order.
async fn owed_in<D: Dialect>(
    conn: &mut Conn<D>,
    sync: &str,
    run: Option<i64>,
) -> Result<Vec<OwedRow>> {
    let rows: Vec<OwedColumns> = D::query(&format!(
        "SELECT key, op, run_id, attempts, error, payload {MATCHING} ORDER BY key_order, key"
    ))
    .bind(sync)
    .bind(run)
    .bind(None::<&str>)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(owed_row).collect())
}

/// Stops owing `row`: the snapshot takes what it holds for the row as
/// delivered (a deletion forgets the key).
async fn forget<D: Dialect>(conn: &mut Conn<D>, sync: &str, row: &OwedRow) -> Result<()> {
    if row.op == "deleted" {
        D::query("DELETE FROM snapshot WHERE sync = $1 AND key_hash = $2")
            .bind(sync)
            .bind(hash_bytes(crate::diff::key_hash(&row.key)))
            .execute(conn)
            .await?;
    } else {
        let taken: Option<(Vec<u8>, String)> = D::query(
            "SELECT fingerprint, record FROM row_errors \
             WHERE sync = $1 AND key = $2 AND fingerprint IS NOT NULL AND record IS NOT NULL",
        )
        .bind(sync)
        .bind(&row.key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((fingerprint, record)) = taken {
            record_blocks::put_one::<D>(conn, sync, &row.key, fingerprint, record).await?;
        }
    }
    D::query("DELETE FROM row_errors WHERE sync = $1 AND key = $2")
        .bind(sync)
        .bind(&row.key)
        .execute(conn)
        .await?;
    Ok(())
}
