//! A loaded transform and its `apply` calls.
//!
//! Transforms are pure: no network and no folder, only their limits. What
//! comes back is checked before the pipeline sees it: one item per event
//! of the batch, and event fields that are JSON objects, or the call is a
//! protocol error naming the plugin.

use std::sync::Arc;

use crate::bindings::TransformPre;
use crate::call::{Caller, Sandbox};
use crate::convert;
use crate::error::{CallError, PluginError};
use crate::event::Event;
use crate::limits::Limits;
use crate::load::Loader;
use crate::plugin_ref::PluginRef;
use crate::verdict::Item;

/// A loaded transform plugin.
///
/// Clones share the instances the handle keeps between calls.
#[derive(Clone)]
pub struct Transform {
    caller: Arc<Caller<TransformPre>>,
}

impl Transform {
    /// Loads a transform.
    pub(crate) async fn load(
        loader: &Loader,
        sandbox: &Arc<Sandbox>,
        plugin: &PluginRef,
        limits: Limits,
    ) -> Result<Transform, PluginError> {
        limits.check().map_err(|msg| PluginError::Grant {
            label: plugin.label.clone(),
            msg,
        })?;
        let pre = loader.transform(plugin).await?;
        let caller = Caller::new(sandbox.clone(), &plugin.label, limits, None, pre);
        caller.prime(plugin).await?;
        Ok(Transform {
            caller: Arc::new(caller),
        })
    }

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
        let config = config.to_string();
        let events: Vec<_> = batch.iter().map(convert::event_to_wit).collect();
        let items = self
            .caller
            .call(move |store, plugin| {
                Box::pin(async move { plugin.apply(store, &config, &events).await })
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
            .map(|item| convert::item_from_wit(item).map_err(|e| protocol(e.to_string())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Instantiate;
    use crate::engine::{Engine, EngineOptions};
    use crate::plugin_ref::PluginLocation;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// Prints the cost of a fresh instance per call. The fixtures are built
    /// by `ebb`'s tests (`ebb-fixtures`); from the workspace root, run
    /// `EBB_FIXTURE_DIR=$PWD/target/wasm/wasm32-wasip2/plugin-dev cargo test -p ebb-plugin-host --release --lib instantiate_timing -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore]
    async fn instantiate_timing() {
        let Some(dir) = std::env::var_os("EBB_FIXTURE_DIR") else {
            eprintln!("skipped: set EBB_FIXTURE_DIR to the folder of the built fixtures");
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
            Instantiate::instantiate(&transform.caller.pre, &mut store)
                .await
                .unwrap();
            drop(store);
            fastest = fastest.min(one.elapsed());
        }
        println!(
            "Store::new + instantiate + drop: mean {:?}, fastest {fastest:?}",
            started.elapsed() / rounds
        );
    }
}
