//! The prepare stage: everything that can fail because of the config
//! (plugins, the destination's config and action, JavaScript that does not
//! compile, the query's columns, the mapping) is checked before the state
//! store is opened, so a bad config leaves no trace.

use std::collections::HashSet;

use super::error::{Result, RunError};
use crate::config::{self, Config, DiffIn};
use crate::diff::warehouse as pushdown;
use crate::extract::{self, Templates};
use crate::load::Loader;
use crate::mapping::{self, Mapping};
use crate::param::ParamKind;
use crate::plugin::{ActionSpec, Engine, Grants, Spec, js};
use crate::source::Warehouse;
use crate::transform::{Caps, Step};

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
    pub cursor_kind: Option<ParamKind>,
    /// How a `diff = "warehouse"` statement fingerprints the model's rows.
    pub row_hash: pushdown::RowHash,
}

/// Loads the sync's plugins, checks the destination config, the action, the
/// query's columns and the mapping.
pub async fn prepare(cfg: &Config, engine: &Engine, sync_name: &str) -> Result<Prepared> {
    let sync = cfg.sync(sync_name)?.clone();
    let model = cfg.model(&sync.model)?.clone();
    let source = cfg.sources[&model.source].clone();
    let dest = &cfg.destinations[&sync.destination];
    let (loader, action) = destination(cfg, engine, &sync).await?;

    let mut steps = Vec::with_capacity(sync.transforms.len());
    for t in &sync.transforms {
        let transform = engine
            .transform(&t.plugin, plugin_limits(cfg, t.limits))
            .await?;
        if js::is_javascript(&t.plugin)
            && let Err(why) = js::probe(&transform, &t.config).await?
        {
            return Err(RunError::Refused(format!("{}: {why}", t.plugin.label)));
        }
        steps.push(Step {
            label: t.plugin.label.clone(),
            transform,
            config: t.config.clone(),
            caps: Caps::from(&cfg.limits),
        });
    }

    let mut warehouse = Warehouse::connect(&source).await?;
    let probe = extract::bind(&model, source.kind, &Templates::first_run(&model))?;
    let described = warehouse.columns(&probe).await?;
    extract::check_columns(&model, &described, &cfg.limits)?;
    if model.diff == DiffIn::Warehouse {
        pushdown::check_columns(&model, &described).map_err(RunError::Refused)?;
    }
    let cursor_kind = model.cursor.as_ref().and_then(|c| {
        described
            .iter()
            .find(|col| &col.name == c)
            .map(|col| crate::cursor::kind_of_type(source.kind, &col.type_name))
    });
    let row_hash = pushdown::RowHash::for_columns(&described);
    let columns: Vec<String> = described.into_iter().map(|c| c.name).collect();

    check_fields(
        &sync,
        &action,
        &dest.name,
        &model.name,
        &columns,
        steps.is_empty(),
    )?;

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

/// Checks the sync's mapping against the model's columns (when no transform
/// stands between them) and the action's required fields against what
/// reaches the destination.
fn check_fields(
    sync: &config::Sync,
    action: &ActionSpec,
    destination: &str,
    model: &str,
    columns: &[String],
    direct: bool,
) -> Result<()> {
    let key = format!("syncs.{}", sync.name);
    // With transforms in between, the shape reaching the mapping is theirs
    // to decide; only a direct mapping can be checked against the columns.
    if let Some(mapping) = sync.mapping.as_ref().filter(|_| direct) {
        check_sources(&key, mapping, model, columns)?;
    }
    let produced: Option<HashSet<&str>> = match &sync.mapping {
        Some(m) => m.produces(direct.then_some(columns)),
        None if direct => Some(columns.iter().map(String::as_str).collect()),
        None => None,
    };
    if let Some(produced) = produced {
        for field in action.fields.iter().filter(|f| f.required) {
            if !produced.contains(field.name.as_str()) {
                return Err(RunError::Refused(format!(
                    "{key}: action `{}` of destination `{}` requires field `{}`; map it in {key}.mapping",
                    action.name, destination, field.name
                )));
            }
        }
    }
    Ok(())
}

/// Refuses a mapping that reads, or ignores, a path no column of the model
/// can hold: its first segment (or, for a column whose name has dots, its
/// start) must be a column; an ignored path may also be under a target.
fn check_sources(key: &str, mapping: &Mapping, model: &str, columns: &[String]) -> Result<()> {
    let under = |path: &str, name: &str| {
        path.strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    let in_columns = |path: &str| columns.iter().any(|c| under(path, c));
    let refuse = |target: &str, what: String, path: &str| {
        let head = path.split('.').next().unwrap_or(path);
        let hint = config::did_you_mean(head, columns.iter().map(String::as_str))
            .map(|close| format!(" did you mean `{close}`?"))
            .unwrap_or_default();
        let listed: Vec<String> = columns.iter().map(|c| format!("`{c}`")).collect();
        RunError::Refused(format!(
            "{key}.mapping.{}: {what} model `{model}` has no column `{head}`;{hint} its columns: {}",
            mapping::key(target),
            listed.join(", ")
        ))
    };
    for read in mapping.reads() {
        if !in_columns(read.source) {
            let what = format!("source `{}` cannot exist:", read.source);
            return Err(refuse(&read.target, what, read.source));
        }
    }
    for path in mapping.ignored() {
        if !in_columns(&path) && !mapping.targets().any(|t| under(&path, t)) {
            let what = format!("ignores `{path}`, which nothing maps, and");
            return Err(refuse(&path, what, &path));
        }
    }
    Ok(())
}

/// A plugin's own limits (`timeout_secs`, `memory_mb`) with those
/// `[limits]` sets for every plugin.
fn plugin_limits(cfg: &Config, own: crate::plugin::Limits) -> crate::plugin::Limits {
    crate::plugin::Limits {
        log_bytes: cfg.limits.plugin_log_bytes,
        ..own
    }
}

/// The sync's destination plugin, loaded, its config and action checked,
/// as a loader.
pub(super) async fn destination(
    cfg: &Config,
    engine: &Engine,
    sync: &config::Sync,
) -> Result<(Loader, ActionSpec)> {
    let dest = &cfg.destinations[&sync.destination];
    let key = format!("syncs.{}", sync.name);
    let config = dest.config.as_ref().map_err(|unset| {
        RunError::Config(config::ConfigError {
            file: cfg.file.display().to_string(),
            message: unset.0.clone(),
        })
    })?;
    let defaults = Grants::default();
    let grants = Grants {
        allow_hosts: dest.allow_hosts.clone(),
        dir: dest.allow_dir.clone(),
        limits: plugin_limits(cfg, dest.plugin_limits),
        http_response_bytes: cfg.limits.http_response_bytes,
        budget: Some(crate::plugin::BudgetFor {
            destination: dest.name.clone(),
            rate: dest.rate,
        }),
        // A destination given a long `timeout_secs` may take that long to
        // answer a request, too.
        http_first_byte_timeout: defaults
            .http_first_byte_timeout
            .max(dest.plugin_limits.call_timeout),
        ..defaults
    };
    let destination = engine.destination(&dest.plugin, grants).await?;
    if let Err(problems) = destination.validate(config).await? {
        return Err(RunError::Refused(format!(
            "destinations.{}.config: {} refuses its config: {}",
            dest.name,
            dest.plugin.label,
            problems.join("; ")
        )));
    }
    let spec = destination.spec().clone();
    granted(dest, config, &spec)?;
    let declared = || {
        spec.actions
            .iter()
            .map(|a| format!("`{}`", a.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let action = match &sync.action {
        Some(a) => spec.actions.iter().find(|x| &x.name == a).ok_or_else(|| {
            RunError::Refused(format!(
                "{key}.action: destination `{}` has no action `{a}`; it declares: {}",
                dest.name,
                declared()
            ))
        })?,
        None if spec.actions.len() == 1 => &spec.actions[0],
        None => {
            return Err(RunError::Refused(format!(
                "{key}.action: destination `{}` declares several actions ({}); choose one",
                dest.name,
                declared()
            )));
        }
    }
    .clone();

    let loader = Loader {
        name: dest.name.clone(),
        label: dest.plugin.label.clone(),
        config: config.clone(),
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
        slots: std::sync::Arc::new(tokio::sync::Semaphore::new(dest.max_in_flight)),
    };
    Ok((loader, action))
}

/// Refuses a destination whose `allow_hosts` misses a host it will call,
/// naming each and the line that grants them all, so a missing grant fails
/// `ebb check` instead of every row of every run.
fn granted(dest: &config::Destination, config: &serde_json::Value, spec: &Spec) -> Result<()> {
    let wanted = crate::plugin::wanted(spec, config);
    let missing = crate::plugin::ungranted(&dest.allow_hosts, wanted).map_err(RunError::Refused)?;
    if missing.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = missing
        .iter()
        .map(|w| format!("`{}` ({})", w.entry, w.why))
        .collect();
    let all: Vec<String> = dest
        .allow_hosts
        .iter()
        .chain(missing.iter().map(|w| &w.entry))
        .map(|h| format!("{h:?}"))
        .collect();
    Err(RunError::Refused(format!(
        "destinations.{}.allow_hosts does not grant {}, which {} will call; set allow_hosts = [{}]",
        dest.name,
        named.join(", "),
        dest.plugin.label,
        all.join(", ")
    )))
}
