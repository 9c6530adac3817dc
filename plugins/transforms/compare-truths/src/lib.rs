//! `ebb:compare-truths`: drops an `updated` event when the fields that
//! matter did not change between `previous` (what Ebb last delivered) and
//! `fields` (the new truth), so a destination is not sent updates that only
//! touched columns it ignores, such as `updated_at`.
//!
//! Config: `fields`, a list of names or dot paths into nested objects
//! (`"address.city"`); absent or empty compares every field. A path missing
//! on both sides counts as equal. Numbers compare as written, so `1` and
//! `1.0` differ. Every other event is kept unchanged.

use ebb_sdk::{Event, Item, Op, RawEvent, Record, Transform};
use serde::Deserialize;
use serde_json::Value;

/// The transform; public so it can also be called natively (the host's
/// benchmark does).
pub struct CompareTruths;

/// Its settings, as described above.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    fields: Vec<String>,
}

impl Transform for CompareTruths {
    type Config = Config;

    fn apply(config: &Config, event: Event) -> Item {
        if unchanged(config, &event) {
            Item::Drop
        } else {
            Item::Keep(event)
        }
    }

    /// Only an update with a previous record can be dropped: every other
    /// event is kept as it came, unparsed.
    fn apply_raw(config: &Config, batch: Vec<RawEvent>) -> Vec<Item<RawEvent>> {
        let item = |event: RawEvent| {
            if event.op != Op::Updated || event.previous.is_none() {
                return Item::Keep(event);
            }
            match event.clone().decode() {
                Ok(decoded) if unchanged(config, &decoded) => Item::Drop,
                Ok(_) => Item::Keep(event),
                Err(error) => Item::Fail(error),
            }
        };
        batch.into_iter().map(item).collect()
    }
}

fn unchanged(config: &Config, event: &Event) -> bool {
    event.op == Op::Updated
        && event
            .previous
            .as_ref()
            .is_some_and(|previous| same(config, &event.fields, previous))
}

fn same(config: &Config, now: &Record, before: &Record) -> bool {
    if config.fields.is_empty() {
        return now == before;
    }
    config
        .fields
        .iter()
        .all(|path| lookup(now, path) == lookup(before, path))
}

/// The value at a dot path such as `address.city`.
fn lookup<'a>(record: &'a Record, path: &str) -> Option<&'a Value> {
    let mut keys = path.split('.');
    let first = record.get(keys.next()?)?;
    keys.try_fold(first, |value, key| value.get(key))
}

// Only the component exports the world: natively (the host's benchmark
// compiles this file as a module) there is nothing to export to.
#[cfg(target_arch = "wasm32")]
ebb_sdk::export_transform!(CompareTruths);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::testing;
    use serde_json::json;

    /// Through the export glue (`apply_raw`), and through `apply`: both
    /// must agree.
    fn kept(config: Value, op: Op, fields: Value, previous: Option<Value>) -> bool {
        let mut event = testing::event(op, "1", fields);
        event.previous = previous.map(|value| value.as_object().unwrap().clone());
        let raw = match &testing::apply::<CompareTruths>(config.clone(), vec![event.clone()])[..] {
            [Item::Keep(kept)] => {
                assert_eq!(kept, &event);
                true
            }
            [Item::Drop] => false,
            other => panic!("unexpected {other:?}"),
        };
        let config: Config = serde_json::from_value(config).unwrap();
        let decoded = matches!(CompareTruths::apply(&config, event), Item::Keep(_));
        assert_eq!(raw, decoded);
        raw
    }

    #[test]
    fn drops_updates_equal_on_every_field_by_default() {
        let same = json!({"a": 1, "b": {"c": [1, 2]}});
        let reordered = json!({"b": {"c": [1, 2]}, "a": 1});
        assert!(!kept(json!({}), Op::Updated, same.clone(), Some(reordered)));
        assert!(kept(
            json!({}),
            Op::Updated,
            same.clone(),
            Some(json!({"a": 2, "b": {"c": [1, 2]}}))
        ));
        assert!(kept(json!({}), Op::Updated, same, None));
    }

    #[test]
    fn compares_only_the_chosen_paths() {
        let config = json!({"fields": ["email", "address.city", "missing.x"]});
        let now = json!({"email": "a@x", "address": {"city": "Oslo", "zip": "1"}, "updated_at": 2});
        let before =
            json!({"email": "a@x", "address": {"city": "Oslo", "zip": "2"}, "updated_at": 1});
        assert!(!kept(
            config.clone(),
            Op::Updated,
            now.clone(),
            Some(before)
        ));
        let moved = json!({"email": "a@x", "address": {"city": "Bergen"}});
        assert!(kept(config, Op::Updated, now, Some(moved)));
    }

    #[test]
    fn keeps_other_ops() {
        let same = json!({"a": 1});
        assert!(kept(json!({}), Op::Added, same.clone(), Some(same.clone())));
        assert!(kept(json!({}), Op::Deleted, same.clone(), Some(same)));
    }
}
