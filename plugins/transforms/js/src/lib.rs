//! `ebb:js`: runs a JavaScript transformation, written to RudderStack's
//! contract (`export function transformEvent(event, metadata)` or
//! `transformBatch(events, metadata)`, libraries imported by name, `log`),
//! inside QuickJS compiled into this component, so JavaScript gets exactly
//! the sandbox of every other transform.
//!
//! Users do not configure it by hand: a sync's `{ js = "FILE", libraries
//! = { NAME = "FILE" }, shape = "ebb" | "rudderstack" }` makes the host read
//! the files and pass this config: `file` and `source` of the
//! transformation, `libraries` (name → `{file, source}`), `shape`, and the
//! `sync` and `destination` names `metadata(event)` reports, and
//! `heap_bytes`, the most the JavaScript heap may take.
//!
//! With `probe: true` the files are only compiled: every event is dropped
//! if they load and fails with why if not.
//!
//! The engine is built once per instance, which lives for a run, and reused
//! for every batch whose config is the same text; the batch crosses into
//! JavaScript as one JSON text and each kept event comes back as JSON text,
//! so no event is parsed in Rust on the way.
//!
//! This crate needs a C compiler for `wasm32-wasip2`, which a plain Rust
//! toolchain lacks: `build.sh` beside it builds the component reproducibly,
//! and the host embeds the copy checked in as `ebb_js.wasm`.

mod engine;
mod wire;

use std::cell::RefCell;
use std::collections::BTreeMap;

use ebb_sdk::bindings::destination::ebb::plugin::types as wit;
use ebb_sdk::bindings::transform::exports::ebb::plugin::transform::Item;
use serde::Deserialize;

use engine::Engine;

/// What the host passes, as described above.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    file: String,
    source: String,
    #[serde(default)]
    libraries: BTreeMap<String, Library>,
    #[serde(default)]
    shape: Shape,
    #[serde(default)]
    sync: String,
    #[serde(default)]
    destination: String,
    /// The most QuickJS may allocate, below the instance's memory limit, so
    /// that a transformation running out of memory fails its row with
    /// JavaScript's `out of memory` rather than trapping the whole batch.
    heap_bytes: Option<usize>,
    /// Only compile: each event is dropped if the files load, or fails
    /// with why not. The host probes this way before a run, so a syntax
    /// error stops `ebb check` and the run instead of failing every row.
    #[serde(default)]
    probe: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Library {
    file: String,
    source: String,
}

/// What the transformation is given and what its return value means.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Shape {
    /// Ebb's envelope in, an envelope out.
    #[default]
    Ebb,
    /// An identify call in; what comes back is the event's fields.
    Rudderstack,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Ebb => "ebb",
            Shape::Rudderstack => "rudderstack",
        }
    }
}

/// An engine for one config text.
struct Built {
    config: String,
    /// The config's `probe`.
    probe: bool,
    /// The engine, or why it could not be built, which every batch reports.
    engine: Result<Engine, String>,
}

thread_local! {
    static ENGINE: RefCell<Option<Built>> = const { RefCell::new(None) };
}

/// One item per event, in order.
pub fn apply(config: &str, batch: Vec<wit::Event>) -> Vec<Item> {
    ENGINE.with_borrow_mut(|cached| {
        if cached.as_ref().is_none_or(|built| built.config != config) {
            // Drop the old engine first: two would hold two heaps at once.
            *cached = None;
            *cached = Some(build(config));
        }
        let Some(built) = cached.as_ref() else {
            unreachable!("filled above")
        };
        match &built.engine {
            Ok(_) if built.probe => batch.iter().map(|_| Item::Drop).collect(),
            Ok(engine) => engine.run(&batch),
            Err(why) => wire::fail_all(batch.len(), why),
        }
    })
}

fn build(text: &str) -> Built {
    let (probe, engine) = match serde_json::from_str::<Config>(text) {
        Ok(config) => (config.probe, Engine::new(&config)),
        Err(e) => (false, Err(format!("invalid config: {e}"))),
    };
    Built {
        config: text.to_owned(),
        probe,
        engine,
    }
}

#[cfg(target_arch = "wasm32")]
mod export {
    use super::*;
    use ebb_sdk::bindings::transform::exports::ebb::plugin::transform::Guest;

    struct Js;

    impl Guest for Js {
        fn apply(config: String, batch: Vec<wit::Event>) -> Vec<Item> {
            super::apply(&config, batch)
        }
    }

    ebb_sdk::bindings::transform::export_transform_world!(Js with_types_in ebb_sdk::bindings::transform);
}

#[cfg(test)]
mod tests;
