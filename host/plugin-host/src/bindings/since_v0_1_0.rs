//! Plugins built against `ebb:plugin@0.1.0` (`sdk/wit/since_v0.1.0/`),
//! frozen: its bindings, and the conversions between its types and the
//! newest ones. 0.1.0 events have no `delivery-id`; everything else is the
//! same shape under another name.

use wasmtime::component::{HasSelf, Linker};

use super::{Level, WitError, WitErrorKind, WitEvent, WitItem, WitOp, WitOutcome};
use crate::store::State;

/// The version these bindings are for.
pub const VERSION: &str = "0.1.0";

mod destination {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit/since_v0.1.0",
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

mod transform {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit/since_v0.1.0",
        world: "ebb:plugin/transform-plugin",
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "ebb:plugin/types": super::destination::ebb::plugin::types,
            "ebb:plugin/host": super::destination::ebb::plugin::host,
        },
    });
}

use destination::ebb::plugin::host as old_host;
use destination::ebb::plugin::types as old;
pub use destination::{DestinationPlugin, DestinationPluginPre};
use transform::exports::ebb::plugin::transform::Item as OldItem;
pub use transform::{TransformPlugin, TransformPluginPre};

/// Links 0.1.0's `ebb:plugin/host`, served by the newest one.
pub fn link_host(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    old_host::add_to_linker::<State, HasSelf<State>>(linker, |state| state)
}

impl old_host::Host for State {
    fn log(&mut self, level: old_host::Level, message: String) {
        let level = match level {
            old_host::Level::Trace => Level::Trace,
            old_host::Level::Debug => Level::Debug,
            old_host::Level::Info => Level::Info,
            old_host::Level::Warn => Level::Warn,
            old_host::Level::Error => Level::Error,
        };
        super::destination::ebb::plugin::host::Host::log(self, level, message);
    }
}

/// Events as 0.1.0 has them: without their delivery id.
pub fn events_down(events: &[WitEvent]) -> Vec<old::Event> {
    events
        .iter()
        .map(|e| old::Event {
            op: match e.op {
                WitOp::Added => old::Op::Added,
                WitOp::Updated => old::Op::Updated,
                WitOp::Deleted => old::Op::Deleted,
            },
            id: e.id.clone(),
            fields: e.fields.clone(),
            previous: e.previous.clone(),
        })
        .collect()
}

/// A 0.1.0 event as the newest version has it; the host gives every event
/// coming out of a transform its delivery id, so none is made up here.
fn event_up(e: old::Event) -> WitEvent {
    WitEvent {
        op: match e.op {
            old::Op::Added => WitOp::Added,
            old::Op::Updated => WitOp::Updated,
            old::Op::Deleted => WitOp::Deleted,
        },
        id: e.id,
        fields: e.fields,
        previous: e.previous,
        delivery_id: String::new(),
    }
}

fn error_up(e: old::Error) -> WitError {
    WitError {
        kind: match e.kind {
            old::ErrorKind::InvalidConfig => WitErrorKind::InvalidConfig,
            old::ErrorKind::Auth => WitErrorKind::Auth,
            old::ErrorKind::RateLimited => WitErrorKind::RateLimited,
            old::ErrorKind::Transient => WitErrorKind::Transient,
            old::ErrorKind::Rejected => WitErrorKind::Rejected,
            old::ErrorKind::Internal => WitErrorKind::Internal,
        },
        message: e.message,
        retry_after_ms: e.retry_after_ms,
    }
}

pub fn outcomes_up(
    answer: Result<Vec<old::Outcome>, old::Error>,
) -> Result<Vec<WitOutcome>, WitError> {
    let outcomes = answer.map_err(error_up)?;
    Ok(outcomes
        .into_iter()
        .map(|outcome| match outcome {
            old::Outcome::Ok => WitOutcome::Ok,
            old::Outcome::Retry(e) => WitOutcome::Retry(error_up(e)),
            old::Outcome::Reject(e) => WitOutcome::Reject(error_up(e)),
        })
        .collect())
}

pub fn items_up(items: Vec<OldItem>) -> Vec<WitItem> {
    items
        .into_iter()
        .map(|item| match item {
            OldItem::Keep(e) => WitItem::Keep(event_up(e)),
            OldItem::Drop => WitItem::Drop,
            OldItem::Split(events) => WitItem::Split(events.into_iter().map(event_up).collect()),
            OldItem::Fail(e) => WitItem::Fail(error_up(e)),
        })
        .collect()
}
