//! How `ebb plugin` commands show what they found: for people, or JSON for
//! programs, with sizes and lists written the way `ebb.toml` and people
//! read them.

use std::path::Path;

use clap::ValueEnum;
use serde::Serialize;

use super::problem::Problem;
use crate::plugin::{PluginLocation, PluginRef};

/// How `inspect` and `test` print: for people, or JSON for programs.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A plugin file, named in messages by its path.
pub fn file_ref(file: &Path) -> PluginRef {
    PluginRef {
        label: file.display().to_string(),
        location: PluginLocation::File(file.to_owned()),
        sha256: None,
    }
}

pub fn print_json(value: &impl Serialize) -> Result<(), Problem> {
    crate::say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Bytes for people: `1.2 MiB`, `340 KiB`, `12 B`.
pub fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.0} KiB", b as f64 / (1 << 10) as f64),
        b => format!("{b} B"),
    }
}

/// Items as a TOML list's contents: `"a", "b"`.
pub fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|h| format!("{h:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
