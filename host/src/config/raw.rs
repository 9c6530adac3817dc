//! `ebb.toml` as written, section by section, before anything is checked
//! beyond its shape. Each section's keys are declared in the file that
//! checks them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::alerts::RawAlerts;
use super::destinations::RawDestination;
use super::models::RawModel;
use super::plugins::RawPlugins;
use super::server::RawServer;
use super::sources::{RawSource, SourceTables};
use super::state::RawState;
use super::syncs::RawSync;
use crate::limits::Limits;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub plugins: RawPlugins,
    #[serde(default)]
    pub server: RawServer,
    pub alerts: Option<RawAlerts>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub destinations: BTreeMap<String, RawDestination>,
    #[serde(default)]
    pub syncs: BTreeMap<String, RawSync>,
}

/// Reads the file's text, and keeps each source's table as parsed for its
/// kind to read its own keys from.
pub fn parse(text: &str) -> Result<(RawConfig, SourceTables<'_>), toml::de::Error> {
    let doc = toml::de::DeTable::parse(text)?;
    let tables = SourceTables::of(&doc, text);
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(doc)).map_err(|mut e| {
        e.set_input(Some(text));
        e
    })?;
    Ok((raw, tables))
}
