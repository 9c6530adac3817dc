//! Expected event envelopes and order-independent comparison of delivered
//! ones: a run promises which changes arrive, not in which order.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::server::event_id;

/// An envelope with an explicit id, for payloads that do not carry the key
/// as `id` (e.g. mapped ones).
pub fn event(op: &str, id: &str, fields: Value, previous: Value) -> Value {
    json!({ "op": op, "id": id, "fields": fields, "previous": previous })
}

pub fn added(fields: Value) -> Value {
    event("added", &id_of(&fields), fields, Value::Null)
}

pub fn updated(fields: Value, previous: Value) -> Value {
    event("updated", &id_of(&fields), fields, previous)
}

/// A deleted event carries the last delivered fields in both places.
pub fn deleted(last: Value) -> Value {
    event("deleted", &id_of(&last), last.clone(), last)
}

/// Events keyed by id; fails on a second event for the same id.
pub fn by_id(events: &[Value]) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for event in events {
        if let Some(first) = map.insert(event_id(event), event.clone()) {
            panic!("two events for id {}:\n{first}\n{event}", event_id(event));
        }
    }
    map
}

/// The ids of `events`, sorted numerically, duplicates kept.
pub fn ids(events: &[Value]) -> Vec<i64> {
    let mut ids: Vec<i64> = events
        .iter()
        .map(|e| {
            event_id(e)
                .parse()
                .unwrap_or_else(|_| panic!("non-numeric id in {e}"))
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Asserts `got` holds exactly the events in `want`, in any order, each once.
pub fn assert_events(got: &[Value], want: &[Value]) {
    let (got_map, want_map) = (by_id(got), by_id(want));
    if got_map != want_map || got.len() != want.len() {
        panic!(
            "delivered events differ\n--- got ({})\n{}\n--- want ({})\n{}",
            got.len(),
            pretty(got),
            want.len(),
            pretty(want)
        );
    }
}

fn pretty(events: &[Value]) -> String {
    let mut lines: Vec<String> = events.iter().map(Value::to_string).collect();
    lines.sort();
    lines.join("\n")
}

fn id_of(fields: &Value) -> String {
    match &fields["id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("fields without an id: {other}"),
    }
}
