//! Each `[sources.NAME]` table as parsed, positions included, so that every
//! kind reads its own keys from it and a wrong value is shown at its line,
//! like any other TOML error. (Serde's internally tagged enums would read
//! the kind first too, but they buffer the table without positions, and
//! every error would point at the table's header.)

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::config::error::Invalid;

/// The sources' tables of one document.
pub struct SourceTables<'a> {
    text: &'a str,
    tables: BTreeMap<String, Spanned<DeValue<'a>>>,
}

impl<'a> SourceTables<'a> {
    /// The `[sources.NAME]` tables of `doc`, parsed from `text`.
    pub fn of(doc: &Spanned<DeTable<'a>>, text: &'a str) -> SourceTables<'a> {
        let sources = doc.get_ref().get("sources");
        let tables = sources
            .and_then(|s| s.get_ref().as_table())
            .into_iter()
            .flatten()
            .map(|(name, table)| (name.get_ref().to_string(), table.clone()))
            .collect();
        SourceTables { text, tables }
    }

    /// The table of the source `name`, which the document has.
    pub fn get(&self, name: &str) -> SourceTable<'_> {
        SourceTable {
            text: self.text,
            value: &self.tables[name],
        }
    }
}

/// One source's table.
pub struct SourceTable<'a> {
    text: &'a str,
    value: &'a Spanned<DeValue<'a>>,
}

impl SourceTable<'_> {
    /// Whether the table sets `key`.
    pub fn has(&self, key: &str) -> bool {
        self.value
            .get_ref()
            .as_table()
            .is_some_and(|t| t.contains_key(key))
    }

    /// The keys `T` reads; the others are left to other readers.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, Invalid> {
        T::deserialize(ValueDeserializer::from(self.value.clone())).map_err(|mut e| {
            e.set_input(Some(self.text));
            Invalid::Worded(e.to_string())
        })
    }
}
