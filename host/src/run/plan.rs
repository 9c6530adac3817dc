//! `ebb plan`: the pipeline walked without a writer, so it collects what it
//! would send and commits nothing. What it returns leads with counts per
//! op, then the first events, each update with only the fields it changes:
//! a plan of thousands of records is read from its summary, and an update
//! from what it changes, not from two full records side by side.

use std::collections::BTreeMap;

use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::Result;
use super::pass::Pass;
use super::prepare::prepare;
use crate::config::Config;
use crate::event::{Event, Op, Record};
use crate::plugin::Engine;
use crate::state::State;

/// What a run would send now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Plan {
    pub summary: PlanSummary,
    /// The first events, in the order a run would send them, as many as
    /// the limit allows.
    pub events: Vec<PlannedEvent>,
    /// Whether the limit left events out (`summary.total` is more than
    /// `events` holds).
    pub truncated: bool,
}

/// How many events of each op a run would send.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct PlanSummary {
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
    pub total: u64,
}

/// One event a run would send.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlannedEvent {
    /// The record's primary key, as text.
    pub key: String,
    pub op: Op,
    /// For an update, each field whose value differs from the one last
    /// delivered, by path (nested fields dotted: `contact.email`); absent
    /// for added and deleted records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<BTreeMap<String, Change>>,
    /// The event as a run would send it.
    pub event: Event,
}

/// A field's value last delivered and now.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct Change {
    /// The value last delivered; absent when the field is new.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The value now; absent when the field is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// What a run would send now, with at most `limit` events (all without
/// one); sends and writes nothing.
pub async fn plan(
    cfg: &Config,
    engine: &Engine,
    sync_name: &str,
    limit: Option<usize>,
    progress: &ProgressBar,
) -> Result<Plan> {
    let prepared = prepare(cfg, engine, sync_name).await?;
    let state = State::open_existing(&cfg.state_url).await?;
    let mut pass = Pass::new(
        &prepared.sync,
        &prepared.loader,
        &prepared.steps,
        None,
        progress,
    );
    pass.reader = state.as_ref();
    pass.execute(
        prepared.warehouse,
        &prepared.model,
        &prepared.source,
        &prepared.limits,
        prepared.cursor_kind,
        prepared.row_hash,
    )
    .await?;
    progress.finish_and_clear();
    Ok(summarize(pass.planned, limit))
}

/// Counts every event and keeps the first `limit`.
fn summarize(events: Vec<Event>, limit: Option<usize>) -> Plan {
    let mut summary = PlanSummary::default();
    for e in &events {
        *match e.op {
            Op::Added => &mut summary.added,
            Op::Updated => &mut summary.updated,
            Op::Deleted => &mut summary.deleted,
        } += 1;
    }
    summary.total = events.len() as u64;
    let kept = limit.unwrap_or(events.len());
    let events: Vec<PlannedEvent> = events
        .into_iter()
        .take(kept)
        .map(|event| PlannedEvent {
            key: event.id.clone(),
            op: event.op,
            changes: match (event.op, &event.previous) {
                (Op::Updated, Some(previous)) => {
                    Some(changes(&previous.record(), &event.fields.record()))
                }
                _ => None,
            },
            event,
        })
        .collect();
    Plan {
        truncated: (events.len() as u64) < summary.total,
        summary,
        events,
    }
}

/// The fields whose values differ between `old` and `new`, by dotted path;
/// objects on both sides are compared field by field, anything else whole.
fn changes(old: &Record, new: &Record) -> BTreeMap<String, Change> {
    let mut out = BTreeMap::new();
    compare("", old, new, &mut out);
    out
}

fn compare(prefix: &str, old: &Record, new: &Record, out: &mut BTreeMap<String, Change>) {
    let gone = old.keys().filter(|k| !new.contains_key(*k));
    for name in new.keys().chain(gone) {
        let path = match prefix {
            "" => name.clone(),
            _ => format!("{prefix}.{name}"),
        };
        match (old.get(name), new.get(name)) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => compare(&path, a, b, out),
            (a, b) if a != b => {
                out.insert(
                    path,
                    Change {
                        old: a.cloned(),
                        new: b.cloned(),
                    },
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(v: Value) -> Record {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn event(op: Op, id: &str, fields: Value, previous: Option<Value>) -> Event {
        Event {
            op,
            id: id.into(),
            fields: record(fields).into(),
            previous: previous.map(|p| record(p).into()),
            delivery_id: String::new(),
        }
    }

    #[test]
    fn changes_name_each_differing_field_by_dotted_path() {
        let old = record(
            json!({"id": 1, "email": "a@x", "contact": {"phone": "1", "city": "Oslo"}, "gone": true}),
        );
        let new = record(
            json!({"id": 1, "email": "b@x", "contact": {"phone": "1", "city": "Rome"}, "tags": []}),
        );
        let found: Vec<(String, Value)> = changes(&old, &new)
            .into_iter()
            .map(|(path, c)| (path, json!(c)))
            .collect();
        assert_eq!(
            found,
            [
                ("contact.city".into(), json!({"old": "Oslo", "new": "Rome"})),
                ("email".into(), json!({"old": "a@x", "new": "b@x"})),
                ("gone".into(), json!({"old": true})),
                ("tags".into(), json!({"new": []})),
            ]
        );
    }

    #[test]
    fn the_summary_counts_every_event_and_the_limit_keeps_the_first() {
        let events = vec![
            event(Op::Added, "1", json!({"id": 1}), None),
            event(
                Op::Updated,
                "2",
                json!({"id": 2, "a": 2}),
                Some(json!({"id": 2, "a": 1})),
            ),
            event(Op::Deleted, "3", json!({"id": 3}), Some(json!({"id": 3}))),
            event(Op::Added, "4", json!({"id": 4}), None),
        ];
        let plan = summarize(events.clone(), Some(2));
        assert_eq!(
            json!(plan.summary),
            json!({"added": 2, "updated": 1, "deleted": 1, "total": 4})
        );
        assert!(plan.truncated);
        assert_eq!(plan.events.len(), 2);
        assert_eq!(plan.events[0].changes, None);
        assert_eq!(
            json!(plan.events[1].changes),
            json!({"a": {"old": 1, "new": 2}})
        );
        let all = summarize(events, None);
        assert!(!all.truncated && all.events.len() == 4);
    }
}
