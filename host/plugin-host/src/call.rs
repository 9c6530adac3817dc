//! One call into a plugin, in a fresh instance.
//!
//! Each call instantiates into a new store from a pooling allocator
//! (microseconds), with the call's limits installed, and is bounded both by
//! the epoch deadline (for guests stuck computing) and by a wall-clock
//! timeout (for guests waiting on the network). Concurrent calls are capped
//! at the pool's size and wait for a free slot instead of failing. However
//! a call ends, its failure is classified here (timeout, out of memory,
//! trap) with the guest's last words, and the embedder's observer is told.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::{Store, Trap};

use crate::error::CallError;
use crate::limits::{self, Limits};
use crate::observe::CallObserver;
use crate::store::{NetGrant, State};
use crate::ticker::Ticker;

/// What every call shares: the wasmtime engine, the pool's free slots, the
/// observer, and the epoch ticker, which runs as long as anything may call.
pub struct Sandbox {
    wasm: wasmtime::Engine,
    slots: Semaphore,
    observer: Option<Arc<dyn CallObserver>>,
    _ticker: Ticker,
}

impl Sandbox {
    pub fn new(
        wasm: wasmtime::Engine,
        slots: usize,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> std::io::Result<Sandbox> {
        Ok(Sandbox {
            _ticker: Ticker::start(wasm.clone())?,
            wasm,
            slots: Semaphore::new(slots),
            observer,
        })
    }
}

/// What one call into a plugin needs: the sandbox, who it is, its limits
/// and grants.
#[derive(Clone)]
pub struct Caller {
    sandbox: Arc<Sandbox>,
    pub label: Arc<str>,
    limits: Limits,
    net: Option<Arc<NetGrant>>,
}

pub type CallFuture<'s, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 's>>;

/// The value a call returned, and an explanation of any requests the
/// egress policy refused during it.
pub struct Finished<T> {
    pub value: T,
    pub denied: Option<String>,
}

impl Caller {
    pub fn new(
        sandbox: Arc<Sandbox>,
        label: &str,
        limits: Limits,
        net: Option<Arc<NetGrant>>,
    ) -> Caller {
        Caller {
            sandbox,
            label: label.into(),
            limits,
            net,
        }
    }

    /// Runs `body` against a fresh store with this caller's limits.
    pub async fn call<T>(
        &self,
        body: impl for<'s> FnOnce(&'s mut Store<State>) -> CallFuture<'s, T>,
    ) -> Result<Finished<T>, CallError> {
        // The semaphore is never closed, so this always yields a permit.
        let _slot = self.sandbox.slots.acquire().await;
        let mut store = self.store()?;
        let started = Instant::now();
        let result = tokio::time::timeout(self.limits.call_timeout, body(&mut store)).await;
        let took = started.elapsed();
        let state = store.data();
        let output = state.output.text();
        let denied = self.denials(state);
        let error = match result {
            Ok(Ok(value)) => {
                if !output.is_empty() {
                    tracing::debug!(plugin = %self.label, "plugin output:\n{output}");
                }
                self.observe(took, None);
                return Ok(Finished { value, denied });
            }
            Ok(Err(error)) => self.classify(&error, state, &output, denied.as_deref()),
            Err(_elapsed) => self.timeout(),
        };
        self.observe(took, Some(&error));
        if !output.is_empty() {
            tracing::warn!(plugin = %self.label, "plugin output before the failure:\n{output}");
        }
        Err(error)
    }

    /// A fresh store with this caller's grants, memory cap and deadline.
    pub fn store(&self) -> Result<Store<State>, CallError> {
        let state = State::new(
            self.label.clone(),
            self.limits.memory_bytes,
            self.net.as_deref(),
        )
        .map_err(|msg| CallError::Trap {
            label: self.label.to_string(),
            msg,
        })?;
        let mut store = Store::new(&self.sandbox.wasm, state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(1);
        let mut deadline = limits::deadline_callback(&self.limits);
        store.epoch_deadline_callback(move |_| deadline());
        Ok(store)
    }

    /// Why the egress policy refused the requests it refused in this call.
    fn denials(&self, state: &State) -> Option<String> {
        let net = self.net.as_ref().filter(|_| !state.denied.is_empty())?;
        let explain = |url: &String| net.policy.denial(url, &self.label);
        Some(
            state
                .denied
                .iter()
                .map(explain)
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn observe(&self, took: Duration, error: Option<&CallError>) {
        if let Some(observer) = &self.sandbox.observer {
            observer.call_finished(&self.label, took, error);
        }
    }

    fn timeout(&self) -> CallError {
        CallError::Timeout {
            label: self.label.to_string(),
            after: self.limits.call_timeout,
        }
    }

    fn classify(
        &self,
        error: &wasmtime::Error,
        state: &State,
        output: &str,
        denied: Option<&str>,
    ) -> CallError {
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return self.timeout();
        }
        if state.limits.refused() {
            return CallError::OutOfMemory {
                label: self.label.to_string(),
                limit_bytes: state.limits.limit_bytes(),
            };
        }
        CallError::Trap {
            label: self.label.to_string(),
            msg: trap_summary(error, output, denied),
        }
    }
}

/// Lines of guest output and of the backtrace kept in a trap message.
const SUMMARY_LINES: usize = 6;

/// The cause of a trap, the end of the guest's output (where a panic
/// message is) and the top of the backtrace when the plugin kept its
/// function names.
fn trap_summary(error: &wasmtime::Error, output: &str, denied: Option<&str>) -> String {
    let mut msg = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    let tail: Vec<&str> = output
        .lines()
        .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
        .rev()
        .take(SUMMARY_LINES)
        .collect();
    if !tail.is_empty() {
        msg.push_str("\nplugin output (last lines):");
        for line in tail.into_iter().rev() {
            msg.push_str("\n  ");
            msg.push_str(line);
        }
    }
    if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let text = backtrace.to_string();
        let named: Vec<&str> = text
            .lines()
            .skip(1)
            .filter(|frame| !frame.contains("<wasm function "))
            .take(SUMMARY_LINES)
            .collect();
        if !named.is_empty() {
            msg.push_str("\nwasm backtrace (top):");
            for frame in named {
                msg.push('\n');
                msg.push_str(frame);
            }
        }
    }
    if let Some(denied) = denied {
        msg.push('\n');
        msg.push_str(denied);
    }
    msg
}
