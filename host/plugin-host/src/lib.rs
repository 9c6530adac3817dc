//! Ebb's WebAssembly host: destination and transform connectors run as
//! components against the WIT package in `sdk/wit/since_vX.Y.Z/`, built
//! against any of its released versions (`bindings`).
//!
//! Plugins are third-party code holding customer data and credentials, so
//! they run sandboxed: each instance has a memory cap and each call a
//! deadline (`limits`), no files, environment or sockets unless granted
//! (`store`), and HTTP only to the hosts the operator granted (`egress`). A
//! crash or timeout fails that one batch, never the host. To keep that
//! cheap, a component is compiled once (`cache`), pre-linked once per
//! process (`load`), and instantiated from a pooling allocator, once per
//! batch in flight of a run (`call`). Each of those modules says why it is
//! built the way it is.
//!
//! This crate is the runtime only, and cannot see the product around it:
//! it knows nothing of sources, state, schedules or metrics. The embedder
//! hands it components (files, or [`Builtin`]s compiled into its binary),
//! grants and limits; it hands back outcomes and typed errors, and tells a
//! [`CallObserver`] about each call.

pub mod bindings;
mod budget;
mod cache;
mod call;
pub mod convert;
mod destination;
mod egress;
mod engine;
mod error;
pub mod event;
mod grants;
mod inspect;
mod limits;
mod load;
mod observe;
mod plugin_ref;
mod record;
mod schema;
mod send;
mod store;
mod ticker;
mod transform;
mod verdict;
mod wanted;

pub use bindings::VERSIONS as WIT_VERSIONS;
pub use budget::{Budget, Rate};
pub use destination::Destination;
/// The newest version of the WIT contract, the one the SDK builds against.
pub use ebb_sdk::WIT_VERSION;
/// A destination's self-description is defined once, in the SDK that
/// plugins build it with; [`ActionSpec`] is its action under the name the
/// host's code reads best with.
pub use ebb_sdk::spec::{self, Action as ActionSpec, Spec};
pub use egress::ORIGIN_HEADER;
pub use engine::{Engine, EngineOptions};
pub use error::{CallError, ErrorKind, PluginError, RemoteError, StartError};
pub use grants::BudgetFor;
pub use grants::Grants;
pub use inspect::{Inspected, Shape};
pub use limits::Limits;
pub use observe::CallObserver;
pub use plugin_ref::{Builtin, PluginLocation, PluginRef};
pub use record::{Exchange, Recorder};
pub use transform::Transform;
pub use verdict::{Item, Outcome};
pub use wanted::{Wanted, ungranted, wanted};
