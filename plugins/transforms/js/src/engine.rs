//! QuickJS with the user's transformation compiled and linked: built once,
//! then called per batch through the driver (`driver.js`).

use ebb_sdk::bindings::destination::ebb::plugin::types as wit;
use ebb_sdk::bindings::transform::exports::ebb::plugin::transform::Item;
use ebb_sdk::log::{self, Level};
use rquickjs::loader::{BuiltinLoader, BuiltinResolver};
use rquickjs::{Context, Ctx, Function, Module, Object, Persistent, Runtime, Value};

use crate::{Config, wire};

/// The driver's source: a function of `(hostLog, files)`.
const DRIVER: &str = include_str!("driver.js");

pub struct Engine {
    // Field order is drop order: the context's values before its runtime.
    context: Context,
    /// The driver's `{run, finish}` for this transformation.
    runner: Persistent<Object<'static>>,
    _runtime: Runtime,
}

impl Engine {
    /// Compiles and links the transformation and its libraries, and runs
    /// its top level; the error names the file and line at fault.
    pub fn new(config: &Config) -> Result<Engine, String> {
        let internal = |e: rquickjs::Error| format!("the JavaScript engine failed to start: {e}");
        let runtime = Runtime::new().map_err(internal)?;
        if let Some(bytes) = config.heap_bytes {
            runtime.set_memory_limit(bytes);
        }
        let mut resolver = BuiltinResolver::default();
        let mut loader = BuiltinLoader::default();
        for (name, library) in &config.libraries {
            resolver.add_module(name.as_str());
            loader.add_module(name.as_str(), library.source.as_str());
        }
        runtime.set_loader(resolver, loader);
        let context = Context::full(&runtime).map_err(internal)?;
        let runner = context.with(|ctx| link(&ctx, config))?;
        Ok(Engine {
            context,
            runner,
            _runtime: runtime,
        })
    }

    /// One item per event of the batch, in order.
    pub fn run(&self, batch: &[wit::Event]) -> Vec<Item> {
        self.context.with(|ctx| {
            let outcome = (|| {
                let runner = self.runner.clone().restore(&ctx)?;
                let run: Function = runner.get("run")?;
                let mut results: Value = run.call((wire::batch_json(batch),))?;
                if results.is_null() {
                    // Promises were returned: settle them, then collect.
                    while ctx.execute_pending_job() {}
                    let finish: Function = runner.get("finish")?;
                    results = finish.call(())?;
                }
                Ok::<_, rquickjs::Error>(results)
            })();
            match outcome {
                Ok(results) => wire::items(batch, results),
                Err(e) => wire::fail_all(
                    batch.len(),
                    &format!("the JavaScript engine failed: {}", caught(&ctx, e)),
                ),
            }
        })
    }
}

/// Runs the driver, then the user's module, and hands its exports to the
/// driver; returns the driver's runner.
fn link<'js>(ctx: &Ctx<'js>, config: &Config) -> Result<Persistent<Object<'static>>, String> {
    let internal = |e: rquickjs::Error| format!("the JavaScript engine failed to start: {e}");
    let make: Function = ctx.eval(DRIVER).map_err(internal)?;
    let host_log = Function::new(ctx.clone(), |level: i32, message: String| {
        let level = match level {
            1 => Level::Debug,
            3 => Level::Warn,
            4 => Level::Error,
            _ => Level::Info,
        };
        log::log(level, &message);
    })
    .map_err(internal)?;
    // Module names as the stack shows them, mapped to the user's paths.
    let files = Object::new(ctx.clone()).map_err(internal)?;
    files
        .set(config.file.as_str(), config.file.as_str())
        .map_err(internal)?;
    for (name, library) in &config.libraries {
        files
            .set(name.as_str(), library.file.as_str())
            .map_err(internal)?;
    }
    let tools: Object = make.call((host_log, files)).map_err(internal)?;
    let describe: Function = tools.get("describe").map_err(internal)?;
    let driver: Function = tools.get("driver").map_err(internal)?;
    let explain = |e: rquickjs::Error| -> String {
        match e {
            rquickjs::Error::Exception => describe
                .call::<_, String>((ctx.catch(),))
                .unwrap_or_else(|e| e.to_string()),
            other => other.to_string(),
        }
    };

    let module = Module::declare(ctx.clone(), config.file.as_str(), config.source.as_str())
        .and_then(|module| module.eval())
        .map_err(|e| format!("{} does not load: {}", config.file, explain(e)))?;
    let (module, top_level) = module;
    while ctx.execute_pending_job() {}
    top_level
        .finish::<()>()
        .map_err(|e| format!("{} does not load: {}", config.file, explain(e)))?;
    let exports = module.namespace().map_err(internal)?;
    let has = |name: &str| exports.get::<_, Value>(name).is_ok_and(|v| v.is_function());
    if !has("transformEvent") && !has("transformBatch") {
        return Err(format!(
            "{} exports neither transformEvent nor transformBatch: add `export function transformEvent(event, metadata) {{ … }}`",
            config.file
        ));
    }
    let settings = Object::new(ctx.clone()).map_err(internal)?;
    for (key, value) in [
        ("shape", config.shape.name()),
        ("sync", config.sync.as_str()),
        ("destination", config.destination.as_str()),
    ] {
        settings.set(key, value).map_err(internal)?;
    }
    let runner: Object = driver.call((exports, settings)).map_err(explain)?;
    Ok(Persistent::save(ctx, runner))
}

/// The message of a JavaScript exception the engine itself met.
fn caught(ctx: &Ctx<'_>, e: rquickjs::Error) -> String {
    match e {
        rquickjs::Error::Exception => {
            let value = ctx.catch();
            value
                .as_exception()
                .and_then(|x| x.message())
                .unwrap_or_else(|| format!("{value:?}"))
        }
        other => other.to_string(),
    }
}
