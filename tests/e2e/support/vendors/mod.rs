//! Local stand-ins for the business tools Ebb's destinations send to:
//! axum servers on loopback, written from each vendor's public API
//! reference, that check what a destination sends (method, path, auth,
//! body shape, size limits), answer in the vendor's documented shapes and
//! can be told to refuse credentials or throttle.

pub mod braze;
pub mod customerio;
pub mod hubspot;
pub mod mixpanel;
pub mod salesforce;
pub mod segment;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// When a fake answers 429: for the next few requests it is told to, and,
/// once given a limit, whenever a request finds the vendor's token bucket
/// empty (a bucket of `burst` requests refilled at `per_sec`, the shape of
/// "190 requests per 10 seconds" limits). A handle: the fake's handler and
/// the test share one gate.
#[derive(Clone, Default)]
pub struct Gate(Arc<Mutex<Gating>>);

#[derive(Default)]
struct Gating {
    throttle: usize,
    bucket: Option<Bucket>,
    refused: usize,
    admitted: Admitted,
}

/// The requests let through: how many, and when the first and last came.
#[derive(Default, Clone, Copy)]
pub struct Admitted {
    pub count: usize,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

impl Admitted {
    /// Requests a second between the first and the last.
    pub fn per_sec(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) if self.count > 1 => {
                (self.count - 1) as f64 / last.duration_since(first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

struct Bucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, Gating> {
        self.0.lock().unwrap()
    }

    /// Answers the next `n` requests 429.
    pub fn throttle(&self, n: usize) {
        self.lock().throttle = n;
    }

    /// Enforces `per_sec` requests a second with bursts of up to `burst`.
    pub fn limit(&self, per_sec: f64, burst: f64) {
        self.lock().bucket = Some(Bucket {
            per_sec,
            burst,
            tokens: burst,
            at: Instant::now(),
        });
    }

    /// Whether this request is over the limit (and so answered 429).
    pub fn refuses(&self) -> bool {
        let mut gating = self.lock();
        let this = &mut *gating;
        let over = if this.throttle > 0 {
            this.throttle -= 1;
            true
        } else if let Some(bucket) = &mut this.bucket {
            let now = Instant::now();
            let refill = now.duration_since(bucket.at).as_secs_f64() * bucket.per_sec;
            bucket.tokens = (bucket.tokens + refill).min(bucket.burst);
            bucket.at = now;
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                false
            } else {
                true
            }
        } else {
            false
        };
        this.refused += usize::from(over);
        if !over {
            let now = Some(Instant::now());
            this.admitted.count += 1;
            this.admitted.first = this.admitted.first.or(now);
            this.admitted.last = now;
        }
        over
    }

    /// The requests let through so far.
    pub fn admitted(&self) -> Admitted {
        self.lock().admitted
    }

    /// How many requests were answered 429.
    pub fn refused(&self) -> usize {
        self.lock().refused
    }

    /// Seconds until the bucket holds a request again (at least 1).
    pub fn retry_after(&self) -> Duration {
        let wait = self
            .lock()
            .bucket
            .as_ref()
            .map_or(1.0, |b| ((1.0 - b.tokens).max(0.0) / b.per_sec).ceil());
        Duration::from_secs_f64(wait.max(1.0))
    }
}
