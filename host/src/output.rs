//! How command results look: tables for people, JSON and CSV for programs.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use serde_json::Value;

use crate::event::{Op, Record};
use crate::plugin::Exchange;
use crate::run::{Plan, PlannedEvent, Replayed, Summary, Tested};
use crate::source::Column;
use crate::state::{ErrorGroup, OwedRow, RunRecord};

/// How a command prints its result: a table for people, JSON or CSV for
/// programs.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// `println!` that never panics: once stdout is closed (its reader left, as
/// in `ebb history S | head -1`), the rest is dropped, and the command goes
/// on to finish and exit as it would have.
#[macro_export]
macro_rules! say {
    () => {
        $crate::output::write_line(false, format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(false, format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics, for the same reason as [`say!`].
#[macro_export]
macro_rules! tell {
    ($($arg:tt)*) => {
        $crate::output::write_line(true, format_args!($($arg)*))
    };
}

/// One line to stdout or stderr. A closed or failing terminal or pipe is
/// not the command's failure, so its error is dropped.
pub fn write_line(to_stderr: bool, line: std::fmt::Arguments) {
    use std::io::Write;
    let _ = if to_stderr {
        writeln!(std::io::stderr().lock(), "{line}")
    } else {
        writeln!(std::io::stdout().lock(), "{line}")
    };
}

/// Stdout for writers (CSV): once its reader has left, what is written is
/// dropped as [`say!`] drops it, instead of failing the command.
pub fn stdout() -> impl std::io::Write {
    struct Closable(std::io::Stdout);
    impl std::io::Write for Closable {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match self.0.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(buf.len()),
                other => other,
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            match self.0.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            }
        }
    }
    Closable(std::io::stdout())
}

/// Messages may span lines (a database's, a plugin's); some places print
/// one per finding.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

fn json(value: &impl Serialize) -> anyhow::Result<()> {
    crate::say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A cell for a JSON value: strings bare, the rest as compact JSON, cut short.
fn cell(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub fn preview(columns: &[Column], rows: &[Record], format: Format) -> anyhow::Result<()> {
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    match format {
        Format::Json => json(&rows),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(stdout());
            w.write_record(&names)?;
            for row in rows {
                w.write_record(
                    names
                        .iter()
                        .map(|c| row.get(*c).map(cell).unwrap_or_default()),
                )?;
            }
            Ok(w.flush()?)
        }
        Format::Table => {
            let mut t = table(&names);
            // The database's type, and the JSON type the first non-null
            // value of the column became.
            t.add_row(columns.iter().map(|c| {
                let v = rows
                    .iter()
                    .filter_map(|r| r.get(&c.name))
                    .find(|v| !v.is_null());
                format!(
                    "({} → {})",
                    c.type_name.to_lowercase(),
                    v.map(kind).unwrap_or("null")
                )
            }));
            for row in rows {
                t.add_row(
                    names
                        .iter()
                        .map(|c| row.get(*c).map(cell).unwrap_or_default()),
                );
            }
            crate::say!("{t}");
            Ok(())
        }
    }
}

/// A plan: counts per op first, then the first events, each update with
/// only the fields it changes.
pub fn plan(sync: &str, plan: &Plan, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => json(plan),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(stdout());
            w.write_record(["op", "key", "changed", "fields", "previous"])?;
            for e in &plan.events {
                let changed = e
                    .changes
                    .as_ref()
                    .map(|c| serde_json::to_string(&c.keys().collect::<Vec<_>>()))
                    .transpose()?
                    .unwrap_or_default();
                let prev = e
                    .event
                    .previous
                    .as_ref()
                    .map(|p| p.json().to_owned())
                    .unwrap_or_default();
                w.write_record([
                    e.op.as_str(),
                    &e.key,
                    &changed,
                    e.event.fields.json(),
                    &prev,
                ])?;
            }
            Ok(w.flush()?)
        }
        Format::Table => {
            let s = &plan.summary;
            crate::say!(
                "sync `{sync}` would send {} event(s): {} added, {} updated, {} deleted",
                s.total,
                s.added,
                s.updated,
                s.deleted
            );
            if !plan.events.is_empty() {
                let mut t = table(&["op", "key", "fields (for updates, old → new)"]);
                for e in &plan.events {
                    t.add_row(vec![e.op.to_string(), e.key.clone(), planned(e)]);
                }
                crate::say!("{t}");
            }
            if plan.truncated {
                crate::say!(
                    "… and {} more; --limit to see more",
                    s.total - plan.events.len() as u64
                );
            }
            Ok(())
        }
    }
}

/// What a plan's table shows of an event: an added record's fields, an
/// update's changed fields, nothing more for a deletion (its key says it).
fn planned(e: &PlannedEvent) -> String {
    let lines: Vec<String> = match (e.op, &e.changes) {
        (Op::Deleted, _) => Vec::new(),
        (Op::Updated, Some(changes)) if changes.is_empty() => {
            vec!["(no field differs from what was delivered)".to_owned()]
        }
        (Op::Updated, Some(changes)) => changes
            .iter()
            .map(|(path, c)| {
                let (old, new) = changed(c.old.as_ref(), c.new.as_ref());
                format!("{path}: {old} → {new}")
            })
            .collect(),
        _ => e
            .event
            .fields
            .record()
            .iter()
            .map(|(name, v)| format!("{name}: {}", cut(&v.to_string(), 0)))
            .collect(),
    };
    lines.join("\n")
}

/// The most characters of one value a plan's table shows.
const VALUE_CHARS: usize = 60;

/// An old and a new value as compact JSON, each cut to [`VALUE_CHARS`] in
/// the same place: around where they first differ, so what changed stays
/// in view however long the values are.
fn changed(old: Option<&Value>, new: Option<&Value>) -> (String, String) {
    let text = |v: Option<&Value>| v.map_or_else(|| "(absent)".to_owned(), Value::to_string);
    let (old, new) = (text(old), text(new));
    let first_difference = old
        .chars()
        .zip(new.chars())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| old.chars().count().min(new.chars().count()));
    let from = first_difference.saturating_sub(VALUE_CHARS / 3);
    (cut(&old, from), cut(&new, from))
}

/// [`VALUE_CHARS`] characters of `text` from character `from`, with `…`
/// where some were left out.
fn cut(text: &str, from: usize) -> String {
    let total = text.chars().count();
    if total <= VALUE_CHARS {
        return text.to_owned();
    }
    let from = from.min(total.saturating_sub(VALUE_CHARS));
    let shown: String = text.chars().skip(from).take(VALUE_CHARS).collect();
    let before = if from > 0 { "…" } else { "" };
    let after = if from + VALUE_CHARS < total {
        "…"
    } else {
        ""
    };
    format!("{before}{shown}{after}")
}

/// Requests a destination sent, secrets already hidden, each with the
/// status it was answered with and its body indented for reading.
pub fn requests(requests: &[Exchange]) {
    for (i, r) in requests.iter().enumerate() {
        let status = r
            .status
            .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
        crate::say!("request {}: {} {} -> {status}", i + 1, r.method, r.url);
        for (name, value) in &r.headers {
            crate::say!("  {name}: {value}");
        }
        if !r.body.is_empty() {
            crate::say!("  {}", pretty(&r.body).replace('\n', "\n  "));
        }
    }
}

/// A JSON body indented for reading; any other body as it is.
fn pretty(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| body.to_owned())
}

pub fn tested(t: &Tested, format: Format) -> anyhow::Result<()> {
    if format != Format::Table {
        return json(t);
    }
    crate::say!("record {} of sync `{}`", t.key, t.sync);
    if let Some(why) = &t.refused {
        crate::say!("a transform refused it, so nothing was sent: {why}");
        return Ok(());
    }
    if t.events.is_empty() {
        crate::say!("a transform dropped it, so nothing was sent");
        return Ok(());
    }
    for e in &t.events {
        crate::say!("event sent: {}", serde_json::to_string(e)?);
    }
    requests(&t.requests);
    for o in &t.outcomes {
        match &o.error {
            None => crate::say!("event {}: {}", o.id, o.outcome),
            Some(e) => crate::say!("event {}: {}: {e}", o.id, o.outcome),
        }
    }
    Ok(())
}

pub fn replayed(r: &Replayed, format: Format) -> anyhow::Result<()> {
    if format != Format::Table {
        return json(r);
    }
    crate::say!(
        "replayed run {} of sync `{}`: sent {}, ok {}, rejected {}, failed {}",
        r.run_id,
        r.sync,
        r.sent,
        r.ok,
        r.rejected,
        r.failed
    );
    for e in &r.errors {
        crate::say!("  {e}");
    }
    Ok(())
}

pub fn summary(s: &Summary, format: Format) -> anyhow::Result<()> {
    if format != Format::Table {
        return json(s);
    }
    crate::say!(
        "run {} of sync `{}`: {}",
        s.run_id,
        s.sync,
        s.status.as_str()
    );
    let c = &s.counts;
    let mut t = table(&[
        "extracted",
        "added",
        "updated",
        "deleted",
        "sent",
        "ok",
        "rejected",
        "failed",
        "retried",
        "dropped",
        "filtered",
    ]);
    t.add_row([
        c.extracted,
        c.added,
        c.updated,
        c.deleted,
        c.sent,
        c.ok,
        c.rejected,
        c.failed,
        c.retried,
        c.dropped,
        c.filtered,
    ]);
    crate::say!("{t}");
    if let Some(e) = &s.error {
        crate::say!("{e}");
    }
    if c.rejected + c.failed > 0 {
        crate::say!(
            "{} row(s) are still owed; see `ebb errors {}`; they are retried on the next run",
            c.rejected + c.failed,
            s.sync
        );
    }
    Ok(())
}

pub fn history(runs: &[RunRecord], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json(&runs);
    }
    if format == Format::Csv {
        let mut w = csv::Writer::from_writer(stdout());
        w.write_record([
            "run_id",
            "status",
            "started_at",
            "finished_at",
            "extracted",
            "added",
            "updated",
            "deleted",
            "sent",
            "ok",
            "rejected",
            "failed",
            "retried",
            "dropped",
            "filtered",
            "error",
            "kind",
            "detail",
        ])?;
        for r in runs {
            let c = &r.counts;
            w.write_record([
                r.run_id.to_string(),
                r.status.as_str().to_string(),
                r.started_at.clone(),
                r.finished_at.clone().unwrap_or_default(),
                c.extracted.to_string(),
                c.added.to_string(),
                c.updated.to_string(),
                c.deleted.to_string(),
                c.sent.to_string(),
                c.ok.to_string(),
                c.rejected.to_string(),
                c.failed.to_string(),
                c.retried.to_string(),
                c.dropped.to_string(),
                c.filtered.to_string(),
                r.error.clone().unwrap_or_default(),
                r.kind.as_str().to_string(),
                r.detail.clone().unwrap_or_default(),
            ])?;
        }
        return Ok(w.flush()?);
    }
    let mut t = table(&[
        "run",
        "kind",
        "status",
        "started",
        "finished",
        "extracted",
        "added",
        "updated",
        "deleted",
        "ok",
        "rejected",
        "failed",
        "error",
    ]);
    for r in runs {
        let c = &r.counts;
        let kind = match &r.detail {
            Some(detail) => detail.clone(),
            None => r.kind.as_str().to_string(),
        };
        t.add_row(vec![
            r.run_id.to_string(),
            kind,
            r.status.as_str().to_string(),
            r.started_at.clone(),
            r.finished_at.clone().unwrap_or_default(),
            c.extracted.to_string(),
            c.added.to_string(),
            c.updated.to_string(),
            c.deleted.to_string(),
            c.ok.to_string(),
            c.rejected.to_string(),
            c.failed.to_string(),
            cell(&Value::String(r.error.clone().unwrap_or_default())),
        ]);
    }
    crate::say!("{t}");
    Ok(())
}

/// Owed rows as CSV, one per line with its payload as JSON.
pub fn owed_csv(rows: &[OwedRow], out: impl std::io::Write) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["key", "op", "run_id", "attempts", "error", "payload"])?;
    for r in rows {
        w.write_record([
            &r.key,
            &r.op,
            &r.run_id.to_string(),
            &r.attempts.to_string(),
            &r.error,
            &r.payload.to_string(),
        ])?;
    }
    Ok(w.flush()?)
}

pub fn owed(rows: &[OwedRow], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => json(&rows),
        Format::Csv => owed_csv(rows, stdout()),
        Format::Table => {
            let mut t = table(&["key", "op", "run", "attempts", "error"]);
            for r in rows {
                t.add_row(vec![
                    r.key.clone(),
                    r.op.clone(),
                    r.run_id.to_string(),
                    r.attempts.to_string(),
                    r.error.clone(),
                ]);
            }
            crate::say!("{t}");
            crate::say!("{} row(s) owed", rows.len());
            Ok(())
        }
    }
}

/// Owed rows grouped by error: how many rows each error holds and their
/// first keys, the largest group first.
pub fn error_groups(groups: &[ErrorGroup], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => json(&groups),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(stdout());
            w.write_record(["error", "count", "keys", "last_run"])?;
            for g in groups {
                w.write_record([
                    &g.error,
                    &g.count.to_string(),
                    &g.keys.join(" "),
                    &g.last_run.to_string(),
                ])?;
            }
            Ok(w.flush()?)
        }
        Format::Table => {
            let mut t = table(&["rows", "error", "keys", "last run"]);
            for g in groups {
                let more = match g.count > g.keys.len() as i64 {
                    true => ", …",
                    false => "",
                };
                t.add_row(vec![
                    g.count.to_string(),
                    g.error.clone(),
                    format!("{}{more}", g.keys.join(", ")),
                    g.last_run.to_string(),
                ]);
            }
            crate::say!("{t}");
            let rows: i64 = groups.iter().map(|g| g.count).sum();
            crate::say!("{rows} row(s) owed, {} distinct error(s)", groups.len());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Long values are cut in the same place on both sides, around where
    /// they first differ, so the change is never cut off.
    #[test]
    fn a_long_change_is_shown_where_it_differs() {
        let head = "x".repeat(200);
        let (old, new) = changed(
            Some(&json!(format!("{head}-old-tail"))),
            Some(&json!(format!("{head}-new-tail"))),
        );
        assert!(old.starts_with('…') && old.contains("-old-tail"), "{old}");
        assert!(new.starts_with('…') && new.contains("-new-tail"), "{new}");
        assert!(old.chars().count() <= VALUE_CHARS + 2, "{old}");

        assert_eq!(
            changed(Some(&json!("a")), None),
            ("\"a\"".to_owned(), "(absent)".to_owned())
        );
        let long = json!("y".repeat(100));
        let (old, new) = changed(Some(&json!(1)), Some(&long));
        assert_eq!(old, "1");
        assert!(new.starts_with("\"yyy") && new.ends_with('…'), "{new}");
    }
}
