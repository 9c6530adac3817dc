//! The sandbox of a plugin instance: what its store holds and grants.
//!
//! A store serves one instance, and is dropped with it: nothing leaks
//! between the handles of different syncs or runs, and a trapped instance
//! (which cannot be entered again) goes with its store. The
//! WASI context grants nothing by default: no environment, arguments,
//! preopened folders or sockets. A destination additionally gets `wasi:http`
//! behind the [`egress`](crate::egress) policy and, when granted, its output
//! folder at `/out`. The guest's stdout and stderr are captured (the last
//! few KiB) and written to `tracing` after the call, and the tail of a
//! crashing guest's output (typically its panic message) goes into the
//! error. What the guest logs through `ebb:plugin/host` goes to `tracing`
//! under [`LOG_TARGET`] as it is written, up to the plugin's
//! [`Limits::log_bytes`](crate::Limits::log_bytes) a call, so a chatty or
//! hostile plugin cannot flood the host's log.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::Level;
use crate::bindings::destination::ebb::plugin::host;
use crate::egress::{self, EgressHooks, Policy, Timeouts};
use crate::limits::{Limits, MemoryCap};
use crate::send::{Notes, Sending};

/// Guest path of a destination's granted output folder.
pub const OUT_DIR: &str = "/out";

/// Bytes of guest stdout/stderr kept per call.
const OUTPUT_TAIL_BYTES: usize = 8 << 10;

/// Host resources (HTTP requests, headers, streams, files) an instance may
/// hold at once. An instance lives for a run, so a guest that never drops
/// its handles would otherwise grow the host's memory call after call;
/// past this, opening another fails in the guest. A destination needs a
/// handful per request in flight.
const RESOURCES_PER_INSTANCE: usize = 16_384;

/// Longest log message accepted from a guest; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 16 << 10;

/// The `tracing` target of every guest log line, with the plugin's label
/// (which names its destination or transform) in the `plugin` field.
pub const LOG_TARGET: &str = "ebb::plugin";

/// Network and folder grants of a destination, shared by all its calls.
pub struct NetGrant {
    pub policy: Arc<Policy>,
    pub timeouts: Timeouts,
    pub dir: Option<PathBuf>,
    /// Bytes of one HTTP response the plugin may read.
    pub response_bytes: u64,
    /// The destination's rate budget, once its spec is read.
    pub budget: Arc<crate::budget::BudgetCell>,
    /// Where its requests are kept, when asked to.
    pub recorder: crate::record::Recorder,
}

/// The data of one call's store.
pub struct State {
    label: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: MemoryCap,
    pub output: OutputTail,
    http: WasiHttpCtx,
    hooks: EgressHooks,
    policy: Arc<Policy>,
    /// Why requests of this call were refused or cut short.
    pub notes: Notes,
    /// What the guest logged in this call.
    pub logged: LogBudget,
}

/// A call's log bytes written and lines dropped past its budget.
#[derive(Default)]
pub struct LogBudget {
    /// Bytes a call may log.
    pub budget: usize,
    bytes: usize,
    pub dropped_lines: u64,
}

impl State {
    pub fn new(label: Arc<str>, limits: &Limits, net: Option<&NetGrant>) -> Result<State, String> {
        let output = OutputTail::default();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(dir) = net.and_then(|n| n.dir.as_ref()) {
            wasi.preopened_dir(dir, OUT_DIR, FsPerms::ReadWrite)
                .map_err(|e| format!("cannot open the granted folder {}: {e:#}", dir.display()))?;
        }
        // Transforms never link `wasi:http`, so their hooks are never used.
        let notes = Notes::default();
        let hooks = net.map_or_else(EgressHooks::default, |net| EgressHooks {
            sending: Sending {
                policy: net.policy.clone(),
                response_bytes: net.response_bytes,
                budget: net.budget.clone(),
                recorder: net.recorder.clone(),
                notes: notes.clone(),
            },
            timeouts: net.timeouts,
        });
        let mut table = ResourceTable::new();
        table.set_max_capacity(RESOURCES_PER_INSTANCE);
        Ok(State {
            label,
            wasi: wasi.build(),
            table,
            limits: MemoryCap::new(limits.memory_bytes),
            output,
            http: WasiHttpCtx::new(),
            policy: hooks.sending.policy.clone(),
            hooks,
            notes,
            logged: LogBudget {
                budget: limits.log_bytes,
                ..LogBudget::default()
            },
        })
    }

    /// Clears what the last call on this store left behind: its captured
    /// output, refused requests, log budget and memory verdict.
    pub fn begin_call(&mut self) {
        self.output.clear();
        self.notes.take();
        self.logged = LogBudget {
            budget: self.logged.budget,
            ..LogBudget::default()
        };
        self.limits.clear_refusal();
    }

    fn egress(&mut self) -> egress::Handler<'_> {
        let State {
            http,
            table,
            hooks,
            policy,
            label,
            notes,
            ..
        } = self;
        egress::Handler {
            http: WasiHttpCtxView {
                ctx: http,
                table,
                hooks,
            },
            policy,
            label,
            notes,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for State {
    fn log(&mut self, level: Level, mut message: String) {
        let logged = &mut self.logged;
        if logged.bytes >= logged.budget {
            logged.dropped_lines += 1;
            return;
        }
        logged.bytes += message.len().min(MAX_LOG_MESSAGE);
        if message.len() > MAX_LOG_MESSAGE {
            let mut end = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str(" …");
        }
        let plugin = &*self.label;
        match level {
            Level::Trace => tracing::trace!(target: LOG_TARGET, plugin, "{message}"),
            Level::Debug => tracing::debug!(target: LOG_TARGET, plugin, "{message}"),
            Level::Info => tracing::info!(target: LOG_TARGET, plugin, "{message}"),
            Level::Warn => tracing::warn!(target: LOG_TARGET, plugin, "{message}"),
            Level::Error => tracing::error!(target: LOG_TARGET, plugin, "{message}"),
        }
    }
}

/// Links what every plugin may import: WASI (granting nothing by itself)
/// and the `ebb:plugin/host` interface of every version.
pub fn link_common(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    crate::bindings::link_host(linker)
}

/// Adds `wasi:http` for destinations, with `outgoing-handler.handle`
/// shadowed by the egress-checking [`egress::Handler`].
pub fn link_http(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    linker.allow_shadowing(true);
    linker.instance(egress::OUTGOING_HANDLER)?.func_wrap(
        "handle",
        |mut store: StoreContextMut<'_, State>, (request, options)| {
            store
                .data_mut()
                .egress()
                .handle(request, options)
                .map(|r| (r,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The last [`OUTPUT_TAIL_BYTES`] a guest wrote to stdout and stderr.
/// Writes never fail, so a chatty guest is not broken by the cap.
#[derive(Clone, Default)]
pub struct OutputTail(Arc<Mutex<Vec<u8>>>);

impl OutputTail {
    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(bytes);
        if buf.len() > OUTPUT_TAIL_BYTES {
            let excess = buf.len() - OUTPUT_TAIL_BYTES;
            buf.drain(..excess);
        }
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// What was captured, as text.
    pub fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).trim().to_string()
    }
}

impl IsTerminal for OutputTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for OutputTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(OUTPUT_TAIL_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputTail {
    async fn ready(&mut self) {}
}

impl AsyncWrite for OutputTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_tail_keeps_the_end() {
        let tail = OutputTail::default();
        tail.push(&vec![b'a'; OUTPUT_TAIL_BYTES]);
        tail.push(b"\npanicked at src/lib.rs:1:1: boom\n");
        let text = tail.text();
        assert!(text.len() <= OUTPUT_TAIL_BYTES);
        assert!(text.ends_with("panicked at src/lib.rs:1:1: boom"));
    }

    #[test]
    fn missing_granted_folder_is_explained() {
        let grant = NetGrant {
            policy: Arc::default(),
            timeouts: Timeouts::default(),
            dir: Some("/nonexistent/ebb-out".into()),
            response_bytes: 1 << 20,
            budget: Arc::default(),
            recorder: Default::default(),
        };
        let err = State::new("destination `d`".into(), &Limits::default(), Some(&grant))
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent/ebb-out"), "{err}");
    }
}
