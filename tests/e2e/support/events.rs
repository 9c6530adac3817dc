//! Expected event envelopes and order-independent comparison of delivered
//! ones: a run promises which changes arrive, not in which order.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::server::event_id;

/// An envelope as tests compare it: without its `delivery_id`, which every
/// envelope must carry (32 hex digits, `-N` added for a split); the ids
/// themselves are checked by `delivery_ids.rs`. Anything that is not an
/// envelope (a row error's raw record) passes as it is.
pub fn without_delivery_id(mut event: Value) -> Value {
    if let Some(object) = event.as_object_mut()
        && object.contains_key("op")
    {
        let id = object.remove("delivery_id");
        assert!(
            id.as_ref()
                .and_then(Value::as_str)
                .is_some_and(is_delivery_id),
            "an envelope without a well-formed delivery_id ({id:?}): {event}"
        );
    }
    event
}

/// 32 lowercase hex digits, optionally `-N`.
pub fn is_delivery_id(id: &str) -> bool {
    let (hash, split) = id.split_once('-').unwrap_or((id, "1"));
    hash.len() == 32
        && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && split.parse::<u32>().is_ok_and(|n| n >= 1)
}

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

/// Asserts `got` holds every event in `want` (any order) and nothing else,
/// where the events of the ids in `repeated` arrive exactly twice and all
/// others exactly once: at-least-once delivery whose duplicates are only
/// the ones a test expects (e.g. of batches in flight when a run died).
pub fn assert_events_repeating(got: &[Value], want: &[Value], repeated: &BTreeSet<String>) {
    let want_map = by_id(want);
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for event in got {
        let id = event_id(event);
        match want_map.get(&id) {
            Some(expected) if expected == event => *times.entry(id).or_default() += 1,
            Some(expected) => panic!(
                "event for id {id} differs
--- got
{event}
--- want
{expected}"
            ),
            None => panic!("unexpected event: {event}"),
        }
    }
    let missing: Vec<&String> = want_map
        .keys()
        .filter(|id| !times.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} changes never arrived: {}",
        missing.len(),
        want.len(),
        sample(&missing)
    );
    let wrong: Vec<String> = times
        .iter()
        .filter(|(id, n)| **n != if repeated.contains(*id) { 2 } else { 1 })
        .map(|(id, n)| format!("{id} ×{n}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} ids arrived a wrong number of times ({} were expected twice, the rest once): {}",
        wrong.len(),
        repeated.len(),
        sample(&wrong)
    );
}

/// The first few items, and how many more there are.
pub fn sample<T: std::fmt::Display>(items: &[T]) -> String {
    const SHOWN: usize = 20;
    let mut text: Vec<String> = items.iter().take(SHOWN).map(T::to_string).collect();
    if items.len() > SHOWN {
        text.push(format!("… and {} more", items.len() - SHOWN));
    }
    text.join(", ")
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
