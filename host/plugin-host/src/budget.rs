//! A destination's rate budget, shared by every sync that delivers to it.
//!
//! Vendors limit requests and records per account, not per sync, so the
//! budget belongs to the destination: the [`Engine`](crate::Engine) keeps
//! one per destination name, and every handle loaded for that destination
//! (each sync's run, in `ebb serve` several at once) draws from it. The
//! host holds it, not the plugin: each HTTP request a destination sends
//! waits for a request slot, each batch for its records' slots, and a 429
//! (with its `Retry-After`) seen by any of them holds all of them back.
//!
//! The rate is the operator's `rate` on the destination, else the one the
//! plugin's spec declares (the vendor's published limit), else none: then
//! the budget only shares the pauses 429s call for. Since the spec is known only once the plugin is loaded, every
//! instance holds a [`BudgetCell`] from the start, filled after the spec is
//! read and before anything is sent.
//!
//! Slots are handed out in order, spaced evenly: at `n` per second the
//! next slot is `1/n` s after the last, so however many callers share a
//! budget, together they never exceed it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use ebb_sdk::spec::Rate;
use tokio::time::Instant;

use crate::call::lock;

/// Every destination's budget in this process, by the destination's name.
#[derive(Debug, Clone, Default)]
pub struct Budgets(Arc<Mutex<HashMap<String, Arc<Budget>>>>);

impl Budgets {
    /// The budget of the destination named `destination`, shared by every
    /// handle loaded with it; a changed `rate` starts a new one.
    pub fn of(&self, destination: &str, rate: Rate) -> Arc<Budget> {
        let mut budgets = lock(&self.0);
        match budgets.get(destination) {
            Some(budget) if budget.rate() == rate => budget.clone(),
            _ => {
                let budget = Arc::new(Budget::new(rate));
                budgets.insert(destination.to_owned(), budget.clone());
                budget
            }
        }
    }
}

/// Where a destination's instances find its budget once the spec is read.
#[derive(Debug, Default)]
pub struct BudgetCell(OnceLock<Arc<Budget>>);

impl BudgetCell {
    pub fn get(&self) -> Option<&Arc<Budget>> {
        self.0.get()
    }

    /// Fills the cell; a destination's budget is set once, at load.
    pub fn set(&self, budget: Arc<Budget>) {
        let _ = self.0.set(budget);
    }
}

/// The budget of one destination.
#[derive(Debug)]
pub struct Budget {
    rate: Rate,
    requests: Mutex<Instant>,
    records: Mutex<Instant>,
    /// Nothing is sent before this, after a 429.
    paused_until: Mutex<Instant>,
}

impl Budget {
    pub fn new(rate: Rate) -> Budget {
        let now = Instant::now();
        Budget {
            rate,
            requests: Mutex::new(now),
            records: Mutex::new(now),
            paused_until: Mutex::new(now),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Waits for the slot of one request.
    pub async fn request(&self) {
        self.take(&self.requests, self.rate.requests_per_sec, 1)
            .await;
    }

    /// Waits for the slots of `n` records.
    pub async fn records(&self, n: usize) {
        self.take(&self.records, self.rate.records_per_sec, n).await;
    }

    /// Holds every caller back for `wait`: the vendor said it is over its
    /// limit.
    pub fn slow_down(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = lock(&self.paused_until);
        *paused = (*paused).max(until);
    }

    async fn take(&self, next: &Mutex<Instant>, per_sec: Option<f64>, n: usize) {
        let paused = *lock(&self.paused_until);
        let start = match per_sec {
            Some(rate) => {
                let mut next = lock(next);
                let start = (*next).max(Instant::now()).max(paused);
                *next = start + Duration::from_secs_f64(n as f64 / rate);
                start
            }
            None => paused,
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn callers_sharing_a_budget_together_keep_to_it() {
        let budget = std::sync::Arc::new(Budget::new(Rate {
            requests_per_sec: Some(10.0),
            records_per_sec: None,
        }));
        let started = Instant::now();
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move {
                    for _ in 0..10 {
                        budget.request().await;
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
        // 30 requests at 10 a second: the last goes out 2.9 s in.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(2900), "{took:?}");
        assert!(took < Duration::from_millis(3100), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_everyone_back() {
        let budget = Budget::new(Rate::default());
        let started = Instant::now();
        budget.request().await;
        assert!(started.elapsed() < Duration::from_millis(1));
        budget.slow_down(Duration::from_secs(2));
        budget.records(500).await;
        assert!(started.elapsed() >= Duration::from_secs(2));
    }
}
