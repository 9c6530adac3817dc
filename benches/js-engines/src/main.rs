//! Compares two JavaScript engines, both built natively from Rust (no
//! WebAssembly), on the quickstart's transformation
//! (`examples/quickstart/transforms/rebuild.js` and its library
//! `warehouseActionsUtils.js`): Boa (`boa_engine`, pure Rust) and QuickJS
//! (`rquickjs`). It records why Ebb runs its JavaScript transforms on QuickJS.
//!
//! Each engine compiles one script once: the library and `rebuild.js` with
//! the `import` line and `export` keywords stripped, plus a driver whose
//! `run(batchJson)` parses a batch of 1,000 events, calls `transformEvent` on
//! each, and returns the results as JSON text. A round is one call of `run`,
//! from a Rust string in to a Rust string out. After one warm-up round, the
//! median over the rounds is reported as events/s; the same is done for
//! `JSON.stringify(JSON.parse(batchJson))` alone, reported as ms per 1,000
//! events. Both engines must return the same results, with half the events
//! (only `updated_at` changed) dropped as `null`.
//!
//! Run from the repository's root (`--rounds N`, default 20; `--quick` = 2):
//!
//! ```sh
//! CARGO_TARGET_DIR=target/js-engines \
//!   cargo run --release --manifest-path benches/js-engines/Cargo.toml
//! ```

use std::time::{Duration, Instant};

use rquickjs::CatchResultExt;

const EVENTS: usize = 1000;

const DRIVER: &str = r#"
function log() {}
function run(batchJson) {
  const results = JSON.parse(batchJson).map((event) =>
    transformEvent(event, (e) => ({ key: e.id })) ?? null);
  return JSON.stringify(results);
}
function roundTrip(batchJson) {
  return JSON.stringify(JSON.parse(batchJson));
}
"#;

/// Calls a global function of the compiled script with one string argument.
type Call = Box<dyn FnMut(&str, &str) -> Result<String, String>>;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = match args.iter().position(|a| a == "--rounds") {
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .ok_or("--rounds N")?,
        None if args.iter().any(|a| a == "--quick") => 2,
        None => 20,
    };
    let script = script()?;
    let batch = batch();
    println!("{EVENTS} events per round, {rounds} rounds (median), one warm-up round");

    let mut results = Vec::new();
    let mut speeds = Vec::new();
    for (name, mut call) in [("Boa", boa(&script)?), ("QuickJS", quickjs(&script)?)] {
        let (output, transform) = time(rounds, || call("run", &batch))?;
        let (_, json) = time(rounds, || call("roundTrip", &batch))?;
        let events_per_s = EVENTS as f64 / transform.as_secs_f64();
        let json_ms = json.as_secs_f64() * 1e3 * 1000.0 / EVENTS as f64;
        println!(
            "{name:<8} transform {events_per_s:>9.0} events/s   JSON only {json_ms:>7.2} ms / 1,000 events"
        );
        results
            .push(serde_json::from_str::<serde_json::Value>(&output).map_err(|e| e.to_string())?);
        speeds.push((events_per_s, json_ms));
    }

    if results[0] != results[1] {
        return Err("Boa and QuickJS returned different results".into());
    }
    let dropped = results[0]
        .as_array()
        .map(|r| r.iter().filter(|v| v.is_null()).count());
    if dropped != Some(EVENTS / 2) {
        return Err(format!(
            "expected {} of {EVENTS} dropped, got {dropped:?}",
            EVENTS / 2
        ));
    }
    println!(
        "QuickJS/Boa: {:.2}x the events/s, {:.2}x the JSON-only time",
        speeds[1].0 / speeds[0].0,
        speeds[1].1 / speeds[0].1
    );
    Ok(())
}

/// The library and the transformation as one plain script, plus the driver.
fn script() -> Result<String, String> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/quickstart/transforms"
    );
    let mut script = String::new();
    for file in ["warehouseActionsUtils.js", "rebuild.js"] {
        let source =
            std::fs::read_to_string(format!("{dir}/{file}")).map_err(|e| format!("{file}: {e}"))?;
        for line in source.lines() {
            if line.starts_with("import ") && line.ends_with(r#"from "warehouseActionsUtils";"#) {
                continue;
            }
            script.push_str(line.strip_prefix("export ").unwrap_or(line));
            script.push('\n');
        }
    }
    Ok(script + DRIVER)
}

/// 1,000 updates; for odd `i` only `updated_at` changed, so they are dropped.
fn batch() -> String {
    let fields = |i: usize, plan: &str, updated_at: u64| {
        let (user_id, seats) = (1000 + i, 1 + i % 9);
        format!(
            r#"{{"user_id":{user_id},"email":"u{i}@acme.io","plan":"{plan}","attributes":"[[\"country\",\"UK\"],[\"seats\",\"{seats}\"]]","updated_at":{updated_at}}}"#
        )
    };
    let events: Vec<String> = (0..EVENTS)
        .map(|i| {
            let plan = if i % 2 == 0 { "business" } else { "pro" };
            format!(
                r#"{{"op":"updated","id":"{}","fields":{},"previous":{},"delivery_id":"{i:032x}"}}"#,
                1000 + i,
                fields(i, plan, 1741944413),
                fields(i, "pro", 1740816000),
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

/// One warm-up round, then the median of `rounds` timed rounds.
fn time(
    rounds: usize,
    mut round: impl FnMut() -> Result<String, String>,
) -> Result<(String, Duration), String> {
    let output = round()?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        round()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok((output, times[times.len() / 2]))
}

fn boa(script: &str) -> Result<Call, String> {
    use boa_engine::{Context, JsString, JsValue, Source};
    let mut context = Context::default();
    context
        .eval(Source::from_bytes(script))
        .map_err(|e| e.to_string())?;
    Ok(Box::new(move |function, argument| {
        let context = &mut context;
        let global = context.global_object();
        let function = global
            .get(JsString::from(function), context)
            .map_err(|e| e.to_string())?;
        let function = function.as_callable().ok_or("not a function")?;
        let argument = JsValue::from(JsString::from(argument));
        let output = function.call(&JsValue::undefined(), &[argument], context);
        let output = output
            .and_then(|v| v.to_string(context))
            .map_err(|e| e.to_string())?;
        Ok(output.to_std_string_escaped())
    }))
}

fn quickjs(script: &str) -> Result<Call, String> {
    use rquickjs::{Context, Function, Runtime};
    let runtime = Runtime::new().map_err(|e| e.to_string())?;
    let context = Context::full(&runtime).map_err(|e| e.to_string())?;
    context.with(|ctx| {
        ctx.eval::<(), _>(script)
            .catch(&ctx)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    Ok(Box::new(move |function, argument| {
        context.with(|ctx| {
            let function: Function = ctx
                .globals()
                .get(function)
                .catch(&ctx)
                .map_err(|e| e.to_string())?;
            function
                .call((argument,))
                .catch(&ctx)
                .map_err(|e| e.to_string())
        })
    }))
}
