//! `{{name}}`: an Ebb transform. It removes one field (`drop_field`) from
//! every event, and drops events whose fields are empty afterwards.
//! Change `apply` to reshape, drop or split events as you need.

use ebb_sdk::{Event, Item, Transform};
use serde::Deserialize;

pub struct Plugin;

/// `config = { … }` of the transform in a sync's `transforms`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    drop_field: String,
}

impl Transform for Plugin {
    type Config = Config;

    fn apply(config: &Config, mut event: Event) -> Item {
        event.fields.remove(&config.drop_field);
        if let Some(previous) = &mut event.previous {
            previous.remove(&config.drop_field);
        }
        if event.fields.is_empty() {
            Item::Drop
        } else {
            Item::Keep(event)
        }
    }
}

ebb_sdk::export_transform!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::Op;
    use ebb_sdk::testing;
    use serde_json::json;

    #[test]
    fn the_field_is_removed_and_empty_events_dropped() {
        let config = json!({"drop_field": "email"});
        let events = vec![
            testing::event(Op::Added, "1", json!({"email": "ada@example.com", "plan": "pro"})),
            testing::event(Op::Added, "2", json!({"email": "grace@example.com"})),
        ];
        let items = testing::apply::<Plugin>(config, events);
        match &items[0] {
            Item::Keep(event) => assert_eq!(event.fields, json!({"plan": "pro"}).as_object().unwrap().clone()),
            other => panic!("expected the event kept, got {other:?}"),
        }
        assert!(matches!(items[1], Item::Drop));
    }
}
