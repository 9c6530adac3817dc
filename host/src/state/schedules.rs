//! When `ebb serve` next runs each sync, and which syncs are switched off.
//! Several `ebb serve` processes may share one store; the database decides
//! which of them takes a slot that falls due, so each slot runs once.

use std::collections::HashMap;

use super::dialect::{Dialect, RowLock};
use super::rows::ScheduleColumns;
use super::store::{Fut, Store, boxed};
use super::types::SyncControl;

pub trait Schedules {
    fn plan_schedule<'a>(
        &'a self,
        sync: &'a str,
        schedule: &'a str,
        due: Option<i64>,
    ) -> Fut<'a, ()>;
    fn take_due<'a>(
        &'a self,
        now: i64,
        next: &'a [(String, Option<i64>)],
    ) -> Fut<'a, Vec<(String, i64)>>;
    fn set_disabled<'a>(&'a self, sync: &'a str, disabled: bool) -> Fut<'a, ()>;
    fn schedules(&self) -> Fut<'_, HashMap<String, SyncControl>>;
}

impl<D: Dialect> Schedules for Store<D> {
    fn plan_schedule<'a>(
        &'a self,
        sync: &'a str,
        schedule: &'a str,
        due: Option<i64>,
    ) -> Fut<'a, ()> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            D::query(
                "INSERT INTO schedules (sync, schedule, due_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (sync) DO UPDATE SET schedule = excluded.schedule, due_at = excluded.due_at \
                 WHERE schedules.schedule IS DISTINCT FROM excluded.schedule",
            )
            .bind(sync)
            .bind(schedule)
            .bind(due)
            .execute(&mut conn)
            .await?;
            Ok(())
        })
    }

    fn take_due<'a>(
        &'a self,
        now: i64,
        next: &'a [(String, Option<i64>)],
    ) -> Fut<'a, Vec<(String, i64)>> {
        boxed(async move {
            let select = D::lock(
                "SELECT due_at FROM schedules WHERE sync = $1 AND due_at <= $2 AND NOT disabled",
                RowLock::Skip,
            );
            let mut taken = Vec::new();
            for (sync, next_due) in next {
                // Of two processes, one takes the slot: on SQLite the
                // first to lock the file, on Postgres the first to lock
                // the row (the other skips it).
                let mut tx = D::begin_write(&self.pool).await?;
                let due: Option<i64> = D::query(&select)
                    .bind(sync)
                    .bind(now)
                    .optional_scalar(&mut tx)
                    .await?;
                if let Some(due) = due {
                    D::query("UPDATE schedules SET due_at = $1 WHERE sync = $2")
                        .bind(*next_due)
                        .bind(sync)
                        .execute(&mut tx)
                        .await?;
                    taken.push((sync.clone(), due));
                }
                tx.commit().await?;
            }
            Ok(taken)
        })
    }

    fn set_disabled<'a>(&'a self, sync: &'a str, disabled: bool) -> Fut<'a, ()> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            D::query(
                "INSERT INTO schedules (sync, disabled) VALUES ($1, $2) \
                 ON CONFLICT (sync) DO UPDATE SET disabled = excluded.disabled",
            )
            .bind(sync)
            .bind(disabled)
            .execute(&mut conn)
            .await?;
            Ok(())
        })
    }

    fn schedules(&self) -> Fut<'_, HashMap<String, SyncControl>> {
        boxed(async move {
            let mut conn = self.pool.acquire().await?;
            let rows: Vec<ScheduleColumns> =
                D::query("SELECT sync, due_at, disabled FROM schedules")
                    .fetch_all(&mut conn)
                    .await?;
            Ok(rows
                .into_iter()
                .map(|(sync, due_at, disabled)| (sync, SyncControl { due_at, disabled }))
                .collect())
        })
    }
}
