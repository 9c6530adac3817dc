//! Local stand-ins for the business tools Ebb's destinations send to:
//! axum servers on loopback, written from each vendor's public API
//! reference, that check what a destination sends (method, path, auth,
//! body shape, size limits), answer in the vendor's documented shapes and
//! can be told to refuse credentials or throttle.

pub mod braze;
pub mod segment;

use std::time::{Duration, Instant};

/// When a fake answers 429: for the next few requests it is told to, and,
/// once given a limit, whenever a request finds the vendor's token bucket
/// empty (a bucket of `burst` requests refilled at `per_sec`, the shape of
/// "190 requests per 10 seconds" limits).
#[derive(Default)]
pub struct Gate {
    throttle: usize,
    bucket: Option<Bucket>,
    refused: usize,
}

struct Bucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Gate {
    /// Answers the next `n` requests 429.
    pub fn throttle(&mut self, n: usize) {
        self.throttle = n;
    }

    /// Enforces `per_sec` requests a second with bursts of up to `burst`.
    pub fn limit(&mut self, per_sec: f64, burst: f64) {
        self.bucket = Some(Bucket {
            per_sec,
            burst,
            tokens: burst,
            at: Instant::now(),
        });
    }

    /// Whether this request is over the limit (and so answered 429).
    pub fn refuses(&mut self) -> bool {
        let over = if self.throttle > 0 {
            self.throttle -= 1;
            true
        } else if let Some(bucket) = &mut self.bucket {
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
        self.refused += usize::from(over);
        over
    }

    /// How many requests were answered 429.
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// Seconds until the bucket holds a request again (at least 1).
    pub fn retry_after(&self) -> Duration {
        let wait = self
            .bucket
            .as_ref()
            .map_or(1.0, |b| ((1.0 - b.tokens).max(0.0) / b.per_sec).ceil());
        Duration::from_secs_f64(wait.max(1.0))
    }
}
