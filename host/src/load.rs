//! Load: delivers events to the destination in batches, several in flight,
//! retrying what the destination calls retryable with exponential backoff
//! (never sooner than its Retry-After), and reports each batch with one
//! delivery result per event as soon as it is done, so the caller commits
//! exactly what was acknowledged, batch by batch.
//!
//! Each batch in flight is a task of its own, so the plugin's work (the
//! guest encoding its requests) runs on every core while the run goes on
//! preparing and committing on its own thread.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::config::Retry;
use crate::event::Event;
use crate::plugin::{CallError, Destination, ErrorKind, Outcome, RemoteError};

/// The longest Retry-After a run waits out. A destination asking for more
/// gets its wish: the records are left owed for the next run instead of
/// holding this one.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Ok,
    /// The destination refused it; retrying in this run will not help.
    Rejected(String),
    /// It could not be delivered (retries exhausted, plugin failure).
    Failed(String),
}

impl Delivery {
    /// `ok`, `rejected` or `failed`, as metrics name it.
    pub fn outcome(&self) -> &'static str {
        match self {
            Delivery::Ok => "ok",
            Delivery::Rejected(_) => "rejected",
            Delivery::Failed(_) => "failed",
        }
    }

    /// Counts it in `ok`, `rejected` or `failed`, and gives back its error.
    pub fn tally(self, ok: &mut u64, rejected: &mut u64, failed: &mut u64) -> Option<String> {
        let (count, error) = match self {
            Delivery::Ok => (ok, None),
            Delivery::Rejected(m) => (rejected, Some(m)),
            Delivery::Failed(m) => (failed, Some(m)),
        };
        *count += 1;
        error
    }
}

#[derive(Clone)]
pub struct Loader {
    pub destination: Destination,
    /// The destination's name in the config.
    pub name: String,
    pub label: String,
    pub config: Value,
    pub action: String,
    pub max_in_flight: usize,
    pub batch_records: usize,
    pub batch_bytes: usize,
    pub retry: Retry,
    /// Once cancelled, no new batch goes out; those in flight finish.
    pub halt: CancellationToken,
    /// `max_in_flight` permits: a batch goes out holding one.
    pub slots: Arc<Semaphore>,
}

/// One batch the destination is done with: which events it held, what
/// became of each, and how many retries it took.
pub struct Delivered {
    pub range: Range<usize>,
    pub deliveries: Vec<Delivery>,
    pub retried: u64,
    /// Why no retry can deliver this batch, or any other: the destination
    /// refused the credentials, or its config (or egress grant) cannot
    /// work. No batch starts after it, and a run stops with this one error.
    pub unfixable: Option<String>,
}

impl Loader {
    /// Delivers `events` in batches, yielding each batch as soon as the
    /// destination is done with it, so the caller can commit it while the
    /// others are still under way.
    ///
    /// Every batch is a task, started at once, that waits for one of the
    /// destination's `max_in_flight` slots (shared by all the loader's
    /// calls, so a caller may start the next events before the last ones
    /// are answered) and then goes out in order. After [`Loader::halt`],
    /// the batches in flight finish and no other starts: the stream ends
    /// without them. Batches are aborted when the stream is dropped.
    pub fn deliver(&self, events: Arc<[Event]>) -> impl Stream<Item = Delivered> + 'static {
        let turns: FuturesUnordered<_> = self
            .batches(&events)
            .into_iter()
            .map(|range| {
                let (loader, events, r) = (self.clone(), events.clone(), range.clone());
                let task = tokio::spawn(async move { loader.take_turn(&events, r).await });
                let (task, label) = (AbortOnDropHandle::new(task), self.label.clone());
                async move {
                    task.await.unwrap_or_else(|e| {
                        let failed = Delivery::Failed(format!("{label}: {e}"));
                        Some(Delivered {
                            deliveries: vec![failed; range.len()],
                            range,
                            retried: 0,
                            unfixable: None,
                        })
                    })
                }
            })
            .collect();
        turns.filter_map(std::future::ready)
    }

    /// Delivers one batch once a slot is free, unless the loader halted
    /// meanwhile.
    async fn take_turn(&self, events: &[Event], range: Range<usize>) -> Option<Delivered> {
        let _slot = self.slots.acquire().await.ok()?;
        if self.halt.is_cancelled() {
            return None;
        }
        let (deliveries, retried, unfixable) = self.deliver_batch(&events[range.clone()]).await;
        if unfixable.is_some() {
            self.halt.cancel();
        }
        Some(Delivered {
            range,
            deliveries,
            retried,
            unfixable,
        })
    }

    /// Consecutive ranges within the record and byte limits of one batch.
    fn batches(&self, events: &[Event]) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, e) in events.iter().enumerate() {
            let size = json_size(e);
            if i > start && (i - start >= self.batch_records || bytes + size > self.batch_bytes) {
                out.push(start..i);
                (start, bytes) = (i, 0);
            }
            bytes += size;
        }
        if start < events.len() {
            out.push(start..events.len());
        }
        out
    }

    async fn deliver_batch(&self, batch: &[Event]) -> (Vec<Delivery>, u64, Option<String>) {
        let mut results = vec![Delivery::Failed("not attempted".into()); batch.len()];
        let mut todo: Vec<usize> = (0..batch.len()).collect();
        let mut retried = 0;
        let mut unfixable = None;
        for attempt in 1.. {
            // The first attempt sends the batch as it is; retries, the rest.
            let sub: Cow<[Event]> = if todo.len() == batch.len() {
                Cow::Borrowed(batch)
            } else {
                Cow::Owned(todo.iter().map(|&i| batch[i].clone()).collect())
            };
            let mut again = Vec::new();
            let mut wait = Duration::ZERO;
            let mut last = String::new();
            let mut retry = |i: usize, e: &RemoteError, again: &mut Vec<usize>| {
                wait = wait.max(e.retry_after.unwrap_or_default());
                last = e.message.clone();
                again.push(i);
            };
            let asked = std::time::Instant::now();
            let answer = self
                .destination
                .write(&self.config, &self.action, &sub)
                .await;
            let took = asked.elapsed();
            unfixable = unfixable.or_else(|| self.unfixable(&answer));
            match answer {
                Ok(outcomes) => {
                    for (&i, outcome) in todo.iter().zip(outcomes) {
                        match outcome {
                            Outcome::Ok => results[i] = Delivery::Ok,
                            Outcome::Reject(e) => results[i] = Delivery::Rejected(e.message),
                            Outcome::Retry(e) => retry(i, &e, &mut again),
                        }
                    }
                }
                Err(CallError::Remote(e))
                    if matches!(e.kind, ErrorKind::Transient | ErrorKind::RateLimited) =>
                {
                    for &i in &todo {
                        retry(i, &e, &mut again);
                    }
                }
                Err(CallError::Remote(e)) => {
                    for &i in &todo {
                        results[i] = Delivery::Rejected(e.message.clone());
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for &i in &todo {
                        results[i] = Delivery::Failed(message.clone());
                    }
                }
            }
            crate::metrics::destination_wrote(&self.name, took, again.len());
            if again.is_empty() {
                break;
            }
            if let Some(reason) = self.give_up(attempt, wait, &last) {
                let message = format!("{}: {reason}", self.label);
                for i in again {
                    results[i] = Delivery::Failed(message.clone());
                }
                break;
            }
            tokio::time::sleep(self.backoff(attempt).max(wait)).await;
            retried += again.len() as u64;
            todo = again;
        }
        (results, retried, unfixable)
    }

    /// Why `answer` means no batch can be delivered until someone fixes the
    /// destination: the whole batch failed, or every event of it was
    /// refused, with refused credentials or an unworkable config.
    fn unfixable(&self, answer: &Result<Vec<Outcome>, CallError>) -> Option<String> {
        let unfixable =
            |e: &RemoteError| matches!(e.kind, ErrorKind::Auth | ErrorKind::InvalidConfig);
        let first = match answer {
            Err(CallError::Remote(e)) => Some(e).filter(|e| unfixable(e)),
            Ok(outcomes) => outcomes
                .iter()
                .map(|o| match o {
                    Outcome::Reject(e) if unfixable(e) => Some(e),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .and_then(|refused| refused.into_iter().next()),
            Err(_) => None,
        }?;
        Some(format!(
            "{}: {} ({}); no retry can fix this, so the run stopped at this batch: \
             fix the destination's credentials, config or allow_hosts, and the next run sends what this one did not",
            self.label,
            first.message,
            first.kind.as_str()
        ))
    }

    /// Why events still failing after `attempt` are left for the next run,
    /// if they are: out of attempts, or told to wait longer than a run does.
    fn give_up(&self, attempt: u32, wait: Duration, last: &str) -> Option<String> {
        if attempt >= self.retry.max_attempts {
            Some(format!("still failing after {attempt} attempts: {last}"))
        } else if wait > MAX_RETRY_AFTER {
            Some(format!(
                "the destination asked to wait {} s before retrying; left for the next run: {last}",
                wait.as_secs()
            ))
        } else {
            None
        }
    }

    /// Exponential backoff with jitter between half and all of the step.
    fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .retry
            .initial_backoff
            .saturating_mul(1 << (attempt - 1).min(20))
            .min(self.retry.max_backoff);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = (xxhash_rust::xxh3::xxh3_64(&nanos.to_le_bytes()) % 1000) as u32;
        step / 2 + step / 2 * jitter / 1000
    }
}

/// About how many bytes of JSON an event makes, without writing it: its
/// records are JSON text already.
fn json_size(e: &Event) -> usize {
    const ENVELOPE: usize =
        r#"{"op":"updated","id":"","fields":,"previous":,"delivery_id":""}"#.len();
    ENVELOPE
        + e.id.len()
        + e.fields.json().len()
        + e.previous.as_ref().map_or(4, |p| p.json().len())
        + e.delivery_id.len()
}
