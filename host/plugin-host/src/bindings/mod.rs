//! Rust bindings for every frozen version of the contract the SDK carries
//! (`sdk/wit/since_vX.Y.Z/`), and the one handle per world that hides
//! which version a plugin was built against.
//!
//! The newest version's bindings are the host's own types: events go out
//! and outcomes come back as them. Each older version is bound once in a
//! module of its own (`since_v0_1_0`), which converts the newest types down
//! on the way in and its own up on the way out, as Zed's extension host
//! does. So a plugin built against any released version keeps loading, and
//! the rest of the host is written against one set of types.
//!
//! Exports are async so a plugin call runs on a fiber and can wait on
//! `wasi:http` without blocking a runtime thread. `wasi:*` types come from
//! `wasmtime-wasi`/`wasmtime-wasi-http` (`with:`), so a request resource the
//! guest creates is the same Rust type the egress filter inspects, and the
//! transform world reuses the destination world's `types` and `host` bindings
//! so both worlds share one `Event` type and one log implementation.

pub mod since_v0_1_0;

use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

use crate::call::{CallFuture, Instantiate};
use crate::store::State;

pub mod destination {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit/since_v0.2.0",
        world: "ebb:plugin/destination-plugin",
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

pub mod transform {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit/since_v0.2.0",
        world: "ebb:plugin/transform-plugin",
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "ebb:plugin/types": crate::bindings::destination::ebb::plugin::types,
            "ebb:plugin/host": crate::bindings::destination::ebb::plugin::host,
        },
    });
}

pub use destination::ebb::plugin::host::Level;
pub use destination::ebb::plugin::types::{
    Error as WitError, ErrorKind as WitErrorKind, Event as WitEvent, Op as WitOp,
    Outcome as WitOutcome,
};
pub use transform::exports::ebb::plugin::transform::Item as WitItem;

/// The WIT versions this host accepts, oldest first.
pub const VERSIONS: &[&str] = &[since_v0_1_0::VERSION, ebb_sdk::WIT_VERSION];

/// Links what every plugin may import, for every version: WASI (granting
/// nothing by itself) and each version's `ebb:plugin/host` interface.
pub fn link_host(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    destination::ebb::plugin::host::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    since_v0_1_0::link_host(linker)
}

/// A linked component, or an instance of one, of either version: 0.1.0's
/// bindings or the newest's.
#[derive(Clone)]
pub enum Versioned<Old, New> {
    V0_1(Old),
    Current(New),
}

/// A destination linked against the version it was built for.
pub type DestinationPre =
    Versioned<since_v0_1_0::DestinationPluginPre<State>, destination::DestinationPluginPre<State>>;
/// A destination instance, of whichever version.
pub type DestinationInstance =
    Versioned<since_v0_1_0::DestinationPlugin, destination::DestinationPlugin>;
/// A transform linked against the version it was built for.
pub type TransformPre =
    Versioned<since_v0_1_0::TransformPluginPre<State>, transform::TransformPluginPre<State>>;
/// A transform instance, of whichever version.
pub type TransformInstance = Versioned<since_v0_1_0::TransformPlugin, transform::TransformPlugin>;

/// What the generated `…PluginPre` types of every version and world have
/// in common.
pub trait WorldPre: Clone + Send + Sync + 'static {
    type Plugin: Send + Sync + 'static;
    /// Checks the component exports this world.
    fn check(pre: InstancePre<State>) -> wasmtime::Result<Self>;
    fn instantiate<'s>(&'s self, store: &'s mut Store<State>) -> CallFuture<'s, Self::Plugin>;
}

macro_rules! world_pre {
    ($($pre:ty => $plugin:ty),* $(,)?) => {$(
        impl WorldPre for $pre {
            type Plugin = $plugin;
            fn check(pre: InstancePre<State>) -> wasmtime::Result<Self> {
                <$pre>::new(pre)
            }
            fn instantiate<'s>(&'s self, store: &'s mut Store<State>) -> CallFuture<'s, $plugin> {
                Box::pin(self.instantiate_async(store))
            }
        }
    )*};
}

world_pre! {
    since_v0_1_0::DestinationPluginPre<State> => since_v0_1_0::DestinationPlugin,
    destination::DestinationPluginPre<State> => destination::DestinationPlugin,
    since_v0_1_0::TransformPluginPre<State> => since_v0_1_0::TransformPlugin,
    transform::TransformPluginPre<State> => transform::TransformPlugin,
}

impl<Old: WorldPre, New: WorldPre> Versioned<Old, New> {
    /// Checks the component exports the world at `version`.
    pub fn new(version: &str, pre: InstancePre<State>) -> wasmtime::Result<Self> {
        Ok(if version == since_v0_1_0::VERSION {
            Versioned::V0_1(Old::check(pre)?)
        } else {
            Versioned::Current(New::check(pre)?)
        })
    }
}

impl<Old: WorldPre, New: WorldPre> Instantiate for Versioned<Old, New> {
    type Plugin = Versioned<Old::Plugin, New::Plugin>;
    fn instantiate<'s>(&'s self, store: &'s mut Store<State>) -> CallFuture<'s, Self::Plugin> {
        Box::pin(async move {
            Ok(match self {
                Versioned::V0_1(pre) => Versioned::V0_1(pre.instantiate(store).await?),
                Versioned::Current(pre) => Versioned::Current(pre.instantiate(store).await?),
            })
        })
    }
}

impl DestinationInstance {
    pub async fn spec(&self, store: &mut Store<State>) -> wasmtime::Result<String> {
        match self {
            Versioned::V0_1(p) => p.ebb_plugin_destination().call_spec(store).await,
            Versioned::Current(p) => p.ebb_plugin_destination().call_spec(store).await,
        }
    }

    pub async fn validate(
        &self,
        store: &mut Store<State>,
        config: &str,
    ) -> wasmtime::Result<Result<(), Vec<String>>> {
        match self {
            Versioned::V0_1(p) => {
                p.ebb_plugin_destination()
                    .call_validate(store, config)
                    .await
            }
            Versioned::Current(p) => {
                p.ebb_plugin_destination()
                    .call_validate(store, config)
                    .await
            }
        }
    }

    pub async fn write(
        &self,
        store: &mut Store<State>,
        config: &str,
        action: &str,
        events: &[WitEvent],
    ) -> wasmtime::Result<Result<Vec<WitOutcome>, WitError>> {
        match self {
            Versioned::V0_1(p) => {
                let events = since_v0_1_0::events_down(events);
                let answer = p
                    .ebb_plugin_destination()
                    .call_write(store, config, action, &events)
                    .await?;
                Ok(since_v0_1_0::outcomes_up(answer))
            }
            Versioned::Current(p) => {
                p.ebb_plugin_destination()
                    .call_write(store, config, action, events)
                    .await
            }
        }
    }
}

impl TransformInstance {
    pub async fn apply(
        &self,
        store: &mut Store<State>,
        config: &str,
        events: &[WitEvent],
    ) -> wasmtime::Result<Vec<WitItem>> {
        match self {
            Versioned::V0_1(p) => {
                let events = since_v0_1_0::events_down(events);
                let items = p
                    .ebb_plugin_transform()
                    .call_apply(store, config, &events)
                    .await?;
                Ok(since_v0_1_0::items_up(items))
            }
            Versioned::Current(p) => {
                p.ebb_plugin_transform()
                    .call_apply(store, config, events)
                    .await
            }
        }
    }
}
