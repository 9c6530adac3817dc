//! `ebb plugin inspect FILE`: what a built plugin is, before anyone trusts
//! it with credentials: its world and WIT version, what it imports, and for
//! a destination the spec it declares (actions and their fields, config
//! schema, hosts, batch limits), with the size and sha256 to pin it by.
//! A component this Ebb cannot load is still described, with the reason.

use std::path::Path;

use serde::Serialize;

use super::problem::Problem;
use super::report::{Format, file_ref, print_json, quoted, size};
use crate::plugin::{Engine, Grants, Spec};

#[derive(Serialize)]
pub struct Description {
    pub file: String,
    pub size: usize,
    pub sha256: String,
    /// `destination`, `transform`, or null when it exports neither.
    pub world: Option<&'static str>,
    pub wit_version: Option<String>,
    /// Why this Ebb cannot load it, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unloadable: Option<String>,
    pub imports: Vec<String>,
    /// A destination's self-description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<Spec>,
}

/// Reads what `file` is; a file that is not a component is an error.
pub async fn describe(engine: &Engine, file: &Path) -> Result<Description, Problem> {
    let plugin = file_ref(file);
    let inspected = engine.inspect(&plugin).await?;
    let shape = inspected.shape;
    let loaded = match shape.world {
        Some("destination") => engine
            .destination(&plugin, Grants::default())
            .await
            .map(|d| Some(d.spec().clone())),
        Some(_) => engine
            .transform(&plugin, Default::default())
            .await
            .map(|_| None),
        None => Ok(None),
    };
    let (spec, unloadable) = match loaded {
        Ok(spec) => (spec, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let unloadable = match shape.world {
        None => Some(format!(
            "it exports neither ebb:plugin/destination nor ebb:plugin/transform (it exports [{}])",
            shape.exports.join(", ")
        )),
        Some(_) => unloadable,
    };
    Ok(Description {
        file: file.display().to_string(),
        size: inspected.size,
        sha256: inspected.sha256,
        world: shape.world,
        wit_version: shape.wit_version,
        unloadable,
        imports: shape.imports,
        spec,
    })
}

pub async fn inspect(engine: &Engine, file: &Path, format: Format) -> Result<(), Problem> {
    let d = describe(engine, file).await?;
    match format {
        Format::Json => print_json(&d),
        Format::Table => {
            print(&d);
            Ok(())
        }
    }
}

fn print(d: &Description) {
    let unknown = || "unknown".to_owned();
    crate::say!("file:        {}", d.file);
    crate::say!("size:        {}", size(d.size));
    crate::say!("sha256:      {}", d.sha256);
    crate::say!(
        "world:       {}",
        d.world.map(str::to_owned).unwrap_or_else(unknown)
    );
    crate::say!(
        "wit version: ebb:plugin@{}",
        d.wit_version.clone().unwrap_or_else(unknown)
    );
    if let Some(why) = &d.unloadable {
        crate::say!("loads:       no: {}", crate::output::one_line(why));
    }
    if let Some(spec) = &d.spec {
        crate::say!("name:        {}", spec.name);
        crate::say!("version:     {}", spec.version);
        crate::say!(
            "batches:     at most {} events, {}",
            spec.max_batch_records,
            size(spec.max_batch_bytes)
        );
        crate::say!("hosts:       [{}]", quoted(&spec.hosts));
        if let Some(rate) = &spec.rate {
            let per_sec = |n: Option<f64>, what: &str| n.map(|n| format!("{n} {what}/s"));
            let limits: Vec<String> = [
                per_sec(rate.requests_per_sec, "requests"),
                per_sec(rate.records_per_sec, "records"),
            ]
            .into_iter()
            .flatten()
            .collect();
            crate::say!("rate:        {} (the vendor's limit)", limits.join(", "));
        }
        crate::say!("actions:");
        for action in &spec.actions {
            crate::say!("  {}: {}", action.name, action.description);
            for field in &action.fields {
                let kind = serde_json::to_value(&field.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let required = if field.required { ", required" } else { "" };
                crate::say!("    {} ({kind}{required})", field.name);
            }
        }
        let schema = serde_json::to_string_pretty(&spec.config_schema).unwrap_or_default();
        crate::say!("config schema:\n  {}", schema.replace('\n', "\n  "));
    }
    crate::say!("imports:");
    for import in &d.imports {
        crate::say!("  {import}");
    }
}
