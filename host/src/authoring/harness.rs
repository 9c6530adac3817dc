//! `ebb plugin test`: runs a built plugin on events from a file the way a
//! sync would, and shows what it did. A destination delivers through the
//! same batching and retry loop a run uses, its requests going to the
//! [mock](super::mock) and printed with secrets hidden; a transform's
//! verdict on each event is printed. The exit code says whether every event
//! was accepted, so an author's CI can run it.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::mock::{Mock, Script};
use super::problem::Problem;
use super::report::{Format, file_ref, print_json};
use crate::config::Retry;
use crate::delivery_id::{self, ChangeOf, DeliveryIds};
use crate::diff::fingerprint_of;
use crate::event::Event;
use crate::load::{Delivery, Loader};
use crate::plugin::{Destination, Engine, Exchange, Grants, Item, Masker, js};

/// What `ebb plugin test` was asked to do.
pub struct Test {
    pub file: PathBuf,
    /// `NAME=FILE` libraries of a JavaScript transform.
    pub libraries: Vec<String>,
    /// The event shape of a JavaScript transform.
    pub shape: String,
    pub config: Option<PathBuf>,
    pub events: PathBuf,
    pub respond: Option<PathBuf>,
    pub action: Option<String>,
    pub allow_hosts: Vec<String>,
    pub max_attempts: u32,
    pub format: Format,
}

/// What became of one event.
#[derive(Serialize)]
struct Verdict {
    id: String,
    op: String,
    /// `ok`, `rejected` or `failed` for a destination; `kept`, `dropped`,
    /// `split` or `failed` for a transform.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// What a transform made of it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    events: Vec<Event>,
}

#[derive(Serialize)]
struct Report {
    plugin: String,
    world: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    requests: Vec<Exchange>,
    events: Vec<Verdict>,
    accepted: bool,
}

/// Runs the test; `Ok(false)` when some event was not accepted.
pub async fn run(engine: &Engine, test: Test) -> Result<bool, Problem> {
    let config = match &test.config {
        Some(path) => read_config(path)?,
        None => Value::Object(Default::default()),
    };
    let events = read_events(&test.events)?;
    let (plugin, config) = match test.file.extension().and_then(|e| e.to_str()) {
        Some("js" | "mjs") => (
            js::plugin_ref(test.file.display().to_string()),
            javascript(&test)?,
        ),
        _ if !test.libraries.is_empty() || test.shape != js::Shape::default().name() => {
            return Err(Problem::new(
                "--library and --shape are for a JavaScript transform (FILE.js)",
            ));
        }
        _ => (file_ref(&test.file), config),
    };
    let world = engine.inspect(&plugin).await?.shape.world;
    let report = match world {
        Some("transform") => {
            let transform = engine.transform(&plugin, Default::default()).await?;
            let items = transform.apply(&config, &events).await?;
            let verdicts: Vec<Verdict> = events.iter().zip(items).map(transformed).collect();
            Report {
                plugin: test.file.display().to_string(),
                world: "transform",
                action: None,
                requests: Vec::new(),
                accepted: verdicts.iter().all(|v| v.outcome != "failed"),
                events: verdicts,
            }
        }
        _ => deliver(engine, &test, config, &events).await?,
    };
    let accepted = report.accepted;
    match test.format {
        Format::Json => print_json(&report)?,
        Format::Table => print(&report),
    }
    Ok(accepted)
}

async fn deliver(
    engine: &Engine,
    test: &Test,
    config: Value,
    events: &[Event],
) -> Result<Report, Problem> {
    let plugin = file_ref(&test.file);
    let spec = engine
        .destination(&plugin, Grants::default())
        .await?
        .spec()
        .clone();
    let action = match (&test.action, spec.actions.as_slice()) {
        (Some(action), _) => action.clone(),
        (None, [only]) => only.name.clone(),
        (None, actions) => {
            return Err(Problem::new(format!(
                "{} declares the actions {}; pick one with --action",
                test.file.display(),
                names(actions.iter().map(|a| a.name.as_str()))
            )));
        }
    };
    let script = match &test.respond {
        Some(path) => Script::load(path).map_err(Problem::new)?,
        None => Script::default(),
    };
    let mock = Mock::start(script)
        .await
        .map_err(|e| Problem::new(format!("cannot start the mock endpoint: {e}")))?;
    // What `ebb check` asks the operator to grant: the declared hosts, the
    // config's URL hosts, and whatever the author adds.
    let mut allow_hosts: Vec<String> = crate::plugin::wanted(&spec, &config)
        .into_iter()
        .map(|w| w.entry)
        .collect();
    allow_hosts.extend(test.allow_hosts.iter().cloned());
    let grants = Grants {
        allow_hosts,
        intercept: Some(mock.addr),
        ..Grants::default()
    };
    let destination = engine.destination(&plugin, grants).await?;
    if let Err(problems) = destination.validate(&config).await? {
        return Err(Problem::new(format!(
            "{} refuses the config: {}",
            test.file.display(),
            problems.join("; ")
        )));
    }
    let deliveries = send(destination, &spec, &config, &action, test, events).await;
    let masker = Masker::new(&config);
    let verdicts: Vec<Verdict> = events
        .iter()
        .zip(deliveries)
        .map(|(event, delivery)| delivered(event, delivery, &masker))
        .collect();
    Ok(Report {
        plugin: test.file.display().to_string(),
        world: "destination",
        action: Some(action),
        requests: mock.recorded().iter().map(|r| masker.request(r)).collect(),
        accepted: verdicts.iter().all(|v| v.outcome == "ok"),
        events: verdicts,
    })
}

/// Delivers the events one batch at a time, in order, with a run's retries.
async fn send(
    destination: Destination,
    spec: &crate::plugin::Spec,
    config: &Value,
    action: &str,
    test: &Test,
    events: &[Event],
) -> Vec<Delivery> {
    let loader = Loader {
        label: destination.label().to_owned(),
        destination,
        name: "test".into(),
        config: config.clone(),
        action: action.to_owned(),
        max_in_flight: 1,
        batch_records: spec.max_batch_records,
        batch_bytes: spec.max_batch_bytes,
        retry: Retry {
            max_attempts: test.max_attempts.max(1),
            ..Retry::default()
        },
        halt: CancellationToken::new(),
        slots: Arc::new(Semaphore::new(1)),
    };
    let mut deliveries = vec![Delivery::Failed("not attempted".into()); events.len()];
    let mut batches = std::pin::pin!(loader.deliver(events.into()));
    while let Some(done) = batches.next().await {
        for (i, delivery) in done.range.zip(done.deliveries) {
            deliveries[i] = delivery;
        }
    }
    deliveries
}

fn delivered(event: &Event, delivery: Delivery, masker: &Masker) -> Verdict {
    let outcome = delivery.outcome();
    let error = match delivery {
        Delivery::Ok => None,
        Delivery::Rejected(e) | Delivery::Failed(e) => Some(masker.text(&e)),
    };
    Verdict {
        id: event.id.clone(),
        op: event.op.to_string(),
        outcome,
        error,
        events: Vec::new(),
    }
}

/// What a transform made of `event`, with the delivery ids a run would
/// give the events it made.
fn transformed((event, item): (&Event, Item)) -> Verdict {
    let (outcome, error, mut events) = match item {
        Item::Keep(e) => ("kept", None, vec![e]),
        Item::Drop => ("dropped", None, Vec::new()),
        Item::Split(es) => ("split", None, es),
        Item::Fail(e) => ("failed", Some(e.message), Vec::new()),
    };
    let count = events.len();
    for (i, made) in events.iter_mut().enumerate() {
        made.delivery_id = delivery_id::made(event.delivery_id.clone(), count, i + 1);
    }
    Verdict {
        id: event.id.clone(),
        op: event.op.to_string(),
        outcome,
        error,
        events,
    }
}

fn print(report: &Report) {
    crate::output::requests(&report.requests);
    for v in &report.events {
        let error = v.error.as_deref().map(|e| format!(": {e}"));
        crate::say!(
            "event {} ({}): {}{}",
            v.id,
            v.op,
            v.outcome,
            error.unwrap_or_default()
        );
        for e in &v.events {
            crate::say!("  {}", serde_json::to_string(e).unwrap_or_default());
        }
    }
    let failed = report.events.iter().filter(|v| v.error.is_some()).count();
    match failed {
        0 => crate::say!("all {} event(s) accepted", report.events.len()),
        n => crate::say!("{n} of {} event(s) not accepted", report.events.len()),
    }
}

/// `ebb:js`'s config for the script under test, as a sync named `test`
/// would pass it.
fn javascript(test: &Test) -> Result<Value, Problem> {
    if test.config.is_some() {
        return Err(Problem::new(
            "a JavaScript transform takes no --config; its settings live in the script",
        ));
    }
    let read =
        |path: &Path| js::Source::read(&path.display().to_string(), path).map_err(Problem::new);
    let main = read(&test.file)?;
    let libraries = test
        .libraries
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, file)) if !name.is_empty() && !file.is_empty() => {
                Ok((name.to_owned(), read(Path::new(file))?))
            }
            _ => Err(Problem::new(format!(
                "--library {entry}: write NAME=FILE, as `import … from 'NAME'` names it"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shape = js::Shape::parse(&test.shape).ok_or_else(|| {
        Problem::new(format!(
            "--shape {}: use `ebb` (Ebb's envelope) or `rudderstack` (an identify call)",
            test.shape
        ))
    })?;
    let context = js::Context {
        sync: "test",
        destination: "test",
        memory_bytes: crate::plugin::Limits::default().memory_bytes,
    };
    Ok(js::config(&main, &libraries, shape, &context))
}

/// The plugin's config: a JSON file, or a TOML one holding its keys.
fn read_config(path: &Path) -> Result<Value, Problem> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::new(format!("cannot read {}: {e}", path.display())))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        toml::from_str::<toml::Value>(&text)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
    };
    match parsed {
        Ok(config @ Value::Object(_)) => Ok(config),
        Ok(_) => Err(Problem::new(format!(
            "{}: the config must be an object of the plugin's keys",
            path.display()
        ))),
        Err(e) => Err(Problem::new(format!("{}: {e}", path.display()))),
    }
}

/// Events, one JSON envelope per line (`{"op","id","fields","previous"}`);
/// blank lines are skipped. An event without a `delivery_id` gets one as a
/// run would give it, for a sync named after the file, so a plugin that
/// sends it as an idempotency key can be tested with plain events.
fn read_events(path: &Path) -> Result<Vec<Event>, Problem> {
    let file = std::fs::File::open(path)
        .map_err(|e| Problem::new(format!("cannot read {}: {e}", path.display())))?;
    let ids = DeliveryIds::new(&path.display().to_string(), 0, Default::default());
    let mut events = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Problem::new(format!("{}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut event: Event = serde_json::from_str(&line).map_err(|e| {
            Problem::new(format!(
                "{}:{}: not an event ({e}); write one {{\"op\":\"added\",\"id\":\"1\",\"fields\":{{…}},\"previous\":null}} per line",
                path.display(),
                i + 1
            ))
        })?;
        if event.delivery_id.is_empty() {
            event.delivery_id = ids.of(ChangeOf {
                key: &event.id,
                op: event.op,
                fingerprint: Some(fingerprint_of(line.as_bytes())),
            });
        }
        events.push(event);
    }
    if events.is_empty() {
        return Err(Problem::new(format!(
            "{} holds no events; write one JSON event per line",
            path.display()
        )));
    }
    Ok(events)
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
