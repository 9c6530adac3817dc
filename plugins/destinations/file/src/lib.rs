//! `ebb:file`: appends each event's JSON envelope as one line to a file in
//! the directory the operator grants with `allow_dir`, which the plugin sees
//! as `/out`. Handy for audits, debugging a sync, or handing data to tools
//! that tail a JSON-lines file. Each batch is synced to disk before the
//! events count as delivered.

use ebb_sdk::{Action, Destination, Error, Event, Outcome, Spec};
use serde::Deserialize;
use serde_json::json;
use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path};

/// Where the host mounts the granted directory.
const OUT_DIR: &str = "/out";

struct File;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_file")]
    file: String,
}

fn default_file() -> String {
    "events.jsonl".to_owned()
}

impl Destination for File {
    type Config = Config;

    fn spec() -> Spec {
        Spec {
            config_schema: json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "file": {
                        "type": "string",
                        "default": "events.jsonl",
                        "description": "path of the output file, relative to the granted directory"
                    }
                }
            }),
            actions: vec![Action::new("append", "append each event as one JSON line")],
            max_batch_records: 10_000,
            max_batch_bytes: 16 << 20,
            ..Spec::new("file", env!("CARGO_PKG_VERSION"))
        }
    }

    fn validate(config: &Config) -> Result<(), Vec<String>> {
        let path = Path::new(&config.file);
        let inside = path
            .components()
            .all(|part| matches!(part, Component::Normal(_) | Component::CurDir));
        if config.file.is_empty() || !inside {
            return Err(vec![format!(
                "file must be a relative path inside the granted directory, without `..`; got {:?}",
                config.file
            )]);
        }
        Ok(())
    }

    fn write(config: &Config, _action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        if !Path::new(OUT_DIR).is_dir() {
            return Err(Error::invalid_config(format!(
                "no output directory is granted: the operator must set allow_dir on this destination \
                 (the plugin writes to it as {OUT_DIR})"
            )));
        }
        let path = Path::new(OUT_DIR).join(&config.file);
        append(&path, &batch).map_err(|e| {
            Error::transient(format!(
                "cannot append to {} in the granted directory: {e}",
                config.file
            ))
        })?;
        Ok(vec![Outcome::Ok; batch.len()])
    }
}

/// Appends one JSON line per event and syncs the file.
fn append(path: &Path, batch: &[Event]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut out = BufWriter::new(file);
    for event in batch {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_data()
}

ebb_sdk::export_destination!(File);
