//! `ebb:file`: appends each event's JSON envelope as one line to a file in
//! the directory the operator grants with `allow_dir`, which the plugin sees
//! as `/out`. Handy for audits, debugging a sync, or handing data to tools
//! that tail a JSON-lines file. Each batch is synced to disk before the
//! events count as delivered.

use ebb_sdk::{Action, Destination, Error, Event, Outcome, RawEvent, Spec};
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

    fn write(config: &Config, action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
        Self::write_raw(config, action, batch.into_iter().map(Into::into).collect())
    }

    /// Records go into the file as the host sent them, never parsed.
    fn write_raw(
        config: &Config,
        _action: &str,
        batch: Vec<RawEvent>,
    ) -> Result<Vec<Outcome>, Error> {
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
fn append(path: &Path, batch: &[RawEvent]) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::testing;
    use ebb_sdk::{ErrorKind, Op};

    #[test]
    fn the_file_must_stay_inside_the_granted_directory() {
        for inside in ["events.jsonl", "audit/users.jsonl", "./x.jsonl"] {
            let config = json!({ "file": inside });
            assert_eq!(testing::validate::<File>(config), Ok(()), "{inside}");
        }
        for outside in ["", "../escape.jsonl", "/etc/passwd", "a/../../b"] {
            let problems = testing::validate::<File>(json!({ "file": outside })).unwrap_err();
            assert!(
                problems[0].contains("inside the granted directory"),
                "{problems:?}"
            );
        }
        assert!(testing::validate::<File>(json!({ "path": "x" })).is_err());
    }

    /// Natively there is no `/out`, as in a component that was granted no
    /// folder: the batch fails with a config error naming the fix.
    #[test]
    fn without_a_granted_directory_the_batch_fails_naming_allow_dir() {
        let batch = vec![testing::event(Op::Added, "1", json!({"a": 1}))];
        let error = testing::write::<File>(json!({}), "append", batch).unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidConfig);
        assert!(error.message.contains("allow_dir"), "{}", error.message);
    }

    #[test]
    fn events_are_appended_as_json_lines() {
        let dir = std::env::temp_dir().join(format!("ebb-file-test-{}", std::process::id()));
        let path = dir.join("nested/events.jsonl");
        let mut update = testing::event(Op::Updated, "2", json!({"plan": "team"}));
        update.previous = Some(json!({"plan": "pro"}).as_object().unwrap().clone());
        append(
            &path,
            &[testing::event(Op::Added, "1", json!({"a": 1})).into()],
        )
        .unwrap();
        append(&path, &[update.into()]).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["fields"]["a"], 1);
        assert_eq!(lines[1]["previous"]["plan"], "pro");
        assert_eq!(lines[1]["delivery_id"], "test-2");
    }
}
