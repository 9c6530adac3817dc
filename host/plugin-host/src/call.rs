//! One call into a plugin, in an instance that lives for the handle.
//!
//! A loaded destination or transform keeps the instances its calls used
//! and hands an idle one to its next call, so one instance serves one
//! in-flight slot for as long as the handle lives (a run) and a connector
//! can keep what it fetched, say an OAuth token, between batches. Each call
//! still gets its own limits: the epoch deadline (for guests stuck
//! computing), a wall-clock timeout (for guests waiting on the network) and
//! a log budget are armed afresh, and the memory cap holds for the
//! instance's whole life. An instance whose call failed in any way (trap,
//! timeout, out of memory) is dropped, never entered again: a trapped
//! instance is in an unknown state.
//!
//! Instances come from a pooling allocator of fixed size, so two counters
//! keep within it without any call waiting on another's idle instance:
//! concurrent calls are capped at [`CALL_SLOTS`] (a call waits for a free
//! slot instead of failing), and at most [`IDLE_INSTANCES`] instances are
//! kept idle across all handles; past that, a finished call's instance is
//! dropped. However a call ends, its failure is classified here (timeout,
//! out of memory, trap) with the guest's last words, and the embedder's
//! observer is told.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::{Store, Trap};

use crate::error::{CallError, PluginError};
use crate::limits::{self, Limits};
use crate::observe::CallObserver;
use crate::plugin_ref::PluginRef;
use crate::store::{NetGrant, State};
use crate::ticker::Ticker;

/// Calls that may run at once, across all plugins.
pub const CALL_SLOTS: usize = 64;

/// Instances kept idle between calls, across all plugins.
pub const IDLE_INSTANCES: usize = 192;

/// What every call shares: the wasmtime engine, the free call slots, the
/// count of idle instances, the observer, and the epoch ticker, which runs
/// as long as anything may call.
pub struct Sandbox {
    wasm: wasmtime::Engine,
    slots: Semaphore,
    idle: Arc<AtomicUsize>,
    observer: Option<Arc<dyn CallObserver>>,
    _ticker: Ticker,
}

impl Sandbox {
    pub fn new(
        wasm: wasmtime::Engine,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> std::io::Result<Sandbox> {
        Ok(Sandbox {
            _ticker: Ticker::start(wasm.clone())?,
            wasm,
            slots: Semaphore::new(CALL_SLOTS),
            idle: Arc::default(),
            observer,
        })
    }
}

/// A linked component that can be instantiated into a store: the
/// destination and transform worlds alike.
pub trait Instantiate: Clone + Send + Sync + 'static {
    type Plugin: Send + Sync + 'static;
    fn instantiate<'s>(&'s self, store: &'s mut Store<State>) -> CallFuture<'s, Self::Plugin>;
}

/// An instance between calls.
type Warm<P> = (Store<State>, P);

/// What one call into a plugin needs: the sandbox, who it is, its limits
/// and grants, its linked component and the instances it keeps.
pub struct Caller<P: Instantiate> {
    sandbox: Arc<Sandbox>,
    pub label: Arc<str>,
    limits: Limits,
    net: Option<Arc<NetGrant>>,
    pub(crate) pre: P,
    warm: Mutex<Vec<Warm<P::Plugin>>>,
}

pub type CallFuture<'s, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 's>>;

/// The value a call returned, and an explanation of any requests the
/// egress policy refused during it.
pub struct Finished<T> {
    pub value: T,
    pub denied: Option<String>,
}

impl<P: Instantiate> Caller<P> {
    pub fn new(
        sandbox: Arc<Sandbox>,
        label: &str,
        limits: Limits,
        net: Option<Arc<NetGrant>>,
        pre: P,
    ) -> Caller<P> {
        Caller {
            sandbox,
            label: label.into(),
            limits,
            net,
            pre,
            warm: Mutex::default(),
        }
    }

    /// Runs `body` against an idle instance, or a new one, with this
    /// caller's limits; keeps the instance for the next call if the call
    /// succeeded.
    pub async fn call<T>(
        &self,
        body: impl for<'s> FnOnce(&'s mut Store<State>, &'s P::Plugin) -> CallFuture<'s, T>,
    ) -> Result<Finished<T>, CallError> {
        // The semaphore is never closed, so this always yields a permit.
        let _slot = self.sandbox.slots.acquire().await;
        let (mut store, plugin) = match self.take_warm() {
            Some((store, plugin)) => (store, Some(plugin)),
            None => (self.store()?, None),
        };
        self.arm(&mut store);
        let pre = &self.pre;
        let started = Instant::now();
        let result = tokio::time::timeout(self.limits.call_timeout, async {
            let plugin = match plugin {
                Some(plugin) => plugin,
                None => pre.instantiate(&mut store).await?,
            };
            let value = body(&mut store, &plugin).await?;
            Ok((value, plugin))
        })
        .await;
        let took = started.elapsed();
        let state = store.data();
        let output = state.output.text();
        let denied = self.denials(state);
        self.report_logs(state);
        let error = match result {
            Ok(Ok((value, plugin))) => {
                if !output.is_empty() {
                    tracing::debug!(plugin = %self.label, "plugin output:\n{output}");
                }
                self.observe(took, None);
                self.keep(store, plugin);
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

    /// Instantiates one instance ahead of the first call and keeps it.
    /// Instantiating type-checks the component's exports against the
    /// contract it claims, so a shape that differs under the same version
    /// is refused at load (by `ebb check`), not by the first batch.
    pub async fn prime(&self, plugin: &PluginRef) -> Result<(), PluginError> {
        let refused = |msg: String| PluginError::Exports {
            label: plugin.label.clone(),
            location: plugin.location.to_string(),
            msg,
        };
        let _slot = self.sandbox.slots.acquire().await;
        let mut store = self.store().map_err(|e| refused(e.to_string()))?;
        self.arm(&mut store);
        let instantiated =
            tokio::time::timeout(self.limits.call_timeout, self.pre.instantiate(&mut store))
                .await
                .map_err(|_| refused(self.timeout().to_string()))?;
        let instance = instantiated.map_err(|e| refused(format!("{e:#}")))?;
        self.keep(store, instance);
        Ok(())
    }

    /// Keeps a healthy instance for this caller's next call, unless the
    /// sandbox already keeps as many idle instances as it may.
    fn keep(&self, store: Store<State>, plugin: P::Plugin) {
        let idle = &self.sandbox.idle;
        let taken = idle.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < IDLE_INSTANCES).then_some(n + 1)
        });
        if taken.is_ok() {
            lock(&self.warm).push((store, plugin));
        }
    }

    /// An idle instance of this caller's, if it has one.
    fn take_warm(&self) -> Option<Warm<P::Plugin>> {
        let warm = lock(&self.warm).pop()?;
        self.sandbox.idle.fetch_sub(1, Ordering::Relaxed);
        Some(warm)
    }

    /// A fresh store with this caller's grants and memory cap.
    pub fn store(&self) -> Result<Store<State>, CallError> {
        let state =
            State::new(self.label.clone(), &self.limits, self.net.as_deref()).map_err(|msg| {
                CallError::Trap {
                    label: self.label.to_string(),
                    msg,
                }
            })?;
        let mut store = Store::new(&self.sandbox.wasm, state);
        store.limiter(|state| &mut state.limits);
        Ok(store)
    }

    /// Gives a store a new call's deadline and clears what the last call
    /// left: its output, refusals, log budget and memory verdict.
    fn arm(&self, store: &mut Store<State>) {
        store.data_mut().begin_call();
        store.set_epoch_deadline(1);
        let mut deadline = limits::deadline_callback(&self.limits);
        store.epoch_deadline_callback(move |_| deadline());
    }

    /// Says how many log lines the guest wrote past its budget in a call.
    fn report_logs(&self, state: &State) {
        let dropped = state.logged.dropped_lines;
        if dropped > 0 {
            tracing::warn!(
                target: crate::store::LOG_TARGET,
                plugin = %self.label,
                "{dropped} log lines dropped: the plugin logged more than limits.plugin_log_bytes ({} bytes) in one call",
                state.logged.budget
            );
        }
    }

    /// Why the host refused or cut short requests in this call.
    fn denials(&self, state: &State) -> Option<String> {
        let notes = state.notes.take();
        (!notes.is_empty()).then(|| notes.join("; "))
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

impl<P: Instantiate> Drop for Caller<P> {
    /// The handle's idle instances go, and leave room for others.
    fn drop(&mut self) {
        let kept = lock(&self.warm).len();
        self.sandbox.idle.fetch_sub(kept, Ordering::Relaxed);
    }
}

/// A mutex's guard, also after a panic elsewhere poisoned it: what the
/// plugin host keeps behind mutexes (idle instances, loaded components) is
/// whole between operations.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lines of guest output and of the backtrace kept in a trap message.
const SUMMARY_LINES: usize = 6;

/// How a plugin that ran out of stack is described.
const STACK_OVERFLOW: &str = "stack overflow: the plugin ran out of stack, most likely in deep recursion; make it iterative or shallower";

/// Whether the guest's backtrace is one or two functions calling
/// themselves over and over: a stack run out by recursion. A stack kept
/// in linear memory (Rust's, C's) overflows into an out-of-bounds access.
fn recursed(error: &wasmtime::Error) -> bool {
    let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let frames = backtrace.frames();
    let mut functions: Vec<u32> = frames.iter().map(|f| f.func_index()).collect();
    functions.sort_unstable();
    functions.dedup();
    frames.len() >= 16 && functions.len() <= 3
}

/// The cause of a trap, the end of the guest's output (where a panic
/// message is) and the top of the backtrace when the plugin kept its
/// function names.
fn trap_summary(error: &wasmtime::Error, output: &str, denied: Option<&str>) -> String {
    let mut msg = match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => STACK_OVERFLOW.to_string(),
        Some(Trap::MemoryOutOfBounds) if recursed(error) => format!(
            "{STACK_OVERFLOW} (WebAssembly reports a Rust or C stack overflow as an out-of-bounds memory access)"
        ),
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
