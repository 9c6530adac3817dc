//! What Ebb counts and times, for `/metrics` (Prometheus scrapes it in the
//! OpenMetrics text format). One process-wide registry: the pipeline records
//! into it wherever it runs, and `ebb serve` exposes it. Label values are
//! names from the config (syncs, destinations, plugins) and fixed words, so
//! the number of series stays bounded by the config.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::event::Op;
use crate::plugin::{CallError, CallObserver, PluginLocation, PluginRef};
use crate::status::{Counts, Status};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    sync: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    sync: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    sync: String,
    /// `added`, `updated`, `deleted` (what the diff found) or `sent`,
    /// `ok`, `rejected`, `failed`, `retried`, `dropped`, `filtered` (what
    /// became of them).
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    sync: String,
    /// `added`, `updated` or `deleted`.
    op: String,
    /// `ok`, `rejected` or `failed`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    sync: String,
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    destination: String,
}

/// A plugin as the config uses it, in plain names.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    /// `destination` or `transform`.
    role: String,
    /// The destination's name, or `SYNC.N` for a sync's Nth transform.
    name: String,
    /// `ebb:http`, or a plugin file's name.
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrapLabels {
    #[prometheus(flatten)]
    plugin: PluginLabels,
    /// `trap`, `timeout` or `out_of_memory`.
    kind: String,
}

/// Histograms of seconds, one per label set.
type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    last_success: Family<SyncLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    owed: Family<SyncLabels, Gauge>,
    records: Family<RecordLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    stages: Timings<StageLabels>,
    writes: Timings<DestinationLabels>,
    retries: Family<DestinationLabels, Counter>,
    calls: Timings<PluginLabels>,
    traps: Family<TrapLabels, Counter>,
}

/// 1 ms to about 2 hours, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 23))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let runs = Family::default();
    let last_success = Family::default();
    let owed = Family::default();
    let records = Family::default();
    let deliveries = Family::default();
    let stages: Timings<_> = Family::new_with_constructor(seconds);
    let writes: Timings<_> = Family::new_with_constructor(seconds);
    let retries = Family::default();
    let calls: Timings<_> = Family::new_with_constructor(seconds);
    let traps = Family::default();
    let mut registry = Registry::with_prefix("ebb");
    registry.register(
        "runs",
        "Runs ended, by sync and status (skipped: asked for while one was in progress)",
        runs.clone(),
    );
    registry.register(
        "last_success_timestamp_seconds",
        "When each sync's last successful run ended (Unix time), to alert on a sync that stopped succeeding",
        last_success.clone(),
    );
    registry.register(
        "rows_owed",
        "Rows each sync still owes its destination (see `ebb errors`), as the state store holds them when scraped",
        owed.clone(),
    );
    registry.register(
        "records",
        "Records of ended runs, by sync and what became of them",
        records.clone(),
    );
    registry.register(
        "deliveries",
        "Events the destination answered, by sync, op and outcome",
        deliveries.clone(),
    );
    registry.register("stage_seconds", "Time runs spent per stage", stages.clone());
    registry.register(
        "destination_write_seconds",
        "Time a destination took to answer one batch",
        writes.clone(),
    );
    registry.register(
        "destination_retries",
        "Records sent again after a retryable answer",
        retries.clone(),
    );
    registry.register(
        "plugin_call_seconds",
        "Time per call into a plugin (destination write, transform apply)",
        calls.clone(),
    );
    registry.register(
        "plugin_traps",
        "Plugin calls that trapped, timed out or ran out of memory",
        traps.clone(),
    );
    Metrics {
        registry,
        runs,
        last_success,
        owed,
        records,
        deliveries,
        stages,
        writes,
        retries,
        calls,
        traps,
    }
});

/// Records a run that ended (or was skipped, with no counts).
pub fn run_ended(sync: &str, status: Status, counts: &Counts, stages: &[(&str, Duration)]) {
    let m = &*METRICS;
    m.runs
        .get_or_create(&RunLabels {
            sync: sync.to_owned(),
            status: status.as_str().to_owned(),
        })
        .inc();
    if status == Status::Success {
        m.last_success
            .get_or_create(&SyncLabels {
                sync: sync.to_owned(),
            })
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    }
    let c = counts;
    for (outcome, n) in [
        ("added", c.added),
        ("updated", c.updated),
        ("deleted", c.deleted),
        ("sent", c.sent),
        ("ok", c.ok),
        ("rejected", c.rejected),
        ("failed", c.failed),
        ("retried", c.retried),
        ("dropped", c.dropped),
        ("filtered", c.filtered),
    ] {
        m.records
            .get_or_create(&RecordLabels {
                sync: sync.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc_by(n);
    }
    for (stage, took) in stages {
        m.stages
            .get_or_create(&StageLabels {
                sync: sync.to_owned(),
                stage: (*stage).to_owned(),
            })
            .observe(took.as_secs_f64());
    }
}

/// Records what became of the events a run handed to the destination, by
/// op and outcome (`ok`, `rejected`, `failed`).
pub fn delivered(sync: &str, outcomes: &HashMap<(Op, &'static str), u64>) {
    for ((op, outcome), n) in outcomes {
        METRICS
            .deliveries
            .get_or_create(&DeliveryLabels {
                sync: sync.to_owned(),
                op: op.as_str().to_owned(),
                outcome: (*outcome).to_owned(),
            })
            .inc_by(*n);
    }
}

/// Records one answer of a destination to a batch, and how many of its
/// records will be sent again.
pub fn destination_wrote(destination: &str, took: Duration, retrying: usize) {
    let m = &*METRICS;
    let labels = DestinationLabels {
        destination: destination.to_owned(),
    };
    m.writes.get_or_create(&labels).observe(took.as_secs_f64());
    m.retries.get_or_create(&labels).inc_by(retrying as u64);
}

/// Records every call into a plugin: its time, and how it failed if it
/// trapped, timed out or ran out of memory. The CLI installs it in the
/// plugin engine it builds. The engine names a plugin by its label, made
/// for messages (``destination `crm` (ebb:http)``); the metrics name it in
/// plain label values, looked up from the config.
pub struct PluginCalls {
    by_label: HashMap<String, PluginLabels>,
}

impl PluginCalls {
    pub fn new(cfg: &Config) -> PluginCalls {
        let destinations = cfg.destinations.values().map(|d| {
            let labels = PluginLabels {
                role: "destination".into(),
                name: d.name.clone(),
                plugin: plugin_name(&d.plugin),
            };
            (d.plugin.label.clone(), labels)
        });
        let transforms = cfg.syncs.values().flat_map(|s| {
            s.transforms.iter().enumerate().map(|(i, t)| {
                let labels = PluginLabels {
                    role: "transform".into(),
                    name: format!("{}.{}", s.name, i + 1),
                    plugin: plugin_name(&t.plugin),
                };
                (t.plugin.label.clone(), labels)
            })
        });
        PluginCalls {
            by_label: destinations.chain(transforms).collect(),
        }
    }

    fn labels(&self, label: &str) -> PluginLabels {
        self.by_label
            .get(label)
            .cloned()
            .unwrap_or_else(|| PluginLabels {
                role: "other".into(),
                name: label.to_owned(),
                plugin: String::new(),
            })
    }
}

/// `ebb:http`, or the file's name.
fn plugin_name(plugin: &PluginRef) -> String {
    match &plugin.location {
        PluginLocation::Builtin(name) => format!("ebb:{name}"),
        PluginLocation::File(path) => path.file_name().map_or_else(
            || path.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        ),
    }
}

impl CallObserver for PluginCalls {
    fn call_finished(&self, plugin: &str, took: Duration, error: Option<&CallError>) {
        let m = &*METRICS;
        let labels = self.labels(plugin);
        m.calls.get_or_create(&labels).observe(took.as_secs_f64());
        let kind = match error {
            None => return,
            Some(CallError::Timeout { .. }) => "timeout",
            Some(CallError::OutOfMemory { .. }) => "out_of_memory",
            Some(_) => "trap",
        };
        m.traps
            .get_or_create(&TrapLabels {
                plugin: labels,
                kind: kind.to_owned(),
            })
            .inc();
    }
}

/// Sets how many rows each of `syncs` owes, as `owed` counts them (none
/// for a sync it leaves out).
pub fn rows_owed<'a>(syncs: impl Iterator<Item = &'a str>, owed: &HashMap<String, i64>) {
    for sync in syncs {
        METRICS
            .owed
            .get_or_create(&SyncLabels {
                sync: sync.to_owned(),
            })
            .set(owed.get(sync).copied().unwrap_or(0));
    }
}

/// Everything recorded so far, in the OpenMetrics text format.
pub fn encode() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry);
    out
}
