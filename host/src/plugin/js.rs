//! JavaScript transforms: a sync's `{ js = "FILE", libraries = { NAME =
//! "FILE" }, shape = … }`, and `ebb plugin test FILE.js`, both run the
//! built-in `ebb:js` (QuickJS in a component, `plugins/transforms/js`) with
//! the files' text in its config. The files are read once, when the config
//! is loaded, so a run compiles exactly what `check` saw; [`probe`] compiles
//! them before a run, so a syntax error stops `check` and the run with one
//! message instead of failing every row.

use std::path::Path;

use ebb_plugin_host::event::{Event, Fields, Op};
use ebb_plugin_host::{CallError, Item, PluginLocation, PluginRef, Transform};
use serde_json::{Map, Value, json};

/// The built-in that runs JavaScript.
pub const BUILTIN: &str = "js";

/// What the transformation is given and what its return value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// Ebb's envelope `{op, id, fields, previous}` in and out.
    #[default]
    Ebb,
    /// The identify call RudderStack would send in; the returned object
    /// becomes the event's fields.
    Rudderstack,
}

impl Shape {
    pub fn parse(name: &str) -> Option<Shape> {
        match name {
            "ebb" => Some(Shape::Ebb),
            "rudderstack" => Some(Shape::Rudderstack),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Shape::Ebb => "ebb",
            Shape::Rudderstack => "rudderstack",
        }
    }
}

/// A JavaScript file: the name errors and stack lines show, and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub shown: String,
    pub text: String,
}

impl Source {
    /// Reads `path`, shown as `shown` (the path as the user wrote it).
    pub fn read(shown: &str, path: &Path) -> Result<Source, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read {}: {e}; it must be a UTF-8 JavaScript file",
                path.display()
            )
        })?;
        Ok(Source {
            shown: shown.to_owned(),
            text,
        })
    }
}

/// Where the transformation runs: the names `metadata(event)` reports, and
/// the memory its sandbox instance may take.
pub struct Context<'a> {
    pub sync: &'a str,
    pub destination: &'a str,
    pub memory_bytes: usize,
}

/// The config `ebb:js` takes.
pub fn config(
    main: &Source,
    libraries: &[(String, Source)],
    shape: Shape,
    context: &Context,
) -> Value {
    let libraries: Map<String, Value> = libraries
        .iter()
        .map(|(name, source)| {
            (
                name.clone(),
                json!({"file": source.shown, "source": source.text}),
            )
        })
        .collect();
    json!({
        "file": main.shown,
        "source": main.text,
        "libraries": libraries,
        "shape": shape.name(),
        "sync": context.sync,
        "destination": context.destination,
        // A quarter of the instance stays for the batch's JSON and results.
        "heap_bytes": context.memory_bytes / 4 * 3,
    })
}

/// `ebb:js`, running the script `label` names.
pub fn plugin_ref(label: String) -> PluginRef {
    PluginRef {
        label,
        location: PluginLocation::Builtin(BUILTIN.into()),
        sha256: None,
    }
}

/// Whether `plugin` is a JavaScript file run by `ebb:js`.
pub fn is_javascript(plugin: &PluginRef) -> bool {
    matches!(&plugin.location, PluginLocation::Builtin(name) if name == BUILTIN)
}

/// Compiles the transformation `config` holds without running it (`ebb:js`
/// drops a probe event if its files load); the inner `Err` says why not.
pub async fn probe(transform: &Transform, config: &Value) -> Result<Result<(), String>, CallError> {
    let mut probing = config.clone();
    probing["probe"] = Value::Bool(true);
    let event = Event {
        op: Op::Added,
        id: "probe".into(),
        fields: Fields::empty(),
        previous: None,
        delivery_id: String::new(),
    };
    Ok(match transform.apply(&probing, &[event]).await?.pop() {
        Some(Item::Fail(e)) => Err(e.message),
        _ => Ok(()),
    })
}
