//! What the WebAssembly sandbox costs a transform, and the fixed costs of
//! a plugin call.
//!
//! The chain `unpack-pairs` → `compare-truths` runs over realistic change
//! events three ways, interleaved in one process so that machine noise hits
//! them alike:
//! - `wasm`: the built-in components through [`Engine`] and the pipeline's
//!   own [`run_chain`];
//! - `native+json`: the same plugin source compiled natively and called
//!   through the SDK's export glue, each event encoded to and decoded from
//!   JSON bytes with the host's own conversions, as at the component
//!   boundary;
//! - `native`: the same source through the SDK's `Transform` trait, events
//!   passed as values (`unpack-pairs` works on records as JSON text, so
//!   its `apply` writes and parses them around that).
//!
//! So `wasm / native+json` is the price of the sandbox itself (compiled
//! guest code, copies into and out of linear memory, a fresh instance per
//! batch) and `native+json / native` the price of JSON at the boundary.
//!
//! A fourth way, `js`, runs the same logic as JavaScript: the quickstart's
//! `transforms/rebuild.js` (the worked example of docs/transforms.md) in
//! the built-in `ebb:js`, which must produce exactly the chain's events.
//!
//! It also times a minimal call (fresh store and instance, one empty event)
//! and loading a plugin into an [`Engine`] with an empty and with a warm
//! compile cache.
//!
//! `cargo bench -p ebb --bench plugins --features bench-native [-- --quick]`;
//! `--quick` is a smoke run of a few seconds. Results are in BENCHMARKS.md.

// The plugins' own source, compiled natively. Benches build with
// `cfg(test)`, so their unit tests come along; they run in their own crates.
#[allow(dead_code, unused_imports)]
#[path = "../../plugins/transforms/compare-truths/src/lib.rs"]
mod compare_truths;
#[allow(dead_code, unused_imports)]
#[path = "../../plugins/transforms/unpack-pairs/src/lib.rs"]
mod unpack_pairs;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ebb::event::{Event, Fields, Op, Record};
use ebb::plugin::bindings::{WitEvent, WitOp};
use ebb::plugin::{Engine, EngineOptions, Grants, Limits, PluginLocation, PluginRef, convert, js};
use ebb::transform::{Caps, Step, run_chain};
use ebb_sdk::Transform;
use ebb_sdk::bindings::destination::ebb::plugin::types as sdk_wit;
use ebb_sdk::bindings::transform::exports::ebb::plugin::transform::{Guest, Item as SdkWitItem};
use ebb_sdk::transform::Export;
use serde::Deserialize;
use serde_json::{Value, json};

const BATCH_SIZES: [usize; 3] = [1, 100, 1000];
/// Distinct events the batches are cut from; even ones change a compared
/// field, odd ones only `updated_at`, so `compare-truths` drops half.
const POOL: usize = 1000;

struct Settings {
    /// Measured rounds per batch size, after one warm-up round.
    rounds: usize,
    /// Events each way runs per round.
    events_per_round: usize,
    /// Minimal calls timed for the per-call cost.
    calls: usize,
    /// Cold and warm loads timed per plugin.
    loads: usize,
}

impl Settings {
    fn from_args() -> anyhow::Result<Settings> {
        let mut quick = false;
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => quick = true,
                // `cargo bench` passes this to every bench binary.
                "--bench" => {}
                other => bail!("unknown argument `{other}`; the only option is --quick"),
            }
        }
        Ok(if quick {
            Settings {
                rounds: 1,
                events_per_round: 1_000,
                calls: 200,
                loads: 1,
            }
        } else {
            Settings {
                rounds: 7,
                events_per_round: 20_000,
                calls: 5_000,
                loads: 5,
            }
        })
    }
}

fn main() -> ExitCode {
    let result = Settings::from_args().and_then(|settings| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(bench(&settings))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(settings: &Settings) -> anyhow::Result<()> {
    let pool: Vec<Event> = (0..POOL).map(change).collect();
    let mean_size = pool
        .iter()
        .map(|e| serde_json::to_vec(e).map(|bytes| bytes.len()))
        .sum::<Result<usize, _>>()?
        / POOL;
    println!(
        "{} cores; events of {mean_size} bytes (JSON envelope), half dropped by compare-truths",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let engine = Engine::new(EngineOptions {
        builtins: ebb::plugin::builtin::ALL,
        ..EngineOptions::default()
    })
    .context("cannot start the engine")?;
    let ways = [
        Way::Wasm("wasm", wasm_chain(&engine).await?),
        Way::NativeJson(native_chain()),
        Way::Native(native_chain()),
        Way::Wasm("js", vec![js_step(&engine).await?]),
    ];
    check_agreement(&ways, &pool).await?;
    throughput(settings, &ways, &pool).await?;
    call_cost(settings, &engine).await?;
    load_times(settings).await
}

/// One change event: a user row whose `attributes` column holds key/value
/// pairs as text, with the version Ebb delivered last.
fn change(i: usize) -> Event {
    let changed = i.is_multiple_of(2);
    let seats = 1 + i % 9;
    let row = |plan: &str, updated_at: u64| {
        record(json!({
            "user_id": 1000 + i,
            "email": format!("u{i}@acme.io"),
            "plan": plan,
            "attributes": format!(r#"[["country","UK"],["seats","{seats}"]]"#),
            "updated_at": updated_at,
        }))
    };
    Event {
        op: Op::Updated,
        id: (1000 + i).to_string(),
        fields: row(if changed { "business" } else { "pro" }, 1_741_944_413).into(),
        previous: Some(row("pro", 1_740_816_000).into()),
        delivery_id: format!("{:032x}", i),
    }
}

fn record(value: Value) -> Record {
    match value {
        Value::Object(map) => map,
        _ => Record::new(),
    }
}

fn unpack_config() -> Value {
    json!({"field": "attributes"})
}

fn compare_config() -> Value {
    json!({"fields": ["email", "plan", "attributes"]})
}

/// How the chain is run.
enum Way {
    /// Components, named.
    Wasm(&'static str, Vec<Step>),
    NativeJson(Vec<NativeStep>),
    Native(Vec<NativeStep>),
}

impl Way {
    fn name(&self) -> &'static str {
        match self {
            Way::Wasm(name, _) => name,
            Way::NativeJson(_) => "native+json",
            Way::Native(_) => "native",
        }
    }

    /// Runs the chain over one batch; returns the events that come out.
    async fn run(&self, batch: Vec<Event>) -> anyhow::Result<Vec<Event>> {
        match self {
            Way::Wasm(_, steps) => {
                let traced = batch.into_iter().enumerate().collect();
                let out = run_chain(steps, traced).await?;
                ensure!(out.failed.is_empty(), "transform failed: {:?}", out.failed);
                Ok(out.events.into_iter().map(|(_, event)| event).collect())
            }
            Way::NativeJson(steps) => steps.iter().try_fold(batch, |events, step| {
                let wit = events
                    .iter()
                    .map(|event| to_sdk_wit(convert::event_to_wit(event)))
                    .collect();
                let items = (step.export)(step.config.to_string(), wit);
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        SdkWitItem::Keep(event) => out.push(from_sdk_wit(event)?),
                        SdkWitItem::Drop => {}
                        SdkWitItem::Split(events) => {
                            for event in events {
                                out.push(from_sdk_wit(event)?);
                            }
                        }
                        SdkWitItem::Fail(e) => bail!("transform failed: {}", e.message),
                    }
                }
                Ok(out)
            }),
            Way::Native(steps) => {
                let batch = batch.into_iter().map(to_sdk).collect();
                let out = steps.iter().try_fold(batch, |events, step| {
                    let items = (step.direct)(&step.config, events)?;
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            ebb_sdk::Item::Keep(event) => out.push(event),
                            ebb_sdk::Item::Drop => {}
                            ebb_sdk::Item::Split(events) => out.extend(events),
                            ebb_sdk::Item::Fail(e) => bail!("transform failed: {}", e.message),
                        }
                    }
                    Ok(out)
                })?;
                Ok(out.into_iter().map(from_sdk).collect())
            }
        }
    }
}

async fn wasm_chain(engine: &Engine) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    for (name, config) in [
        ("unpack-pairs", unpack_config()),
        ("compare-truths", compare_config()),
    ] {
        let label = format!("transform `{name}`");
        let transform = engine
            .transform(&builtin(&label, name), Limits::default())
            .await?;
        steps.push(Step {
            label,
            transform,
            config,
            caps: Caps::from(&ebb::limits::Limits::default()),
        });
    }
    Ok(steps)
}

/// The quickstart's JavaScript transformation in `ebb:js`.
async fn js_step(engine: &Engine) -> anyhow::Result<Step> {
    let source = |shown: &str, text: &str| js::Source {
        shown: shown.into(),
        text: text.into(),
    };
    let main = source(
        "transforms/rebuild.js",
        include_str!("../../examples/quickstart/transforms/rebuild.js"),
    );
    let utils = source(
        "transforms/warehouseActionsUtils.js",
        include_str!("../../examples/quickstart/transforms/warehouseActionsUtils.js"),
    );
    let context = js::Context {
        sync: "bench",
        destination: "bench",
        memory_bytes: Limits::default().memory_bytes,
    };
    let label = "transform `rebuild.js`".to_owned();
    Ok(Step {
        transform: engine
            .transform(&builtin(&label, js::BUILTIN), Limits::default())
            .await?,
        config: js::config(
            &main,
            &[("warehouseActionsUtils".into(), utils)],
            js::Shape::Ebb,
            &context,
        ),
        label,
        caps: Caps::from(&ebb::limits::Limits::default()),
    })
}

fn builtin(label: &str, name: &str) -> PluginRef {
    PluginRef {
        label: label.to_string(),
        location: PluginLocation::Builtin(name.to_string()),
        sha256: None,
    }
}

/// A plugin's code linked into this binary, with both ways to call it.
struct NativeStep {
    config: Value,
    /// Through the `Transform` trait, on decoded events.
    direct: fn(&Value, Vec<ebb_sdk::Event>) -> anyhow::Result<Vec<ebb_sdk::Item>>,
    /// Through the SDK's glue for the component export, on JSON bytes.
    export: fn(String, Vec<sdk_wit::Event>) -> Vec<SdkWitItem>,
}

fn native_chain() -> Vec<NativeStep> {
    vec![
        native_step::<unpack_pairs::UnpackPairs>(unpack_config()),
        native_step::<compare_truths::CompareTruths>(compare_config()),
    ]
}

fn native_step<T: Transform>(config: Value) -> NativeStep {
    NativeStep {
        config,
        direct: apply_direct::<T>,
        export: <Export<T> as Guest>::apply,
    }
}

/// Parses the config on every batch, as a component does on every call.
fn apply_direct<T: Transform>(
    config: &Value,
    batch: Vec<ebb_sdk::Event>,
) -> anyhow::Result<Vec<ebb_sdk::Item>> {
    let config = T::Config::deserialize(config).context("invalid config")?;
    Ok(T::apply_batch(&config, batch))
}

fn to_sdk(event: Event) -> ebb_sdk::Event {
    ebb_sdk::Event {
        op: match event.op {
            Op::Added => ebb_sdk::Op::Added,
            Op::Updated => ebb_sdk::Op::Updated,
            Op::Deleted => ebb_sdk::Op::Deleted,
        },
        id: event.id,
        fields: event.fields.record(),
        previous: event.previous.map(|p| p.record()),
        delivery_id: event.delivery_id,
    }
}

fn from_sdk(event: ebb_sdk::Event) -> Event {
    Event {
        op: match event.op {
            ebb_sdk::Op::Added => Op::Added,
            ebb_sdk::Op::Updated => Op::Updated,
            ebb_sdk::Op::Deleted => Op::Deleted,
        },
        id: event.id,
        fields: event.fields.into(),
        previous: event.previous.map(Into::into),
        delivery_id: event.delivery_id,
    }
}

/// The host's WIT event as the guest's bindings spell it (same layout).
fn to_sdk_wit(event: WitEvent) -> sdk_wit::Event {
    sdk_wit::Event {
        op: match event.op {
            WitOp::Added => sdk_wit::Op::Added,
            WitOp::Updated => sdk_wit::Op::Updated,
            WitOp::Deleted => sdk_wit::Op::Deleted,
        },
        id: event.id,
        fields: event.fields,
        previous: event.previous,
        delivery_id: event.delivery_id,
    }
}

fn from_sdk_wit(event: sdk_wit::Event) -> anyhow::Result<Event> {
    convert::event_from_wit(WitEvent {
        op: match event.op {
            sdk_wit::Op::Added => WitOp::Added,
            sdk_wit::Op::Updated => WitOp::Updated,
            sdk_wit::Op::Deleted => WitOp::Deleted,
        },
        id: event.id,
        fields: event.fields,
        previous: event.previous,
        delivery_id: event.delivery_id,
    })
    .map_err(anyhow::Error::msg)
}

/// Makes sure the three ways do the same work: same events out, half kept.
async fn check_agreement(ways: &[Way], pool: &[Event]) -> anyhow::Result<()> {
    let mut expected: Option<Vec<Event>> = None;
    for way in ways {
        let out = way.run(pool.to_vec()).await?;
        ensure!(
            out.len() == pool.len() / 2,
            "{}: {} of {} events came out, expected half",
            way.name(),
            out.len(),
            pool.len()
        );
        match &expected {
            None => expected = Some(out),
            Some(expected) => ensure!(
                &out == expected,
                "{} and {} produce different events",
                way.name(),
                ways[0].name()
            ),
        }
    }
    Ok(())
}

async fn throughput(settings: &Settings, ways: &[Way], pool: &[Event]) -> anyhow::Result<()> {
    println!(
        "\nunpack-pairs -> compare-truths (js: rebuild.js): events/s, median over {} round(s); ratios are time per event, median (range) over the rounds",
        settings.rounds
    );
    println!(
        "{:>6} {:>9} {:>12} {:>9} {:>9} {:>20} {:>20} {:>20}",
        "batch",
        "wasm",
        "native+json",
        "native",
        "js",
        "wasm/native",
        "wasm/native+json",
        "js/wasm"
    );
    for batch in BATCH_SIZES {
        // secs[way][round]
        let mut secs = vec![Vec::new(); ways.len()];
        for round in 0..=settings.rounds {
            for (way, times) in ways.iter().zip(&mut secs) {
                let elapsed = time_chain(way, pool, batch, settings.events_per_round).await?;
                if round > 0 {
                    times.push(elapsed.as_secs_f64());
                }
            }
        }
        let rate = |times: &[f64]| settings.events_per_round as f64 / median(times);
        let ratio = |this: &[f64], other: &[f64]| {
            let ratios: Vec<f64> = this.iter().zip(other).map(|(w, o)| w / o).collect();
            let (low, high) = range(&ratios);
            format!("{:.2}x ({low:.2}-{high:.2})", median(&ratios))
        };
        println!(
            "{batch:>6} {:>9.0} {:>12.0} {:>9.0} {:>9.0} {:>20} {:>20} {:>20}",
            rate(&secs[0]),
            rate(&secs[1]),
            rate(&secs[2]),
            rate(&secs[3]),
            ratio(&secs[0], &secs[2]),
            ratio(&secs[0], &secs[1]),
            ratio(&secs[3], &secs[0]),
        );
    }
    Ok(())
}

/// Time spent in the chain for `events` events cut into batches; copying
/// the input and dropping the output are left out.
async fn time_chain(
    way: &Way,
    pool: &[Event],
    batch: usize,
    events: usize,
) -> anyhow::Result<Duration> {
    let mut spent = Duration::ZERO;
    let mut next = 0;
    while next < events {
        let input: Vec<Event> = (next..next + batch)
            .map(|i| pool[i % pool.len()].clone())
            .collect();
        next += batch;
        let started = Instant::now();
        let out = way.run(input).await?;
        spent += started.elapsed();
        drop(out);
    }
    Ok(spent)
}

/// The fixed cost of a call: fresh store and instance, one event with no
/// fields. (An empty batch never reaches the plugin.)
async fn call_cost(settings: &Settings, engine: &Engine) -> anyhow::Result<()> {
    let transform = engine
        .transform(
            &builtin("transform `unpack-pairs`", "unpack-pairs"),
            Limits::default(),
        )
        .await?;
    let config = json!({});
    let batch = [Event {
        op: Op::Added,
        id: "1".into(),
        fields: Fields::empty(),
        previous: None,
        delivery_id: String::new(),
    }];
    for _ in 0..settings.calls / 10 {
        transform.apply(&config, &batch).await?;
    }
    let mut times = Vec::with_capacity(settings.calls);
    for _ in 0..settings.calls {
        let started = Instant::now();
        transform.apply(&config, &batch).await?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize] * 1e6;
    println!(
        "\nminimal call (unpack-pairs, 1 empty event), {} calls: median {:.1} us, p10 {:.1} us, p90 {:.1} us",
        settings.calls,
        at(0.5),
        at(0.1),
        at(0.9)
    );
    Ok(())
}

/// Loading a plugin with an empty cache folder (compile and store) and
/// then, in a second engine, from the stored artifact.
async fn load_times(settings: &Settings) -> anyhow::Result<()> {
    println!(
        "\nplugin load into a new engine, median of {} (ms): cold = empty cache_dir, cached = second engine, same dir",
        settings.loads
    );
    for name in ["unpack-pairs", "http", js::BUILTIN] {
        let mut cold = Vec::new();
        let mut cached = Vec::new();
        for _ in 0..settings.loads {
            let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
            for times in [&mut cold, &mut cached] {
                let engine = Engine::new(EngineOptions {
                    cache_dir: Some(dir.path().to_path_buf()),
                    builtins: ebb::plugin::builtin::ALL,
                    ..EngineOptions::default()
                })?;
                times.push(time_load(&engine, name).await?.as_secs_f64() * 1e3);
            }
        }
        let (cold_low, cold_high) = range(&cold);
        let (cached_low, cached_high) = range(&cached);
        println!(
            "{name:>14}: cold {:.1} ({cold_low:.1}-{cold_high:.1}), cached {:.2} ({cached_low:.2}-{cached_high:.2})",
            median(&cold),
            median(&cached)
        );
    }
    Ok(())
}

/// A transform is loaded as one; a destination also answers its spec.
async fn time_load(engine: &Engine, name: &str) -> anyhow::Result<Duration> {
    let plugin = builtin(&format!("plugin `{name}`"), name);
    let started = Instant::now();
    if name == "http" {
        engine.destination(&plugin, Grants::default()).await?;
    } else {
        engine.transform(&plugin, Limits::default()).await?;
    }
    Ok(started.elapsed())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &v| {
            (low.min(v), high.max(v))
        })
}
