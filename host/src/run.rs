//! One sync run: claim → extract → diff → transform → map → load → commit →
//! record. `plan` walks the same path but stops before load and writes
//! nothing.
//!
//! Everything that can fail because of the config (plugins, destination
//! config, action, columns, mapping) is checked in [`prepare`], before the
//! state store is opened, so a bad config leaves no trace. After that, each
//! chunk of changes is committed as soon as the destination acknowledged it,
//! so a crash loses at most the chunk in flight, which the next run derives
//! again.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::config::{self, Config, DiffIn};
use crate::cursor::Cursor;
use crate::diff::{self, Change, Spill, warehouse as pushdown};
use crate::event::{Event, Op, Record};
use crate::extract::{self, CursorTemplate, Templates};
use crate::load::Loader;
use crate::param::ParamKind;
use crate::plugin::{ActionSpec, Engine, Grants};
use crate::rows::RowRef;
use crate::source::{BoundQuery, Warehouse};
use crate::state::{Claim, Commit, RowError, RunEnd, Snapshot, State};
use crate::status::{Counts, Status};
use crate::transform::{self, Step};

/// How many heartbeats a run sends per lease: a few may be late or lost
/// before the run is taken to be dead.
const BEATS_PER_LEASE: u32 = 6;

/// How long an interrupted run waits for the batches it has in flight to be
/// answered (and then commits them) before it gives up on them; they are
/// sent again by the next run.
const WIND_DOWN: Duration = Duration::from_secs(5);

/// Resolves when the process is asked to stop, naming the signal.
pub async fn interrupted() -> String {
    use tokio::signal::unix::{SignalKind, signal};
    let name = match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    };
    name.to_owned()
}

/// Everything a run needs, loaded and checked.
pub struct Prepared {
    pub sync: config::Sync,
    pub model: config::Model,
    pub source: config::Source,
    pub limits: crate::limits::Limits,
    pub warehouse: Warehouse,
    pub loader: Loader,
    pub steps: Vec<Step>,
    /// How `{{cursor}}` is bound, for a cursor model.
    pub cursor_kind: Option<crate::param::ParamKind>,
    /// How a `diff = "warehouse"` statement fingerprints the model's rows.
    pub row_hash: pushdown::RowHash,
}

/// Loads the sync's plugins, checks the destination config, the action, the
/// query's columns and the mapping.
pub async fn prepare(cfg: &Config, engine: &Engine, sync_name: &str) -> anyhow::Result<Prepared> {
    let sync = cfg.sync(sync_name)?.clone();
    let model = cfg.model(&sync.model)?.clone();
    let source = cfg.sources[&model.source].clone();
    let dest = &cfg.destinations[&sync.destination];
    let key = format!("syncs.{}", sync.name);
    let (loader, action) = destination(cfg, engine, &sync).await?;

    let mut steps = Vec::with_capacity(sync.transforms.len());
    for t in &sync.transforms {
        steps.push(Step {
            label: t.plugin.label.clone(),
            transform: engine.transform(&t.plugin, t.limits).await?,
            config: t.config.clone(),
        });
    }

    let mut warehouse = Warehouse::connect(&source).await?;
    let probe = extract::bind(&model, source.kind, &Templates::first_run(&model))
        .map_err(|e| anyhow!(e))?;
    let described = warehouse.columns(&probe).await?;
    extract::check_columns(&model, &described, &cfg.limits).map_err(|e| anyhow!(e))?;
    if model.diff == DiffIn::Warehouse {
        pushdown::check_columns(&model, &described).map_err(|e| anyhow!(e))?;
    }
    let cursor_kind = model.cursor.as_ref().and_then(|c| {
        described
            .iter()
            .find(|col| &col.name == c)
            .map(|col| crate::cursor::kind_of_type(source.kind, &col.type_name))
    });
    let row_hash = pushdown::RowHash::for_columns(&described);
    let columns: Vec<String> = described.into_iter().map(|c| c.name).collect();

    // With transforms in between, the shape reaching the mapping is theirs
    // to decide; only a direct mapping can be checked against the columns.
    if let Some(mapping) = sync.mapping.as_ref().filter(|_| steps.is_empty()) {
        for field in mapping.source_fields() {
            let known = columns
                .iter()
                .any(|c| c == field || field.starts_with(&format!("{c}.")));
            if !known {
                bail!(
                    "{key}.mapping: `{field}` is not a column of model `{}` (columns: {})",
                    model.name,
                    columns.join(", ")
                );
            }
        }
    }
    let produced: Option<HashSet<&str>> = match &sync.mapping {
        Some(m) => Some(m.targets().collect()),
        None if steps.is_empty() => Some(columns.iter().map(String::as_str).collect()),
        None => None,
    };
    if let Some(produced) = produced {
        for field in action.fields.iter().filter(|f| f.required) {
            if !produced.contains(field.name.as_str()) {
                bail!(
                    "{key}: action `{}` of destination `{}` requires field `{}`; map it in {key}.mapping",
                    action.name,
                    dest.name,
                    field.name
                );
            }
        }
    }

    Ok(Prepared {
        sync,
        model,
        source,
        limits: cfg.limits.clone(),
        warehouse,
        loader,
        steps,
        cursor_kind,
        row_hash,
    })
}

/// The sync's destination plugin, loaded, its config and action checked,
/// as a loader.
async fn destination(
    cfg: &Config,
    engine: &Engine,
    sync: &config::Sync,
) -> anyhow::Result<(Loader, ActionSpec)> {
    let dest = &cfg.destinations[&sync.destination];
    let key = format!("syncs.{}", sync.name);
    let defaults = Grants::default();
    let grants = Grants {
        allow_hosts: dest.allow_hosts.clone(),
        dir: dest.allow_dir.clone(),
        limits: dest.plugin_limits,
        // A destination given a long `timeout_secs` may take that long to
        // answer a request, too.
        http_first_byte_timeout: defaults
            .http_first_byte_timeout
            .max(dest.plugin_limits.call_timeout),
        ..defaults
    };
    let destination = engine.destination(&dest.plugin, grants).await?;
    if let Err(problems) = destination.validate(&dest.config).await? {
        bail!(
            "destinations.{}.config: {} refuses its config: {}",
            dest.name,
            dest.plugin.label,
            problems.join("; ")
        );
    }
    let spec = destination.spec().clone();
    let declared = || {
        spec.actions
            .iter()
            .map(|a| format!("`{}`", a.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let action = match &sync.action {
        Some(a) => spec.actions.iter().find(|x| &x.name == a).ok_or_else(|| {
            anyhow!(
                "{key}.action: destination `{}` has no action `{a}`; it declares: {}",
                dest.name,
                declared()
            )
        })?,
        None if spec.actions.len() == 1 => &spec.actions[0],
        None => bail!(
            "{key}.action: destination `{}` declares several actions ({}); choose one",
            dest.name,
            declared()
        ),
    }
    .clone();

    let loader = Loader {
        name: dest.name.clone(),
        label: dest.plugin.label.clone(),
        config: dest.config.clone(),
        action: action.name.clone(),
        max_in_flight: dest.max_in_flight,
        batch_records: dest
            .batch_size
            .unwrap_or(spec.max_batch_records)
            .min(spec.max_batch_records)
            .max(1),
        batch_bytes: spec.max_batch_bytes.max(1),
        retry: sync.retry,
        destination,
        halt: tokio_util::sync::CancellationToken::new(),
    };
    Ok((loader, action))
}

/// What `ebb replay` sent and how the destination answered.
#[derive(Debug, Default, Serialize)]
pub struct Replayed {
    pub sync: String,
    pub run_id: i64,
    pub sent: u64,
    pub ok: u64,
    pub rejected: u64,
    pub failed: u64,
    /// The destination's first few errors.
    pub errors: Vec<String>,
}

/// How many errors a replay reports.
const REPLAY_ERRORS_SHOWN: usize = 5;

/// Sends again exactly the events run `run_id` delivered, as it delivered
/// them (after transforms and mapping), in the order they were
/// acknowledged. Nothing is extracted and the snapshot and the owed rows
/// stay as they are: a replay repairs the destination, not Ebb's state.
pub async fn replay(
    cfg: &Config,
    engine: &Engine,
    sync_name: &str,
    run_id: i64,
) -> anyhow::Result<Replayed> {
    let sync = cfg.sync(sync_name)?;
    let kept = match State::open_existing(&cfg.state_url).await? {
        Some(state) => state.deliveries(sync_name, run_id).await?,
        None => Vec::new(),
    };
    if kept.is_empty() {
        bail!(
            "no delivered events are kept for run {run_id} of sync `{sync_name}`: it delivered nothing, \
             is not a run of this sync (see `ebb history {sync_name}`), or is older than the last {} runs \
             ([state] keep_runs)",
            cfg.keep_runs
        );
    }
    let events = kept
        .iter()
        .map(|e| serde_json::from_str::<Event>(e))
        .collect::<Result<Vec<_>, _>>()
        .context("the state store holds an event Ebb cannot read")?;
    let (loader, _) = destination(cfg, engine, sync).await?;
    let mut out = Replayed {
        sync: sync_name.to_string(),
        run_id,
        sent: events.len() as u64,
        ..Replayed::default()
    };
    let mut delivered = loader.deliver(&events);
    while let Some(done) = delivered.next().await {
        for delivery in done.deliveries {
            let error = delivery.tally(&mut out.ok, &mut out.rejected, &mut out.failed);
            if let Some(message) = error
                && out.errors.len() < REPLAY_ERRORS_SHOWN
            {
                out.errors.push(message);
            }
        }
    }
    Ok(out)
}

/// Forgets what the sync delivered (in the state store and, for a model
/// with `diff = "warehouse"`, in the warehouse), so its next run sends every
/// record as added. Its run history stays.
pub async fn reset(cfg: &Config, sync: &str) -> anyhow::Result<()> {
    let model = cfg.model(&cfg.sync(sync)?.model)?;
    if model.diff == DiffIn::Warehouse {
        let source = &cfg.sources[&model.source];
        pushdown::Snapshots::open(source)
            .await?
            .reset(sync)
            .await
            .with_context(|| {
                format!(
                    "cannot reset sync `{sync}` in {} of source `{}`",
                    pushdown::table(source),
                    source.name
                )
            })?;
    }
    if let Some(state) = State::open_existing(&cfg.state_url).await? {
        state.reset(sync).await?;
    }
    Ok(())
}

/// How a run ended, as `ebb run` reports it.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub run_id: i64,
    pub sync: String,
    pub status: Status,
    pub counts: Counts,
    pub error: Option<String>,
}

/// Runs the sync once and records the run; Ctrl-C or SIGTERM interrupts it.
pub async fn run(
    cfg: &Config,
    engine: &Engine,
    sync_name: &str,
    progress: &ProgressBar,
) -> anyhow::Result<Summary> {
    match start(cfg, engine, sync_name, None).await? {
        Started::Skipped(summary) => Ok(summary),
        Started::Running(claimed) => claimed.execute(cfg, progress, interrupted()).await,
    }
}

/// What [`start`] got: a run that may go ahead, or the skipped run recorded
/// because another run of the sync was in progress.
pub enum Started {
    Running(Box<Claimed>),
    Skipped(Summary),
}

/// A run recorded as running, not yet executed.
pub struct Claimed {
    pub run_id: i64,
    sync_name: String,
    prepared: Prepared,
    state: State,
}

/// Checks the sync (see [`prepare`]) and records its run as started, unless
/// the sync is switched off or already running. `state` is the store when
/// the caller has it open; without it, the store is opened (and created)
/// only once the sync's config proved good, so a bad config leaves no
/// trace.
pub async fn start(
    cfg: &Config,
    engine: &Engine,
    sync_name: &str,
    state: Option<State>,
) -> anyhow::Result<Started> {
    if !cfg.sync(sync_name)?.enabled {
        bail!(
            "sync `{sync_name}` is disabled in {} (enabled = false); remove that line to run it",
            cfg.file.display()
        );
    }
    // With the store open, checked before the plugins are loaded and the
    // source is asked about the query: under `ebb serve`, triggers that
    // find the sync running are the common case under load.
    if let Some(state) = &state
        && let Some((running, id)) = state.skip_if_running(sync_name, cfg.lease).await?
    {
        return Ok(skipped(sync_name, running, id));
    }
    let prepared = prepare(cfg, engine, sync_name).await?;
    let state = match state {
        Some(state) => state,
        None => State::open(&cfg.state_url).await?,
    };
    if state
        .schedules()
        .await?
        .get(sync_name)
        .is_some_and(|c| c.disabled)
    {
        bail!(
            "sync `{sync_name}` is disabled through the API; enable it there (POST /syncs/{sync_name}/enable) to run it"
        );
    }
    Ok(match state.claim(sync_name, cfg.lease).await? {
        Claim::Started(run_id) => Started::Running(Box::new(Claimed {
            run_id,
            sync_name: sync_name.to_owned(),
            prepared,
            state,
        })),
        Claim::Busy {
            running,
            skipped: id,
        } => skipped(sync_name, running, id),
    })
}

/// The summary of a trigger recorded as skipped run `id` because run
/// `running` was in progress.
fn skipped(sync_name: &str, running: i64, id: i64) -> Started {
    Started::Skipped(Summary {
        run_id: id,
        sync: sync_name.to_string(),
        status: Status::Skipped,
        counts: Counts::default(),
        error: Some(format!(
            "skipped: run {running} of this sync is still in progress"
        )),
    })
}

impl Claimed {
    /// Executes the run and records how it ended. When `stop` resolves
    /// (naming why), no new batch goes out, the batches in flight get
    /// [`WIND_DOWN`] to be answered and committed (what is still unanswered
    /// then is sent by the next run), and the run is closed, so the next run
    /// need not wait for this one's heartbeat.
    pub async fn execute(
        self: Box<Self>,
        cfg: &Config,
        progress: &ProgressBar,
        stop: impl Future<Output = String>,
    ) -> anyhow::Result<Summary> {
        let Claimed {
            run_id,
            sync_name,
            prepared,
            state,
        } = *self;
        let sync_name = sync_name.as_str();
        let (taken_over, on_taken_over) = tokio::sync::oneshot::channel();
        let heartbeat = {
            let state = state.clone();
            let beat_every = cfg.lease / BEATS_PER_LEASE;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(beat_every).await;
                    match state.heartbeat(run_id).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = taken_over.send(());
                            return;
                        }
                        Err(e) => tracing::warn!(run_id, "cannot record the run's heartbeat: {e}"),
                    }
                }
            })
        };
        let mut pass = Pass::new(
            &prepared.sync,
            &prepared.loader,
            &prepared.steps,
            Some((&state, run_id)),
            progress,
        );
        pass.keep_deliveries = cfg.keep_runs > 0;
        let result = {
            let execution = pass.execute(
                prepared.warehouse,
                &prepared.model,
                &prepared.source,
                &prepared.limits,
                prepared.cursor_kind,
                prepared.row_hash,
            );
            let mut execution = std::pin::pin!(execution);
            tokio::select! {
                result = &mut execution => result,
                why = stop => {
                    // No new batch goes out; those in flight may still be
                    // answered and committed, for a while.
                    prepared.loader.halt.cancel();
                    let interrupted = anyhow!(
                        "interrupted by {why}; what the destination acknowledged is committed, the rest is sent next run"
                    );
                    match tokio::time::timeout(WIND_DOWN, &mut execution).await {
                        // It had sent everything: the run is complete.
                        Ok(Ok(())) => Ok(()),
                        _ => Err(interrupted),
                    }
                }
                Ok(()) = on_taken_over => Err(anyhow!(taken_over_message(run_id))),
            }
        };
        heartbeat.abort();
        progress.finish_and_clear();
        let Pass {
            counts,
            timings,
            cursor,
            ..
        } = pass;
        let (status, error) = match result {
            Err(e) => (Status::Failed, Some(format!("{e:#}"))),
            Ok(()) if counts.rejected + counts.failed == 0 => (Status::Success, None),
            Ok(()) if counts.ok + counts.dropped + counts.filtered > 0 => (Status::Partial, None),
            Ok(()) => (
                Status::Failed,
                Some("no change could be delivered; see `ebb errors`".into()),
            ),
        };
        crate::metrics::run_ended(sync_name, status, &counts, &timings);
        let timings_ms = serde_json::Value::Object(
            timings
                .into_iter()
                .map(|(k, d)| (k.to_string(), (d.as_millis() as u64).into()))
                .collect(),
        );
        let cursor = cursor.map(|c| c.template());
        let end = RunEnd {
            status,
            counts: &counts,
            timings_ms: &timings_ms,
            error: error.as_deref(),
            cursor: cursor.as_ref(),
        };
        state
            .finish(sync_name, run_id, &end)
            .await
            .context("cannot record the end of the run")?;
        state
            .prune_deliveries(sync_name, cfg.keep_runs)
            .await
            .context("cannot forget the deliveries of older runs")?;
        let summary = Summary {
            run_id,
            sync: sync_name.to_string(),
            status,
            counts,
            error,
        };
        crate::alert::run_ended(cfg, &state, &summary).await;
        Ok(summary)
    }
}

/// Why a run stops when another process closed it as abandoned (its
/// heartbeats were late, e.g. the machine was suspended): going on would
/// overlap the run that took over.
fn taken_over_message(run_id: i64) -> String {
    format!(
        "run {run_id} stopped: its heartbeat was late and another process closed it as abandoned; \
         what the destination acknowledged before that is committed, the rest is sent by a later run"
    )
}

/// What a run would send now; sends and writes nothing.
pub async fn plan(
    cfg: &Config,
    engine: &Engine,
    sync_name: &str,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<Event>> {
    let prepared = prepare(cfg, engine, sync_name).await?;
    let state = State::open_existing(&cfg.state_url).await?;
    let mut pass = Pass::new(
        &prepared.sync,
        &prepared.loader,
        &prepared.steps,
        None,
        progress,
    );
    pass.reader = state.as_ref();
    pass.execute(
        prepared.warehouse,
        &prepared.model,
        &prepared.source,
        &prepared.limits,
        prepared.cursor_kind,
        prepared.row_hash,
    )
    .await?;
    progress.finish_and_clear();
    Ok(pass.planned)
}

/// What a `diff = "warehouse"` pass reads, and how.
#[derive(Clone, Copy)]
struct Reading<'a> {
    model: &'a config::Model,
    source: &'a config::Source,
    limits: &'a crate::limits::Limits,
    /// Whether keys the model no longer returns are deletions (full models).
    deletions: bool,
    row_hash: pushdown::RowHash,
}

/// One walk through the pipeline. With `writer` it loads and commits; without
/// it, it collects the events it would send.
struct Pass<'a> {
    sync: &'a config::Sync,
    loader: &'a Loader,
    steps: &'a [Step],
    writer: Option<(&'a State, i64)>,
    reader: Option<&'a State>,
    progress: &'a ProgressBar,
    counts: Counts,
    timings: Vec<(&'static str, Duration)>,
    errors: Vec<RowError>,
    planned: Vec<Event>,
    /// The highest cursor value read, for a cursor model.
    cursor: Option<Cursor>,
    /// Whether delivered events are kept for `ebb replay`.
    keep_deliveries: bool,
    /// Where a `diff = "warehouse"` run commits its snapshot.
    snapshots: Option<pushdown::Snapshots>,
}

impl<'a> Pass<'a> {
    fn new(
        sync: &'a config::Sync,
        loader: &'a Loader,
        steps: &'a [Step],
        writer: Option<(&'a State, i64)>,
        progress: &'a ProgressBar,
    ) -> Pass<'a> {
        Pass {
            sync,
            loader,
            steps,
            writer,
            reader: writer.map(|(s, _)| s),
            progress,
            counts: Counts::default(),
            timings: ["extract", "diff", "transform", "load", "commit"]
                .map(|s| (s, Duration::ZERO))
                .to_vec(),
            errors: Vec::new(),
            planned: Vec::new(),
            cursor: None,
            keep_deliveries: false,
            snapshots: None,
        }
    }

    fn timed(&mut self, stage: &'static str, since: Instant) {
        if let Some((_, d)) = self.timings.iter_mut().find(|(s, _)| *s == stage) {
            *d += since.elapsed();
        }
    }

    fn chunk_size(&self) -> usize {
        (self.loader.batch_records * self.loader.max_in_flight).clamp(1000, 10_000)
    }

    async fn execute(
        &mut self,
        warehouse: Warehouse,
        model: &config::Model,
        source: &config::Source,
        limits: &crate::limits::Limits,
        cursor_kind: Option<ParamKind>,
        row_hash: pushdown::RowHash,
    ) -> anyhow::Result<()> {
        let (last_sync_time, stored_cursor) = match self.reader {
            Some(s) => (
                s.last_sync_time(&self.sync.name).await?,
                s.cursor(&self.sync.name).await?,
            ),
            None => Default::default(),
        };
        self.cursor = model
            .cursor
            .as_ref()
            .zip(cursor_kind)
            .map(|(column, kind)| Cursor::new(column, kind, stored_cursor));
        let templates = Templates {
            last_sync_time,
            cursor: match &self.cursor {
                Some(c) => CursorTemplate::Bound(c.template()),
                None => CursorTemplate::Absent,
            },
        };
        let query = extract::bind(model, source.kind, &templates).map_err(|e| anyhow!(e))?;
        let deletions = !extract::is_incremental(model);
        match model.diff {
            DiffIn::Engine => {
                self.diff_in_engine(warehouse, query, model, limits, deletions)
                    .await
            }
            DiffIn::Warehouse => {
                let reading = Reading {
                    model,
                    source,
                    limits,
                    deletions,
                    row_hash,
                };
                self.diff_in_warehouse(warehouse, query, &reading).await
            }
        }
    }

    /// Reads every row, parks it in a [`Spill`] and compares it with the
    /// state store's snapshot, partition by partition.
    async fn diff_in_engine(
        &mut self,
        warehouse: Warehouse,
        query: BoundQuery,
        model: &config::Model,
        limits: &crate::limits::Limits,
        deletions: bool,
    ) -> anyhow::Result<()> {
        let mut spill = Spill::new(diff::MEMORY_BUDGET);
        let mut rows = warehouse.stream(query);
        loop {
            let t = Instant::now();
            let chunk = rows.recv().await;
            self.timed("extract", t);
            let Some(chunk) = chunk else { break };
            let t = Instant::now();
            let chunk = chunk?;
            for row in chunk.rows() {
                if let Some(key) = self.keyed(model, row, limits)? {
                    spill
                        .push(&key, row.json())
                        .context("cannot park extracted rows for the diff")?;
                }
            }
            self.timed("diff", t);
            self.progress
                .set_message(format!("extracted {}", self.counts.extracted));
        }
        drop(rows);

        // A full model compares every partition with its whole range of
        // the snapshot: the next range is read while this one is compared.
        let (reader, sync) = (self.reader, self.sync);
        let mut ranges = futures::stream::iter(0..diff::PARTITIONS)
            .map(|p| async move {
                match reader {
                    Some(s) if deletions => {
                        let (lo, hi) = diff::partition_bounds(p);
                        s.snapshot_range(&sync.name, lo, hi).await.map(Some)
                    }
                    _ => Ok(None),
                }
            })
            .buffered(2);
        let mut changes = Vec::new();
        for p in 0..diff::PARTITIONS {
            let t = Instant::now();
            let range = ranges.next().await.transpose()?.flatten();
            let partition = spill.take(p).context("cannot read back extracted rows")?;
            let extracted = partition
                .rows()
                .context("cannot read back extracted rows")?;
            if extracted.is_empty() && !deletions {
                continue;
            }
            let snapshot = match (range, reader) {
                (Some(range), _) => range,
                // An incremental model returns few rows of a large
                // snapshot: look those up rather than read the range.
                (None, Some(s)) => {
                    let hashes: Vec<u128> = extracted.iter().map(|r| r.key_hash).collect();
                    s.snapshot_entries(&sync.name, &hashes).await?
                }
                (None, None) => Vec::new(),
            };
            let classified = diff::classify(&extracted, &snapshot, deletions)
                .context("cannot read back extracted rows")?;
            // The changes hold copies of what they need: the partition can
            // go before they are delivered.
            drop(extracted);
            drop(partition);
            for d in classified.duplicates {
                self.duplicate(model, d.key, d.rows, d.first);
            }
            changes.extend(classified.changes);
            self.timed("diff", t);
            // A partition of a large model can hold several chunks of
            // changes (every row of it, on a first run): they are handled a
            // chunk at a time too, so memory holds the copies, events and
            // commits of one chunk, whatever the model's size.
            let chunk = self.chunk_size();
            while changes.len() >= chunk {
                self.changes(changes.drain(..chunk).collect(), None).await?;
            }
        }
        self.changes(changes, None).await
    }

    /// Has the warehouse compare the model with the snapshot it keeps in
    /// `_ebb` and reads only what changed (see [`diff::warehouse`]).
    async fn diff_in_warehouse(
        &mut self,
        mut warehouse: Warehouse,
        query: BoundQuery,
        reading: &Reading<'_>,
    ) -> anyhow::Result<()> {
        let Reading {
            model,
            source,
            limits,
            deletions,
            row_hash,
        } = *reading;
        let table = pushdown::table(source);
        if self.writer.is_some() {
            self.snapshots = Some(pushdown::Snapshots::open(source).await?);
        }
        let conn = warehouse
            .postgres()
            .ok_or_else(|| anyhow!("diff = \"warehouse\" needs a Postgres source"))?;
        let exists = self.snapshots.is_some() || pushdown::exists(conn, &table).await?;
        let row_hash = pushdown::ready(conn, row_hash).await?;
        let table = exists.then_some(table.as_str());
        let query = pushdown::diff_query(model, query, &self.sync.name, deletions, table, row_hash);
        let mut rows = warehouse.stream(query);
        let mut changes = Vec::new();
        let mut previous = HashMap::new();
        // Each key returned by several rows: how many, and the first.
        let mut duplicates: BTreeMap<String, (usize, Record)> = BTreeMap::new();
        let bad = |e: String| anyhow!("model `{}`: {e}", model.name);
        loop {
            let t = Instant::now();
            let chunk = rows.recv().await;
            self.timed("extract", t);
            let Some(chunk) = chunk else { break };
            let t = Instant::now();
            let (found, chunk) = pushdown::split(&chunk?).map_err(bad)?;
            for (found, row) in found.into_iter().zip(chunk.rows()) {
                let change = match (found.fingerprint, found.key, found.previous) {
                    // A key of the snapshot that the model no longer returns.
                    (None, Some(key), Some(record)) => {
                        let key_hash = diff::key_hash(&key);
                        previous.insert(key_hash, pushdown::parse_record(&record).map_err(bad)?);
                        Change {
                            key,
                            key_hash,
                            op: Op::Deleted,
                            json: None,
                            fingerprint: 0,
                        }
                    }
                    (None, ..) => continue,
                    (Some(_), Some(key), _) if found.copies > 1 => {
                        duplicates.entry(key).or_insert_with(|| (0, row.record())).0 += 1;
                        continue;
                    }
                    (Some(fingerprint), _, last) => {
                        let Some(key) = self.keyed(model, row, limits)? else {
                            continue;
                        };
                        let key_hash = diff::key_hash(&key);
                        let op = match last {
                            Some(record) => {
                                previous.insert(
                                    key_hash,
                                    pushdown::parse_record(&record).map_err(bad)?,
                                );
                                Op::Updated
                            }
                            None => Op::Added,
                        };
                        Change {
                            key: key.into_owned(),
                            key_hash,
                            op,
                            json: Some(String::from_utf8_lossy(row.json()).into_owned()),
                            fingerprint: pushdown::fingerprint(fingerprint),
                        }
                    }
                };
                changes.push(change);
            }
            self.timed("diff", t);
            self.progress
                .set_message(format!("changed {}", changes.len()));
            if changes.len() >= self.chunk_size() {
                let previous = std::mem::take(&mut previous);
                self.changes(std::mem::take(&mut changes), Some(previous))
                    .await?;
            }
        }
        drop(rows);
        for (key, (rows, first)) in duplicates {
            self.duplicate(model, key, rows, first);
        }
        self.changes(changes, Some(previous)).await?;
        if let Some(snapshots) = &mut self.snapshots {
            snapshots.analyze_if_grown().await;
        }
        Ok(())
    }

    /// Counts a row read, holds it to the limits and moves the cursor; the
    /// row's key, or `None` if the row became a row error.
    fn keyed<'r>(
        &mut self,
        model: &config::Model,
        row: RowRef<'r>,
        limits: &crate::limits::Limits,
    ) -> anyhow::Result<Option<Cow<'r, str>>> {
        self.counts.extracted += 1;
        if self.counts.extracted > limits.records_per_extract {
            bail!(
                "model `{}` returned more than {} records; narrow the query or raise limits.records_per_extract",
                model.name,
                limits.records_per_extract
            );
        }
        if let Some(cursor) = &mut self.cursor {
            cursor
                .observe(row.get(&cursor.column))
                .map_err(|e| anyhow!("model `{}`: {e}", model.name))?;
        }
        match extract::keyed(model, row, limits) {
            Ok(key) => Ok(Some(key)),
            Err(problem) => {
                let key = match problem.key.is_empty() {
                    true => format!("(row {} without a key)", self.counts.extracted),
                    false => problem.key,
                };
                self.row_error(
                    key,
                    Op::Added,
                    problem.message,
                    serde_json::Value::Object(row.record()),
                    None,
                );
                Ok(None)
            }
        }
    }

    /// The row error of a key the model returned more than once.
    fn duplicate(&mut self, model: &config::Model, key: String, rows: usize, first: Record) {
        let message = format!(
            "model `{}`: primary key `{}` = {key} is returned by {rows} rows; none of them is synced until the key is unique",
            model.name, model.primary_key
        );
        self.row_error(
            key,
            Op::Added,
            message,
            serde_json::Value::Object(first),
            None,
        );
    }

    fn row_error(
        &mut self,
        key: String,
        op: Op,
        message: String,
        payload: serde_json::Value,
        if_dropped: Option<Snapshot>,
    ) {
        self.counts.failed += 1;
        self.errors.push(RowError {
            key,
            op,
            message,
            payload,
            if_dropped,
        });
    }

    /// Transforms, maps, loads and commits one chunk of changes. `previous`
    /// holds the records last delivered for them when the diff read those
    /// itself; otherwise they are looked up in the state store.
    async fn changes(
        &mut self,
        changes: Vec<Change>,
        previous: Option<HashMap<u128, Record>>,
    ) -> anyhow::Result<()> {
        let t = Instant::now();
        let sent = |c: &&Change| self.sync.on.contains(&c.op);
        // Only changes that will be sent need the record delivered before.
        let mut previous = match (previous, self.reader) {
            (Some(previous), _) => previous,
            (None, Some(state)) => {
                let hashes: Vec<u128> = changes
                    .iter()
                    .filter(sent)
                    .filter(|c| c.op != Op::Added)
                    .map(|c| c.key_hash)
                    .collect();
                state.records(&self.sync.name, &hashes).await?
            }
            (None, None) => HashMap::new(),
        };
        let mut commits = Vec::new();
        let mut traced = Vec::new();
        for (origin, c) in changes.iter().enumerate() {
            match c.op {
                Op::Added => self.counts.added += 1,
                Op::Updated => self.counts.updated += 1,
                Op::Deleted => self.counts.deleted += 1,
            }
            if sent(&c) {
                // A refused change's row error shows the event as the chain
                // received it, previous record included; only transforms
                // refuse, so without them the event takes that record.
                let prev = if self.steps.is_empty() {
                    previous.remove(&c.key_hash)
                } else {
                    previous.get(&c.key_hash).cloned()
                };
                traced.push((origin, event_of(c, prev)));
            } else {
                self.counts.filtered += 1;
                commits.push(commit_of(c));
            }
        }
        let origins: Vec<usize> = traced.iter().map(|(o, _)| *o).collect();
        self.timed("diff", t);

        let t = Instant::now();
        let transformed = transform::run_chain(self.steps, traced)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        self.timed("transform", t);
        let mut events = transformed.events;
        let refused: HashMap<usize, String> = transformed.failed.into_iter().collect();
        if let Some(mapping) = &self.sync.mapping {
            for (_, e) in &mut events {
                e.fields = mapping.apply(&e.fields);
                e.previous = e.previous.as_ref().map(|p| mapping.apply(p));
            }
        }
        let sending: HashSet<usize> = events.iter().map(|(o, _)| *o).collect();
        for origin in origins {
            let change = &changes[origin];
            if let Some(message) = refused.get(&origin) {
                // The payload is the event as the chain received it.
                let prev = previous.remove(&change.key_hash);
                let payload = serde_json::to_value(event_of(change, prev))?;
                self.row_error(
                    change.key.clone(),
                    change.op,
                    message.clone(),
                    payload,
                    snapshot_of(change),
                );
            } else if !sending.contains(&origin) {
                self.counts.dropped += 1;
                commits.push(commit_of(change));
            }
        }

        let Some((state, run_id)) = self.writer else {
            self.planned.extend(events.into_iter().map(|(_, e)| e));
            return Ok(());
        };

        let (origins, batch): (Vec<usize>, Vec<Event>) = events.into_iter().unzip();
        self.counts.sent += batch.len() as u64;
        // A change is committed once every event made from it (a transform
        // may make several) is acknowledged, and owed if any of them failed.
        let mut unanswered: HashMap<usize, usize> = HashMap::new();
        for origin in &origins {
            *unanswered.entry(*origin).or_default() += 1;
        }
        let mut failures: HashMap<usize, (String, usize)> = HashMap::new();
        let mut delivered: Vec<String> = Vec::new();
        // What became of each op's events, for the metrics.
        let mut outcomes: HashMap<(Op, &'static str), u64> = HashMap::new();

        // Each batch is committed as soon as the destination is done with
        // it (with whatever else finished meanwhile), while the others are
        // still in flight: a crash repeats only batches not yet committed.
        let t = Instant::now();
        let (done_tx, mut done_rx) = futures::channel::mpsc::unbounded();
        let (loader, events) = (self.loader, &batch);
        let deliver = async move {
            let mut delivered = loader.deliver(events);
            while let Some(batch) = delivered.next().await {
                let _ = done_tx.unbounded_send(batch);
            }
            Ok(())
        };
        let commit = async {
            while let Some(first) = done_rx.next().await {
                let mut finished = vec![first];
                while let Ok(more) = done_rx.try_recv() {
                    finished.push(more);
                }
                for done in finished {
                    self.counts.retried += done.retried;
                    for (i, delivery) in done.range.zip(done.deliveries) {
                        let origin = origins[i];
                        *outcomes
                            .entry((changes[origin].op, delivery.outcome()))
                            .or_default() += 1;
                        let c = &mut self.counts;
                        let failure = delivery.tally(&mut c.ok, &mut c.rejected, &mut c.failed);
                        if failure.is_none() && self.keep_deliveries {
                            delivered.push(serde_json::to_string(&batch[i])?);
                        }
                        if let Some(message) = failure {
                            failures.entry(origin).or_insert((message, i));
                        }
                        let left = unanswered.entry(origin).or_default();
                        *left = left.saturating_sub(1);
                        if *left > 0 {
                            continue;
                        }
                        let change = &changes[origin];
                        match failures.remove(&origin) {
                            None => commits.push(commit_of(change)),
                            // Errors are keyed by the change's key: a
                            // transform may rename ids.
                            Some((message, i)) => self.errors.push(RowError {
                                key: change.key.clone(),
                                op: change.op,
                                message,
                                payload: serde_json::to_value(&batch[i])?,
                                if_dropped: snapshot_of(change),
                            }),
                        }
                    }
                }
                self.commit(state, run_id, &mut commits, &mut delivered)
                    .await?;
            }
            anyhow::Ok(())
        };
        let delivering = futures::future::try_join(deliver, commit).await;
        crate::metrics::delivered(&self.sync.name, &outcomes);
        delivering?;
        let answered: u64 = outcomes.values().sum();
        if answered < batch.len() as u64 {
            // Halted: the rest stays uncommitted for the next run.
            bail!("stopped before every change was sent");
        }
        self.timed("load", t);
        // What was decided without the destination, when nothing was sent.
        if !commits.is_empty() || !self.errors.is_empty() {
            self.commit(state, run_id, &mut commits, &mut Vec::new())
                .await?;
        }
        Ok(())
    }

    /// Commits these changes, the events delivered with them and the row
    /// errors gathered so far.
    async fn commit(
        &mut self,
        state: &State,
        run_id: i64,
        commits: &mut Vec<Commit>,
        delivered: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let t = Instant::now();
        // The warehouse keeps this sync's snapshot: there first, then the
        // state store only learns that the keys are no longer owed.
        if let Some(snapshots) = &mut self.snapshots {
            snapshots
                .commit(&self.sync.name, commits)
                .await
                .with_context(|| {
                    format!(
                        "cannot commit acknowledged changes to {} in the warehouse",
                        snapshots.table()
                    )
                })?;
            for c in commits.iter_mut() {
                let key = match c {
                    Commit::Upsert { key, .. }
                    | Commit::Delete { key, .. }
                    | Commit::Settle { key } => std::mem::take(key),
                };
                *c = Commit::Settle { key };
            }
        }
        let errors = std::mem::take(&mut self.errors);
        let committed = state
            .commit(&self.sync.name, run_id, commits, &errors, delivered)
            .await
            .context("cannot commit acknowledged changes to the state store")?;
        if !committed {
            bail!(taken_over_message(run_id));
        }
        commits.clear();
        delivered.clear();
        self.timed("commit", t);
        self.progress.set_message(format!(
            "extracted {}, sent {}",
            self.counts.extracted, self.counts.sent
        ));
        Ok(())
    }
}

/// The event a change becomes before transforms, given the record last
/// delivered for its key: a deletion carries that record as its fields.
fn event_of(c: &Change, prev: Option<crate::event::Record>) -> Event {
    Event {
        op: c.op,
        id: c.key.clone(),
        fields: c.record().or_else(|| prev.clone()).unwrap_or_default(),
        previous: prev,
    }
}

/// What the snapshot takes if the operator drops this change's row error.
fn snapshot_of(c: &Change) -> Option<Snapshot> {
    c.json.as_ref().map(|json| Snapshot {
        fingerprint: c.fingerprint,
        json: json.clone(),
    })
}

fn commit_of(c: &Change) -> Commit {
    match &c.json {
        Some(json) => Commit::Upsert {
            key: c.key.clone(),
            key_hash: c.key_hash,
            fingerprint: c.fingerprint,
            json: json.clone(),
        },
        None => Commit::Delete {
            key: c.key.clone(),
            key_hash: c.key_hash,
        },
    }
}
