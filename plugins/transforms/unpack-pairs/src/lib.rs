//! `ebb:unpack-pairs`: turns a field holding `[[key, value], …]` (or
//! `[{"key": …, "value": …}, …]`) into an object. Warehouses often store sparse attributes as key/value pairs (or as
//! text holding them, where there is no JSON type); business tools want an
//! object.
//!
//! Config: `field` (default `"pairs"`) names the field; `into` says where the
//! object goes. Without `into` it replaces the field in place; with
//! `into = ""` its keys are merged into the event's fields, where existing
//! columns win over pairs of the same name; with `into = "name"` it is stored
//! under `name`. In both `into` forms the pairs field itself is removed.
//! `key` and `value` (default `"key"` and `"value"`) name the members of a
//! pair written as an object.
//!
//! Pairs whose value is `null` or `""` are skipped; a later pair overrides an
//! earlier one with the same key. A value that already is an object is taken
//! as unpacked (so applying this twice changes nothing), and `null` or `""`
//! count as no pairs. An event without the field is kept unchanged. Both
//! `fields` and `previous` are unpacked, so a later `compare-truths` compares
//! like with like.
//!
//! Records are read as the host sent them ([`RawEvent`]): only the field
//! itself is parsed, and the rest of the record is written back as it came.

use std::borrow::Cow;
use std::fmt;

use ebb_sdk::{Error, Event, Item, RawEvent, Transform};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Map, Value};

/// The transform; public so it can also be called natively (the host's
/// benchmark does).
pub struct UnpackPairs;

/// Its settings, as described above.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_field")]
    field: String,
    into: Option<String>,
    #[serde(default = "default_key")]
    key: String,
    #[serde(default = "default_value")]
    value: String,
}

fn default_field() -> String {
    "pairs".to_owned()
}

fn default_key() -> String {
    "key".to_owned()
}

fn default_value() -> String {
    "value".to_owned()
}

impl Transform for UnpackPairs {
    type Config = Config;

    /// The same unpacking as the component's, through the raw path.
    fn apply(config: &Config, event: Event) -> Item {
        unpack_event(config, event.into()).decode()
    }

    fn apply_raw(config: &Config, batch: Vec<RawEvent>) -> Vec<Item<RawEvent>> {
        batch
            .into_iter()
            .map(|event| unpack_event(config, event))
            .collect()
    }
}

fn unpack_event(config: &Config, mut event: RawEvent) -> Item<RawEvent> {
    let field = &config.field;
    match unpack(config, &event.fields) {
        Ok(Some(fields)) => event.fields = fields,
        Ok(None) => {}
        Err(problem) => {
            return Item::Fail(Error::rejected(format!(
                "event {}: field `{field}` {problem}",
                event.id
            )));
        }
    }
    if let Some(previous) = &event.previous {
        match unpack(config, previous) {
            Ok(Some(previous)) => event.previous = Some(previous),
            Ok(None) => {}
            Err(problem) => {
                return Item::Fail(Error::rejected(format!(
                    "event {}: previous value of field `{field}` {problem}",
                    event.id
                )));
            }
        }
    }
    Item::Keep(event)
}

/// The record with its field unpacked, or `None` when it has no such field.
fn unpack(config: &Config, record: &RawValue) -> Result<Option<Box<RawValue>>, String> {
    let Entries(mut entries) = serde_json::from_str(record.get())
        .map_err(|e| format!("cannot be read: the record is not a JSON object ({e})"))?;
    let Some(at) = entries.iter().position(|(key, _)| *key == config.field) else {
        return Ok(None);
    };
    let (field, value) = entries.remove(at);
    let value: Value =
        serde_json::from_str(value.get()).map_err(|e| format!("cannot be read: {e}"))?;
    let object = to_object(config, &value)?;
    match config.into.as_deref() {
        None => entries.insert(at, (field, Cow::Owned(raw(&object)?))),
        Some("") => {
            for (key, value) in &object {
                if !entries.iter().any(|(k, _)| k == key) {
                    entries.push((key.clone(), Cow::Owned(raw(value)?)));
                }
            }
        }
        Some(into) => {
            let object = Cow::Owned(raw(&object)?);
            match entries.iter_mut().find(|(key, _)| key == into) {
                Some((_, value)) => *value = object,
                None => entries.push((into.to_owned(), object)),
            }
        }
    }
    raw(&Entries(entries)).map(Some)
}

fn raw<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, String> {
    to_raw_value(value).map_err(|e| format!("cannot be written: {e}"))
}

/// A record's top-level fields in order, their values still JSON text:
/// what is not unpacked is neither parsed nor written anew.
struct Entries<'a>(Vec<(String, Cow<'a, RawValue>)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;

        impl<'de> Visitor<'de> for Fields {
            type Value = Entries<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Entries<'de>, M::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((key, value)) = map.next_entry::<String, &RawValue>()? {
                    entries.push((key, Cow::Borrowed(value)));
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(Fields)
    }
}

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

fn to_object(config: &Config, value: &Value) -> Result<Map<String, Value>, String> {
    let parsed;
    let pairs = match value {
        Value::Null => return Ok(Map::new()),
        Value::String(text) if text.trim().is_empty() => return Ok(Map::new()),
        Value::Object(object) => {
            let mut object = object.clone();
            object.retain(|_, value| !is_unset(value));
            return Ok(object);
        }
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| format!("holds text that is not JSON ({e})"))?;
            parsed
                .as_array()
                .ok_or("holds JSON text that is not a list of [key, value] pairs")?
        }
        Value::Array(pairs) => pairs,
        _ => return Err("is neither a list of [key, value] pairs nor text holding one".into()),
    };
    let mut object = Map::new();
    for (index, pair) in pairs.iter().enumerate() {
        let (key, value) = match pair {
            Value::Array(items) => match items.as_slice() {
                [key, value] => (key, value),
                _ => (&Value::Null, &Value::Null),
            },
            Value::Object(entry) => (
                entry.get(&config.key).unwrap_or(&Value::Null),
                entry.get(&config.value).unwrap_or(&Value::Null),
            ),
            _ => (&Value::Null, &Value::Null),
        };
        let key = match key {
            Value::String(key) => key.clone(),
            Value::Number(key) => key.to_string(),
            _ => {
                return Err(format!(
                    "has entry {index} that is neither a [key, value] pair nor an object with `{}` and `{}`, with a text key: {pair}",
                    config.key, config.value
                ));
            }
        };
        if !is_unset(value) {
            object.insert(key, value.clone());
        }
    }
    Ok(object)
}

fn is_unset(value: &Value) -> bool {
    value.is_null() || value.as_str() == Some("")
}

// Only the component exports the world: natively (the host's benchmark
// compiles this file as a module) there is nothing to export to.
#[cfg(target_arch = "wasm32")]
ebb_sdk::export_transform!(UnpackPairs);

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_sdk::{Op, testing};
    use serde_json::json;

    fn run(config: Value, fields: Value, previous: Option<Value>) -> Item {
        let config: Config = serde_json::from_value(config).unwrap();
        let mut event = testing::event(Op::Updated, "42", fields);
        event.previous = previous.map(|value| value.as_object().unwrap().clone());
        UnpackPairs::apply(&config, event)
    }

    fn kept(item: Item) -> (Value, Option<Value>) {
        match item {
            Item::Keep(event) => (
                Value::Object(event.fields),
                event.previous.map(Value::Object),
            ),
            other => panic!("expected keep, got {other:?}"),
        }
    }

    #[test]
    fn replaces_the_field_skipping_empty_values() {
        let fields = json!({"id": 1, "pairs": [["plan", "pro"], ["seats", 3], ["gone", null], ["blank", ""]], "z": 0});
        let (fields, _) = kept(run(json!({}), fields, None));
        assert_eq!(
            fields,
            json!({"id": 1, "pairs": {"plan": "pro", "seats": 3}, "z": 0})
        );
        assert_eq!(
            fields.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["id", "pairs", "z"]
        );
    }

    #[test]
    fn leaves_the_rest_of_the_record_as_it_came() {
        let config: Config = serde_json::from_value(json!({})).unwrap();
        let fields = r#"{"n":1.50,"s":"\u00e9","pairs":[["a",1]],"z":[ 1 ]}"#;
        let mut event = RawEvent::from(testing::event(Op::Added, "1", json!({})));
        event.fields = RawValue::from_string(fields.to_owned()).unwrap();
        let Item::Keep(event) = unpack_event(&config, event) else {
            panic!("expected keep");
        };
        assert_eq!(
            event.fields.get(),
            r#"{"n":1.50,"s":"\u00e9","pairs":{"a":1},"z":[ 1 ]}"#
        );
    }

    #[test]
    fn reads_pairs_from_text_and_unpacks_previous_too() {
        let fields = json!({"attrs": r#"[["a", 1], ["a", 2]]"#});
        let previous = json!({"attrs": [["a", 1]]});
        let (fields, previous) = kept(run(json!({"field": "attrs"}), fields, Some(previous)));
        assert_eq!(fields, json!({"attrs": {"a": 2}}));
        assert_eq!(previous, Some(json!({"attrs": {"a": 1}})));
    }

    #[test]
    fn reads_pairs_written_as_objects_with_configurable_names() {
        let fields = json!({"pairs": [{"key": "plan", "value": "pro"}, {"key": "seats"}]});
        let (fields, _) = kept(run(json!({}), fields, None));
        assert_eq!(fields, json!({"pairs": {"plan": "pro"}}));
        let fields = json!({"pairs": r#"[{"name": "plan", "v": "pro"}]"#});
        let (fields, _) = kept(run(json!({"key": "name", "value": "v"}), fields, None));
        assert_eq!(fields, json!({"pairs": {"plan": "pro"}}));
    }

    #[test]
    fn merges_without_overriding_columns() {
        let fields = json!({"email": "a@x", "pairs": [["email", "b@x"], ["plan", "pro"]]});
        let (fields, _) = kept(run(json!({"into": ""}), fields, None));
        assert_eq!(fields, json!({"email": "a@x", "plan": "pro"}));
    }

    #[test]
    fn stores_under_another_name() {
        let fields = json!({"pairs": [["plan", "pro"]]});
        let (fields, _) = kept(run(json!({"into": "traits"}), fields, None));
        assert_eq!(fields, json!({"traits": {"plan": "pro"}}));
    }

    #[test]
    fn missing_empty_and_unpacked_fields_are_fine() {
        assert_eq!(
            kept(run(json!({}), json!({"a": 1}), None)).0,
            json!({"a": 1})
        );
        assert_eq!(
            kept(run(json!({}), json!({"pairs": null}), None)).0,
            json!({"pairs": {}})
        );
        assert_eq!(
            kept(run(json!({}), json!({"pairs": ""}), None)).0,
            json!({"pairs": {}})
        );
        let unpacked = json!({"pairs": {"plan": "pro"}});
        assert_eq!(kept(run(json!({}), unpacked.clone(), None)).0, unpacked);
    }

    #[test]
    fn malformed_values_fail_naming_event_and_field() {
        let fail = |fields: Value, previous: Option<Value>| match run(json!({}), fields, previous) {
            Item::Fail(error) => error.message,
            other => panic!("expected fail, got {other:?}"),
        };
        assert_eq!(
            fail(json!({"pairs": [["a"]]}), None),
            r#"event 42: field `pairs` has entry 0 that is neither a [key, value] pair nor an object with `key` and `value`, with a text key: ["a"]"#
        );
        assert!(
            fail(json!({"pairs": "[[1,"}), None)
                .starts_with("event 42: field `pairs` holds text that is not JSON")
        );
        assert_eq!(
            fail(json!({"pairs": 5}), None),
            "event 42: field `pairs` is neither a list of [key, value] pairs nor text holding one"
        );
        assert!(
            fail(json!({}), Some(json!({"pairs": "{}"})))
                .starts_with("event 42: previous value of field `pairs` holds JSON text")
        );
    }
}
