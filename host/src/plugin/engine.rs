//! Loading plugins and calling them, one fresh instance per batch.
//!
//! One [`Engine`] per process owns the wasmtime engine, the linkers for both
//! worlds, the pre-instantiated components and the epoch ticker. Loading a
//! plugin reads and hash-checks the file, compiles it (or loads it from the
//! [`cache`](super::cache)), links it once into an `InstancePre` kept per
//! component hash, and checks it exports the right world, so a wrong file
//! fails at load with a message rather than mid-sync.
//!
//! Each call then instantiates into a new store from a pooling allocator
//! (microseconds), with the call's limits installed, and is bounded both by
//! the epoch deadline (for guests stuck computing) and by a wall-clock
//! timeout (for guests waiting on the network). Concurrent calls are capped
//! at the pool's size and wait for a free slot instead of failing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use super::bindings::{DestinationPluginPre, TransformPluginPre};
use super::cache::{self, DiskCache};
use super::egress::{Policy, Timeouts};
use super::limits::{self, EPOCH_TICK, MAX_MEMORY_BYTES};
use super::store::{self, NetGrant, State};
use super::{
    CallError, Grants, Item, Limits, Outcome, PluginError, PluginLocation, PluginRef, Spec,
    builtin, convert,
};
use crate::event::Event;

/// Plugin instances that may exist at once, across all plugins.
const POOL_INSTANCES: u32 = 64;

#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Folder for precompiled components; `None` compiles in memory on
    /// every start.
    pub cache_dir: Option<PathBuf>,
}

/// Loads and runs plugins. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    wasm: wasmtime::Engine,
    cache: Option<DiskCache>,
    destination_linker: Linker<State>,
    transform_linker: Linker<State>,
    destinations: Mutex<HashMap<String, DestinationPluginPre<State>>>,
    transforms: Mutex<HashMap<String, TransformPluginPre<State>>>,
    slots: Semaphore,
    _ticker: Ticker,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> anyhow::Result<Engine> {
        let wasm = match wasmtime::Engine::new(&config(true)) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(
                    "pooling allocator unavailable ({e:#}); plugin instances will be allocated on demand, which is slower"
                );
                wasmtime::Engine::new(&config(false))?
            }
        };
        let mut transform_linker = Linker::new(&wasm);
        store::link_common(&mut transform_linker)?;
        let mut destination_linker = Linker::new(&wasm);
        store::link_common(&mut destination_linker)?;
        store::link_http(&mut destination_linker)?;
        let cache = opts.cache_dir.map(|dir| DiskCache::new(dir, &wasm));
        Ok(Engine {
            inner: Arc::new(Inner {
                _ticker: Ticker::start(wasm.clone())?,
                wasm,
                cache,
                destination_linker,
                transform_linker,
                destinations: Mutex::default(),
                transforms: Mutex::default(),
                slots: Semaphore::new(POOL_INSTANCES as usize),
            }),
        })
    }

    /// Loads a destination and reads its spec.
    pub async fn destination(
        &self,
        plugin: &PluginRef,
        grants: Grants,
    ) -> Result<Destination, PluginError> {
        let grant_error = |msg: String| PluginError::Grant {
            label: plugin.label.clone(),
            msg,
        };
        grants.limits.check().map_err(grant_error)?;
        let policy = Policy::parse(&grants.allow_hosts).map_err(grant_error)?;
        if let Some(dir) = &grants.dir
            && !dir.is_dir()
        {
            return Err(grant_error(format!(
                "the granted folder {} does not exist; create it or fix the path",
                dir.display()
            )));
        }
        let inner = &self.inner;
        let pre = self
            .load(
                plugin,
                World::Destination,
                &inner.destinations,
                &inner.destination_linker,
                DestinationPluginPre::new,
            )
            .await?;
        let caller = Caller {
            inner: self.inner.clone(),
            label: plugin.label.as_str().into(),
            limits: grants.limits,
            net: Some(Arc::new(NetGrant {
                policy: Arc::new(policy),
                timeouts: Timeouts {
                    connect: grants.http_connect_timeout,
                    first_byte: grants.http_first_byte_timeout,
                    between_bytes: grants.http_between_bytes_timeout,
                },
                dir: grants.dir,
            })),
        };
        let spec_pre = pre.clone();
        let json = caller
            .call(move |store| {
                Box::pin(async move {
                    let plugin = spec_pre.instantiate_async(&mut *store).await?;
                    plugin.ebb_plugin_destination().call_spec(store).await
                })
            })
            .await
            .map_err(|source| PluginError::Instantiate {
                label: plugin.label.clone(),
                source,
            })?
            .value;
        let spec = Spec::parse(&json).map_err(|msg| PluginError::BadSpec {
            label: plugin.label.clone(),
            msg,
        })?;
        Ok(Destination {
            caller,
            pre,
            spec: Arc::new(spec),
        })
    }

    /// Loads a transform.
    pub async fn transform(
        &self,
        plugin: &PluginRef,
        limits: Limits,
    ) -> Result<Transform, PluginError> {
        limits.check().map_err(|msg| PluginError::Grant {
            label: plugin.label.clone(),
            msg,
        })?;
        let inner = &self.inner;
        let pre = self
            .load(
                plugin,
                World::Transform,
                &inner.transforms,
                &inner.transform_linker,
                TransformPluginPre::new,
            )
            .await?;
        Ok(Transform {
            caller: Caller {
                inner: self.inner.clone(),
                label: plugin.label.as_str().into(),
                limits,
                net: None,
            },
            pre,
        })
    }

    /// Reads, checks, compiles and links a plugin for `world`, reusing the
    /// `InstancePre` of a component already loaded in this process.
    async fn load<P: Clone>(
        &self,
        plugin: &PluginRef,
        world: World,
        loaded: &Mutex<HashMap<String, P>>,
        linker: &Linker<State>,
        check_exports: fn(InstancePre<State>) -> wasmtime::Result<P>,
    ) -> Result<P, PluginError> {
        let (sha, bytes) = read(plugin).await?;
        if let Some(pre) = lock(loaded).get(&sha) {
            return Ok(pre.clone());
        }
        let component = self.compile(plugin, &sha, bytes).await?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(check_exports)
            .map_err(|e| self.wrong_world(plugin, &component, world, e))?;
        lock(loaded).insert(sha, pre.clone());
        Ok(pre)
    }

    async fn compile(
        &self,
        plugin: &PluginRef,
        sha: &str,
        bytes: Cow<'static, [u8]>,
    ) -> Result<Component, PluginError> {
        check_header(&bytes).map_err(|msg| PluginError::NotAComponent {
            label: plugin.label.clone(),
            location: plugin.location.to_string(),
            msg,
        })?;
        let inner = self.inner.clone();
        let sha = sha.to_string();
        let compiled = tokio::task::spawn_blocking(move || {
            cache::compile(&inner.wasm, inner.cache.as_ref(), &bytes, &sha)
                .map_err(|e| format!("{e:#}"))
        })
        .await
        .unwrap_or_else(|e| Err(format!("the compiler stopped unexpectedly: {e}")));
        compiled.map_err(|msg| PluginError::Compile {
            label: plugin.label.clone(),
            location: plugin.location.to_string(),
            msg,
        })
    }

    /// Explains why a component does not fit a world: which import is not
    /// offered, or which exports it has instead of the expected one.
    fn wrong_world(
        &self,
        plugin: &PluginRef,
        component: &Component,
        world: World,
        error: wasmtime::Error,
    ) -> PluginError {
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.inner.wasm)
            .map(|(name, _)| name.to_string())
            .collect();
        let hint = match world {
            World::Transform => {
                "transforms may import only WASI basics and `ebb:plugin/host` (no network); "
            }
            World::Destination => "",
        };
        PluginError::WrongWorld {
            label: plugin.label.clone(),
            location: plugin.location.to_string(),
            world: world.name(),
            msg: format!(
                "{error:#}; {hint}it exports [{}], and this Ebb expects `ebb:plugin/{}@0.1.0`",
                exports.join(", "),
                world.name()
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum World {
    Destination,
    Transform,
}

impl World {
    fn name(self) -> &'static str {
        match self {
            World::Destination => "destination",
            World::Transform => "transform",
        }
    }
}

fn config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::new();
        // A Rust component has a handful of core instances and up to two
        // memories (its own and the WASI adapter's).
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 8)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(MAX_MEMORY_BYTES);
        // Every batch gets a fresh instance. Where the kernel can report
        // which pages were touched (Linux 6.7+), keeping the first MiB of a
        // slot resident and resetting only touched pages avoids faulting
        // memory in and out on each call: 24 µs → 9 µs per minimal call.
        // Without that scan, keeping pages resident costs more than it saves.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.linear_memory_keep_resident(1 << 20)
                .table_keep_resident(64 << 10)
                .pagemap_scan(wasmtime::Enabled::Yes);
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads a plugin's bytes and checks its pin; returns its sha256 in hex.
async fn read(plugin: &PluginRef) -> Result<(String, Cow<'static, [u8]>), PluginError> {
    let bytes = match &plugin.location {
        PluginLocation::Builtin(name) => {
            let Some(bytes) = builtin::get(name) else {
                return Err(PluginError::UnknownBuiltin {
                    label: plugin.label.clone(),
                    name: name.clone(),
                    known: builtin::NAMES.join(", "),
                });
            };
            Cow::Borrowed(bytes)
        }
        PluginLocation::File(path) => match tokio::fs::read(path).await {
            Ok(bytes) => Cow::Owned(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PluginError::NotFound {
                    label: plugin.label.clone(),
                    path: path.clone(),
                });
            }
            Err(source) => {
                return Err(PluginError::Unreadable {
                    label: plugin.label.clone(),
                    path: path.clone(),
                    source,
                });
            }
        },
    };
    let sha = hex::encode(Sha256::digest(&bytes));
    if let Some(expected) = &plugin.sha256
        && !expected.trim().eq_ignore_ascii_case(&sha)
    {
        return Err(PluginError::HashMismatch {
            label: plugin.label.clone(),
            location: plugin.location.to_string(),
            expected: expected.trim().to_string(),
            actual: sha,
        });
    }
    Ok((sha, bytes))
}

/// Tells a component from a core module or a file that is not WebAssembly.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', _, _, 0, 0]) => Err(
            "it is a core WebAssembly module; build the plugin for the wasm32-wasip2 target \
             (or wrap it with `wasm-tools component new`)"
                .to_string(),
        ),
        _ => Err("it does not start with the WebAssembly header; check the path".to_string()),
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: wasmtime::Engine) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ebb-plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one call into a plugin needs: the engine, who it is, its limits
/// and grants.
#[derive(Clone)]
struct Caller {
    inner: Arc<Inner>,
    label: Arc<str>,
    limits: Limits,
    net: Option<Arc<NetGrant>>,
}

type CallFuture<'s, T> = Pin<Box<dyn Future<Output = wasmtime::Result<T>> + Send + 's>>;

/// The value a call returned, and an explanation of any requests the
/// egress policy refused during it.
struct Finished<T> {
    value: T,
    denied: Option<String>,
}

impl Caller {
    /// Runs `body` against a fresh store with this caller's limits.
    async fn call<T>(
        &self,
        body: impl for<'s> FnOnce(&'s mut Store<State>) -> CallFuture<'s, T>,
    ) -> Result<Finished<T>, CallError> {
        // The semaphore is never closed, so this always yields a permit.
        let _slot = self.inner.slots.acquire().await;
        let mut store = self.store()?;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.limits.call_timeout, body(&mut store)).await;
        let took = started.elapsed();
        let state = store.data();
        let output = state.output.text();
        let denied = self
            .net
            .as_ref()
            .filter(|_| !state.denied.is_empty())
            .map(|net| {
                let explain = |url: &String| net.policy.denial(url, &self.label);
                state
                    .denied
                    .iter()
                    .map(explain)
                    .collect::<Vec<_>>()
                    .join("; ")
            });
        let error = match result {
            Ok(Ok(value)) => {
                if !output.is_empty() {
                    tracing::debug!(plugin = %self.label, "plugin output:\n{output}");
                }
                crate::metrics::plugin_called(&self.label, took, None);
                return Ok(Finished { value, denied });
            }
            Ok(Err(error)) => self.classify(&error, state, &output, denied.as_deref()),
            Err(_elapsed) => self.timeout(),
        };
        let kind = match &error {
            CallError::Timeout { .. } => "timeout",
            CallError::OutOfMemory { .. } => "out_of_memory",
            _ => "trap",
        };
        crate::metrics::plugin_called(&self.label, took, Some(kind));
        if !output.is_empty() {
            tracing::warn!(plugin = %self.label, "plugin output before the failure:\n{output}");
        }
        Err(error)
    }

    /// A fresh store with this caller's grants, memory cap and deadline.
    fn store(&self) -> Result<Store<State>, CallError> {
        let state = State::new(
            self.label.clone(),
            self.limits.memory_bytes,
            self.net.as_deref(),
        )
        .map_err(|msg| CallError::Trap {
            label: self.label.to_string(),
            msg,
        })?;
        let mut store = Store::new(&self.inner.wasm, state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(1);
        let mut deadline = limits::deadline_callback(&self.limits);
        store.epoch_deadline_callback(move |_| deadline());
        Ok(store)
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

/// Appends the egress explanation to a plugin-reported error.
fn explain(mut error: super::RemoteError, denied: Option<&str>) -> super::RemoteError {
    if let Some(denied) = denied {
        error.message = format!("{}; {denied}", error.message);
    }
    error
}

/// A loaded destination plugin, with its grants.
#[derive(Clone)]
pub struct Destination {
    caller: Caller,
    pre: DestinationPluginPre<State>,
    spec: Arc<Spec>,
}

impl Destination {
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn label(&self) -> &str {
        &self.caller.label
    }

    /// Asks the plugin to check a config; `Ok(Err(problems))` lists every
    /// problem it found.
    pub async fn validate(
        &self,
        config: &serde_json::Value,
    ) -> Result<Result<(), Vec<String>>, CallError> {
        let pre = self.pre.clone();
        let config = config.to_string();
        let finished = self
            .caller
            .call(move |store| {
                Box::pin(async move {
                    let plugin = pre.instantiate_async(&mut *store).await?;
                    plugin
                        .ebb_plugin_destination()
                        .call_validate(store, &config)
                        .await
                })
            })
            .await?;
        Ok(finished.value)
    }

    /// Delivers one batch; returns one outcome per event, in order.
    pub async fn write(
        &self,
        config: &serde_json::Value,
        action: &str,
        batch: &[Event],
    ) -> Result<Vec<Outcome>, CallError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let pre = self.pre.clone();
        let config = config.to_string();
        let action = action.to_string();
        let events: Vec<_> = batch.iter().map(convert::event_to_wit).collect();
        let Finished { value, denied } = self
            .caller
            .call(move |store| {
                Box::pin(async move {
                    let plugin = pre.instantiate_async(&mut *store).await?;
                    plugin
                        .ebb_plugin_destination()
                        .call_write(store, &config, &action, &events)
                        .await
                })
            })
            .await?;
        let denied = denied.as_deref();
        let outcomes =
            value.map_err(|e| CallError::Remote(explain(convert::remote_error(e), denied)))?;
        if outcomes.len() != batch.len() {
            return Err(CallError::Protocol {
                label: self.caller.label.to_string(),
                msg: format!(
                    "write returned {} outcomes for a batch of {} events",
                    outcomes.len(),
                    batch.len()
                ),
            });
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| match convert::outcome_from_wit(outcome) {
                Outcome::Retry(e) => Outcome::Retry(explain(e, denied)),
                Outcome::Reject(e) => Outcome::Reject(explain(e, denied)),
                Outcome::Ok => Outcome::Ok,
            })
            .collect())
    }
}

/// A loaded transform plugin.
#[derive(Clone)]
pub struct Transform {
    caller: Caller,
    pre: TransformPluginPre<State>,
}

impl Transform {
    pub fn label(&self) -> &str {
        &self.caller.label
    }

    /// Transforms one batch; returns one item per event, in order.
    pub async fn apply(
        &self,
        config: &serde_json::Value,
        batch: &[Event],
    ) -> Result<Vec<Item>, CallError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let pre = self.pre.clone();
        let config = config.to_string();
        let events: Vec<_> = batch.iter().map(convert::event_to_wit).collect();
        let items = self
            .caller
            .call(move |store| {
                Box::pin(async move {
                    let plugin = pre.instantiate_async(&mut *store).await?;
                    plugin
                        .ebb_plugin_transform()
                        .call_apply(store, &config, &events)
                        .await
                })
            })
            .await?
            .value;
        let protocol = |msg: String| CallError::Protocol {
            label: self.caller.label.to_string(),
            msg,
        };
        if items.len() != batch.len() {
            return Err(protocol(format!(
                "apply returned {} items for a batch of {} events",
                items.len(),
                batch.len()
            )));
        }
        items
            .into_iter()
            .map(|item| convert::item_from_wit(item).map_err(protocol))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The pipeline shares handles across tasks and spawns their futures.
    #[test]
    fn handles_and_their_futures_are_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: T) {}
        fn futures(e: &Engine, d: &Destination, t: &Transform, p: &PluginRef, b: &[Event]) {
            let config = serde_json::Value::Null;
            send(e.destination(p, Grants::default()));
            send(e.transform(p, Limits::default()));
            send(d.validate(&config));
            send(d.write(&config, "post", b));
            send(t.apply(&config, b));
        }
        send_sync::<Engine>();
        send_sync::<Destination>();
        send_sync::<Transform>();
        let _ = futures;
    }

    #[test]
    fn pooling_allocator_fits_this_machine() {
        wasmtime::Engine::new(&config(true)).unwrap();
    }

    /// Prints the cost of a fresh instance per call; run with
    /// `cargo test -p ebb --release --lib instantiate_timing -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore]
    async fn instantiate_timing() {
        let Some(dir) = option_env!("EBB_FIXTURE_DIR") else {
            return;
        };
        let engine = Engine::new(EngineOptions::default()).unwrap();
        let plugin = PluginRef {
            label: "transform `m`".into(),
            location: PluginLocation::File(PathBuf::from(dir).join("ebb_misbehave.wasm")),
            sha256: None,
        };
        let transform = engine.transform(&plugin, Limits::default()).await.unwrap();
        let rounds = 10_000u32;
        let mut fastest = Duration::MAX;
        let started = Instant::now();
        for _ in 0..rounds {
            let one = Instant::now();
            let mut store = transform.caller.store().unwrap();
            transform.pre.instantiate_async(&mut store).await.unwrap();
            drop(store);
            fastest = fastest.min(one.elapsed());
        }
        println!(
            "Store::new + instantiate + drop: mean {:?}, fastest {fastest:?}",
            started.elapsed() / rounds
        );
    }

    #[test]
    fn headers_tell_components_from_modules() {
        assert!(check_header(b"\0asm\x0d\0\x01\0rest").is_ok());
        assert!(
            check_header(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        assert!(
            check_header(b"PK\x03\x04zip!")
                .unwrap_err()
                .contains("WebAssembly header")
        );
        assert!(check_header(b"").is_err());
    }
}
