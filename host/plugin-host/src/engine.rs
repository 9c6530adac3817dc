//! The entry point: one [`Engine`] per process.
//!
//! It owns the wasmtime engine, configured once for every plugin (component
//! model, epoch interruption, the pooling allocator sized for the calls
//! that may run at once plus the instances kept idle between them), the
//! components already linked (`load`), and the
//! sandbox every call runs in (`call`). Loading a destination or a
//! transform hands back a cheap handle that keeps all of that alive.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::budget::Budgets;
use crate::call::{CALL_SLOTS, IDLE_INSTANCES, Sandbox};
use crate::destination::Destination;
use crate::error::{PluginError, StartError};
use crate::grants::Grants;
use crate::inspect::Inspected;
use crate::limits::{Limits, MAX_MEMORY_BYTES};
use crate::load::Loader;
use crate::observe::CallObserver;
use crate::plugin_ref::{Builtin, PluginRef};
use crate::transform::Transform;

/// Plugin instances that may exist at once, across all plugins: one per
/// running call, and those kept idle for their handle's next call.
const POOL_INSTANCES: u32 = (CALL_SLOTS + IDLE_INSTANCES) as u32;

#[derive(Clone, Default)]
pub struct EngineOptions {
    /// Folder for precompiled components; `None` compiles in memory on
    /// every start.
    pub cache_dir: Option<PathBuf>,
    /// The components the embedding binary carries, which
    /// [`PluginLocation::Builtin`](crate::plugin_ref::PluginLocation::Builtin)
    /// names.
    pub builtins: &'static [Builtin],
    /// Told about every plugin call, e.g. to keep metrics.
    pub observer: Option<Arc<dyn CallObserver>>,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("cache_dir", &self.cache_dir)
            .field("builtins", &self.builtins)
            .field("observer", &self.observer.as_ref().map(|_| ".."))
            .finish()
    }
}

/// Loads and runs plugins. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Engine {
    loader: Arc<Loader>,
    sandbox: Arc<Sandbox>,
    budgets: Budgets,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Result<Engine, StartError> {
        let wasm = match wasmtime::Engine::new(&config(true)) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(
                    "pooling allocator unavailable ({e:#}); plugin instances will be allocated on demand, which is slower"
                );
                wasmtime::Engine::new(&config(false))?
            }
        };
        let loader = Loader::new(&wasm, opts.cache_dir, opts.builtins)?;
        let sandbox = Sandbox::new(wasm, opts.observer)?;
        Ok(Engine {
            loader: Arc::new(loader),
            sandbox: Arc::new(sandbox),
            budgets: Budgets::default(),
        })
    }

    /// Loads a destination and reads its spec.
    pub async fn destination(
        &self,
        plugin: &PluginRef,
        grants: Grants,
    ) -> Result<Destination, PluginError> {
        Destination::load(&self.loader, &self.sandbox, &self.budgets, plugin, grants).await
    }

    /// What a plugin file is, without linking it: its world, WIT version
    /// and imports, size and sha256.
    pub async fn inspect(&self, plugin: &PluginRef) -> Result<Inspected, PluginError> {
        self.loader.inspect(plugin).await
    }

    /// Loads a transform.
    pub async fn transform(
        &self,
        plugin: &PluginRef,
        limits: Limits,
    ) -> Result<Transform, PluginError> {
        Transform::load(&self.loader, &self.sandbox, plugin, limits).await
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
            // A stack is taken by a running call, not by an idle instance.
            .total_stacks(CALL_SLOTS as u32)
            .max_memory_size(MAX_MEMORY_BYTES);
        // Instances come and go with runs and failed calls. Where the kernel
        // can report which pages were touched (Linux 6.7+), keeping the
        // first MiB of a slot resident and resetting only touched pages
        // avoids faulting memory in and out on each new instance: 24 µs →
        // 9 µs per minimal call when every call had a fresh one.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

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
}
