//! The runs of each sync. The database, not the process, keeps a sync to
//! one run at a time: the unique index `one_running_run` admits one
//! `running` run per sync, so of two claims racing, the second inserts
//! nothing and is recorded as skipped. A running run beats while it works;
//! one whose heartbeat is older than the lease (its process died) is closed
//! as failed by the next claim or by `ebb serve`'s takeover, and a run
//! closed so writes nothing more.

use std::collections::HashMap;
use std::time::Duration;

use super::dialect::{Conn, Dialect, RowLock, Tx};
use super::error::{Result, StateError};
use super::rows::{RUN_COLUMNS, RunColumns, json, now_ms, run_record, time, to_json};
use super::store::{Fut, Store, boxed};
use super::types::{Claim, Claimed, RunEnd, RunKind, RunRecord};
use crate::param::Param;
use crate::status::Status;

/// How many times a claim retries when the run it collided with finished
/// before it could be named.
const CLAIM_ATTEMPTS: usize = 3;

const STALE_OF_SYNC: &str = "SELECT id, heartbeat_at FROM runs \
     WHERE sync = $1 AND status = 'running' AND heartbeat_at < $2";

const STALE: &str =
    "SELECT sync, id, heartbeat_at FROM runs WHERE status = 'running' AND heartbeat_at < $1";

pub trait Runs {
    fn claim<'a>(&'a self, sync: &'a str, lease: Duration) -> Fut<'a, Claim>;
    fn claim_for<'a>(
        &'a self,
        sync: &'a str,
        lease: Duration,
        kind: RunKind,
        detail: Option<&'a str>,
    ) -> Fut<'a, Claimed>;
    fn skip_if_running<'a>(&'a self, sync: &'a str, lease: Duration)
    -> Fut<'a, Option<(i64, i64)>>;
    fn heartbeat(&self, run_id: i64) -> Fut<'_, bool>;
    fn finish<'a>(&'a self, sync: &'a str, run_id: i64, end: &'a RunEnd<'a>) -> Fut<'a, ()>;
    fn take_over_stale(&self, lease: Duration) -> Fut<'_, Vec<(String, i64)>>;
    fn history<'a>(&'a self, sync: &'a str, limit: i64) -> Fut<'a, Vec<RunRecord>>;
    fn run<'a>(&'a self, sync: &'a str, run_id: i64) -> Fut<'a, Option<RunRecord>>;
    fn latest_runs(&self) -> Fut<'_, HashMap<String, RunRecord>>;
    fn status_before<'a>(&'a self, sync: &'a str, run_id: i64) -> Fut<'a, Option<Status>>;
    fn last_sync_time<'a>(&'a self, sync: &'a str) -> Fut<'a, i64>;
    fn cursor<'a>(&'a self, sync: &'a str) -> Fut<'a, Option<Param>>;
}

impl<D: Dialect> Runs for Store<D> {
    fn claim<'a>(&'a self, sync: &'a str, lease: Duration) -> Fut<'a, Claim> {
        boxed(async move {
            let (mut tx, now) = self.close_stale_of(sync, lease).await?;
            Ok(
                match insert_running::<D>(&mut tx, sync, now, RunKind::Run, None).await? {
                    Claimed::Started(id) => {
                        tx.commit().await?;
                        Claim::Started(id)
                    }
                    Claimed::Busy(running) => {
                        let skipped = record_skipped::<D>(&mut tx, sync, now, running).await?;
                        tx.commit().await?;
                        Claim::Busy { running, skipped }
                    }
                },
            )
        })
    }

    fn claim_for<'a>(
        &'a self,
        sync: &'a str,
        lease: Duration,
        kind: RunKind,
        detail: Option<&'a str>,
    ) -> Fut<'a, Claimed> {
        boxed(async move {
            let (mut tx, now) = self.close_stale_of(sync, lease).await?;
            let claimed = insert_running::<D>(&mut tx, sync, now, kind, detail).await?;
            tx.commit().await?;
            Ok(claimed)
        })
    }

    fn skip_if_running<'a>(
        &'a self,
        sync: &'a str,
        lease: Duration,
    ) -> Fut<'a, Option<(i64, i64)>> {
        boxed(async move {
            let mut tx = D::begin_write(&self.pool).await?;
            let now = now_ms();
            let running: Option<i64> = D::query(
                "SELECT id FROM runs WHERE sync = $1 AND status = 'running' AND heartbeat_at >= $2",
            )
            .bind(sync)
            .bind(stale_before(now, lease))
            .optional_scalar(&mut tx)
            .await?;
            let Some(running) = running else {
                return Ok(None);
            };
            let skipped = record_skipped::<D>(&mut tx, sync, now, running).await?;
            tx.commit().await?;
            Ok(Some((running, skipped)))
        })
    }

    fn heartbeat(&self, run_id: i64) -> Fut<'_, bool> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            beat::<D>(&mut conn, run_id).await
        })
    }

    fn finish<'a>(&'a self, sync: &'a str, run_id: i64, end: &'a RunEnd<'a>) -> Fut<'a, ()> {
        boxed(async move {
            let mut tx = self.pool.begin().await?;
            let closed: Option<String> = D::query(
                "UPDATE runs SET status = $1, finished_at = $2, counts = $3, timings = $4, error = $5 \
                 WHERE id = $6 AND status = 'running' RETURNING kind",
            )
            .bind(end.status.as_str())
            .bind(now_ms())
            .bind(to_json(end.counts))
            .bind(end.timings_ms.to_string())
            .bind(end.error)
            .bind(run_id)
            .optional_scalar(&mut tx)
            .await?;
            match closed.as_deref().map(RunKind::from) {
                // Closed as abandoned by another process: its record stays so.
                None => return Ok(()),
                // A reset or replay moves nothing of the sync's own.
                Some(RunKind::Reset | RunKind::Replay) => return Ok(tx.commit().await?),
                Some(RunKind::Run) => {}
            }
            if matches!(end.status, Status::Success | Status::Partial) {
                D::query("DELETE FROM row_errors WHERE sync = $1 AND run_id < $2")
                    .bind(sync)
                    .bind(run_id)
                    .execute(&mut tx)
                    .await?;
            }
            if end.status == Status::Success {
                D::query(
                    "INSERT INTO sync_state (sync, last_sync_time, cursor) \
                     SELECT sync, started_at / 1000, $1 FROM runs WHERE id = $2 \
                     ON CONFLICT (sync) DO UPDATE SET last_sync_time = excluded.last_sync_time, cursor = excluded.cursor",
                )
                .bind(end.cursor.map(to_json))
                .bind(run_id)
                .execute(&mut tx)
                .await?;
            }
            Ok(tx.commit().await?)
        })
    }

    fn take_over_stale(&self, lease: Duration) -> Fut<'_, Vec<(String, i64)>> {
        boxed(async move {
            let mut tx = D::begin_write(&self.pool).await?;
            let now = now_ms();
            let select = D::lock(STALE, RowLock::Skip);
            let stale: Vec<(String, i64, i64)> = D::query(&select)
                .bind(stale_before(now, lease))
                .fetch_all(&mut tx)
                .await?;
            for (_, id, heartbeat_at) in &stale {
                close_abandoned::<D>(&mut tx, now, *id, *heartbeat_at).await?;
            }
            tx.commit().await?;
            Ok(stale.into_iter().map(|(sync, id, _)| (sync, id)).collect())
        })
    }

    fn history<'a>(&'a self, sync: &'a str, limit: i64) -> Fut<'a, Vec<RunRecord>> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let rows: Vec<RunColumns> = D::query(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE sync = $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind(sync)
            .bind(limit)
            .fetch_all(&mut conn)
            .await?;
            Ok(rows.into_iter().map(|row| run_record(row).1).collect())
        })
    }

    fn run<'a>(&'a self, sync: &'a str, run_id: i64) -> Fut<'a, Option<RunRecord>> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let row: Option<RunColumns> = D::query(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE sync = $1 AND id = $2"
            ))
            .bind(sync)
            .bind(run_id)
            .fetch_optional(&mut conn)
            .await?;
            Ok(row.map(|row| run_record(row).1))
        })
    }

    fn latest_runs(&self) -> Fut<'_, HashMap<String, RunRecord>> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let rows: Vec<RunColumns> = D::query(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE id IN (SELECT max(id) FROM runs GROUP BY sync)"
            ))
            .fetch_all(&mut conn)
            .await?;
            Ok(rows.into_iter().map(run_record).collect())
        })
    }

    fn status_before<'a>(&'a self, sync: &'a str, run_id: i64) -> Fut<'a, Option<Status>> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let status: Option<String> = D::query(
                "SELECT status FROM runs WHERE sync = $1 AND kind = 'run' AND id < $2 \
                 AND status IN ('success', 'partial', 'failed') ORDER BY id DESC LIMIT 1",
            )
            .bind(sync)
            .bind(run_id)
            .optional_scalar(&mut conn)
            .await?;
            Ok(status.as_deref().map(Status::parse))
        })
    }

    fn last_sync_time<'a>(&'a self, sync: &'a str) -> Fut<'a, i64> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let t: Option<i64> = D::query("SELECT last_sync_time FROM sync_state WHERE sync = $1")
                .bind(sync)
                .optional_scalar(&mut conn)
                .await?;
            Ok(t.unwrap_or(0))
        })
    }

    fn cursor<'a>(&'a self, sync: &'a str) -> Fut<'a, Option<Param>> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let text: Option<Option<String>> =
                D::query("SELECT cursor FROM sync_state WHERE sync = $1")
                    .bind(sync)
                    .optional_scalar(&mut conn)
                    .await?;
            Ok(text.flatten().map(|t| json(&t)).transpose()?)
        })
    }
}

impl<D: Dialect> Store<D> {
    /// Opens the write transaction a claim happens in, with the sync's
    /// runs whose heartbeat is older than `lease` closed as abandoned.
    /// SQLite takes the write lock first, so nothing read in it can go
    /// stale before the writes; Postgres locks the stale runs, so a racing
    /// claim waits and then sees them closed.
    async fn close_stale_of(&self, sync: &str, lease: Duration) -> Result<(Tx<D>, i64)> {
        let mut tx = D::begin_write(&self.pool).await?;
        let now = now_ms();
        let select = D::lock(STALE_OF_SYNC, RowLock::Wait);
        let stale: Vec<(i64, i64)> = D::query(&select)
            .bind(sync)
            .bind(stale_before(now, lease))
            .fetch_all(&mut tx)
            .await?;
        for (id, heartbeat_at) in stale {
            close_abandoned::<D>(&mut tx, now, id, heartbeat_at).await?;
        }
        Ok((tx, now))
    }
}

/// Records a running entry of `kind` for the sync, unless one is running:
/// the unique index `one_running_run` is what forbids two.
async fn insert_running<D: Dialect>(
    conn: &mut Conn<D>,
    sync: &str,
    now: i64,
    kind: RunKind,
    detail: Option<&str>,
) -> Result<Claimed> {
    for _ in 0..CLAIM_ATTEMPTS {
        let started: Option<i64> = D::query(
            "INSERT INTO runs (sync, kind, detail, status, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, 'running', $4, $4) \
             ON CONFLICT (sync) WHERE status = 'running' DO NOTHING RETURNING id",
        )
        .bind(sync)
        .bind(kind.as_str())
        .bind(detail)
        .bind(now)
        .optional_scalar(conn)
        .await?;
        if let Some(id) = started {
            return Ok(Claimed::Started(id));
        }
        let running: Option<i64> =
            D::query("SELECT id FROM runs WHERE sync = $1 AND status = 'running'")
                .bind(sync)
                .optional_scalar(conn)
                .await?;
        if let Some(running) = running {
            return Ok(Claimed::Busy(running));
        }
    }
    Err(StateError::ClaimContended {
        sync: sync.to_owned(),
    })
}

/// Marks a run alive, if it still is; `false` if another process closed
/// it as abandoned.
pub async fn beat<D: Dialect>(conn: &mut Conn<D>, run_id: i64) -> Result<bool> {
    let alive: Option<i64> = D::query(
        "UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND status = 'running' RETURNING id",
    )
    .bind(now_ms())
    .bind(run_id)
    .optional_scalar(conn)
    .await?;
    Ok(alive.is_some())
}

fn stale_before(now: i64, lease: Duration) -> i64 {
    now - lease.as_millis() as i64
}

/// The error a claim records on a run whose heartbeat is stale.
fn abandoned(heartbeat_ms: i64) -> String {
    format!(
        "abandoned: no heartbeat since {}; closed as failed so that the sync can run again",
        time(heartbeat_ms)
    )
}

/// The error a skipped run records.
fn busy(running: i64) -> String {
    format!("run {running} of this sync was still in progress")
}

/// Records a trigger that found run `running` of `sync` in progress, as a
/// skipped run; returns its id.
async fn record_skipped<D: Dialect>(
    conn: &mut Conn<D>,
    sync: &str,
    now: i64,
    running: i64,
) -> Result<i64> {
    let id = D::query(
        "INSERT INTO runs (sync, status, started_at, heartbeat_at, finished_at, error) \
         VALUES ($1, 'skipped', $2, $2, $2, $3) RETURNING id",
    )
    .bind(sync)
    .bind(now)
    .bind(busy(running))
    .scalar(conn)
    .await?;
    Ok(id)
}

/// Closes run `id`, whose heartbeat stopped at `heartbeat_at`, as failed.
async fn close_abandoned<D: Dialect>(
    conn: &mut Conn<D>,
    now: i64,
    id: i64,
    heartbeat_at: i64,
) -> Result<()> {
    D::query("UPDATE runs SET status = 'failed', finished_at = $1, error = $2 WHERE id = $3")
        .bind(now)
        .bind(abandoned(heartbeat_at))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_runs_name_their_last_heartbeat() {
        assert_eq!(
            abandoned(1_700_000_000_123),
            "abandoned: no heartbeat since 2023-11-14T22:13:20.123Z; closed as failed so that the sync can run again"
        );
    }
}
