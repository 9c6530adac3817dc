//! Per-call resource limits: a memory cap and a deadline.
//!
//! A plugin is third-party code, so a bug in it (an endless loop, a runaway
//! allocation) must fail one batch, never the host. Memory is capped per
//! linear memory through a [`ResourceLimiter`] that also remembers whether it
//! refused a grow, so the engine can tell "ran out of memory" from any other
//! trap without parsing messages. Time is bounded by epoch interruption: a
//! ticker advances the engine's epoch every [`EPOCH_TICK`], and a store's
//! deadline callback yields to the async runtime on every tick (so a busy
//! guest never starves other tasks) and interrupts the guest once the call's
//! budget is spent.

use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder, UpdateDeadline};

/// How often the engine's epoch advances; the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest linear memory a plugin may be granted; the pooling allocator
/// reserves slots of this size.
pub const MAX_MEMORY_BYTES: usize = 256 << 20;

/// What one plugin call may consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Cap on each of the plugin's linear memories, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock budget for one call (one batch), including time spent
    /// waiting on the network.
    pub call_timeout: Duration,
    /// Bytes of log messages the plugin may write in one call; lines past
    /// it are counted, not written, and the count is logged once the call
    /// ends.
    pub log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(30),
            log_bytes: 256 << 10,
        }
    }
}

impl Limits {
    /// Why these limits cannot be enforced, if they cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "memory limit of {} MiB exceeds the maximum of {} MiB; lower it",
                self.memory_bytes >> 20,
                MAX_MEMORY_BYTES >> 20
            ));
        }
        if self.call_timeout.is_zero() {
            return Err("call timeout must be greater than zero".to_string());
        }
        Ok(())
    }
}

/// A [`StoreLimits`] that records whether it refused to grow a memory.
pub struct MemoryCap {
    inner: StoreLimits,
    limit_bytes: usize,
    refused: bool,
}

impl MemoryCap {
    pub fn new(limit_bytes: usize) -> Self {
        MemoryCap {
            inner: StoreLimitsBuilder::new()
                .memory_size(limit_bytes)
                .trap_on_grow_failure(true)
                .build(),
            limit_bytes,
            refused: false,
        }
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Forgets an earlier refusal, before the instance's next call.
    pub fn clear_refusal(&mut self) {
        self.refused = false;
    }

    /// Whether the guest asked for more memory than it may have.
    pub fn refused(&self) -> bool {
        self.refused
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let verdict = self.inner.memory_growing(current, desired, maximum);
        if !matches!(verdict, Ok(true)) {
            self.refused = true;
        }
        verdict
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.refused = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The epoch-deadline policy of one call: yield to the runtime on every
/// tick, interrupt the guest once `call_timeout` has passed since the call
/// began. Install it with a deadline of one tick.
pub fn deadline_callback(
    limits: &Limits,
) -> impl FnMut() -> wasmtime::Result<UpdateDeadline> + Send + Sync + 'static {
    let until = Instant::now() + limits.call_timeout;
    move || {
        Ok(if Instant::now() >= until {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_beyond_the_pool_are_refused() {
        let too_big = Limits {
            memory_bytes: MAX_MEMORY_BYTES + 1,
            ..Limits::default()
        };
        assert!(too_big.check().unwrap_err().contains("exceeds the maximum"));
        assert!(Limits::default().check().is_ok());
    }

    #[test]
    fn refused_grow_is_remembered() {
        let mut cap = MemoryCap::new(1 << 20);
        assert!(matches!(cap.memory_growing(0, 1 << 16, None), Ok(true)));
        assert!(!cap.refused());
        assert!(cap.memory_growing(1 << 16, 2 << 20, None).is_err());
        assert!(cap.refused());
    }
}
