//! The transformation contract, run natively over the same engine.

use super::*;
use ebb_sdk::log::Level;
use ebb_sdk::testing;
use serde_json::{Value, json};

fn event(op: wit::Op, id: &str, fields: Value, previous: Option<Value>) -> wit::Event {
    wit::Event {
        op,
        id: id.into(),
        fields: fields.to_string().into_bytes(),
        previous: previous.map(|p| p.to_string().into_bytes()),
        delivery_id: format!("d-{id}"),
    }
}

fn config(source: &str, shape: &str, libraries: Value) -> String {
    json!({
        "file": "transforms/t.js",
        "source": source,
        "libraries": libraries,
        "shape": shape,
        "sync": "users_to_crm",
        "destination": "crm",
    })
    .to_string()
}

fn fields(event: &wit::Event) -> Value {
    serde_json::from_slice(&event.fields).unwrap()
}

fn kept(item: &Item) -> &wit::Event {
    match item {
        Item::Keep(event) => event,
        other => panic!("expected a kept event, got {other:?}"),
    }
}

fn failed(item: &Item) -> &str {
    match item {
        Item::Fail(error) => &error.message,
        other => panic!("expected a row error, got {other:?}"),
    }
}

/// The docs' example: rebuild an object from pairs, drop unchanged updates.
const REBUILD: &str = r#"
import { fromPairs } from 'utils';

export function transformEvent(event, metadata) {
  const attributes = fromPairs(JSON.parse(event.fields.pairs));
  const before = event.previous && event.previous.attributes;
  if (event.op === "updated" && JSON.stringify(before) === JSON.stringify(attributes)) {
    return null;
  }
  delete event.fields.pairs;
  event.fields.attributes = attributes;
  return event;
}
"#;

const UTILS: &str = r#"
export function fromPairs(pairs) {
  const out = {};
  for (const [k, v] of pairs) out[k] = v;
  return out;
}
"#;

#[test]
fn rebuilds_from_pairs_and_drops_unchanged_updates() {
    let libs = json!({"utils": {"file": "transforms/utils.js", "source": UTILS}});
    let items = apply(
        &config(REBUILD, "ebb", libs),
        vec![
            event(
                wit::Op::Added,
                "1",
                json!({"email": "a@x", "pairs": "[[\"plan\",\"pro\"]]"}),
                None,
            ),
            event(
                wit::Op::Updated,
                "2",
                json!({"pairs": "[[\"plan\",\"pro\"]]"}),
                Some(json!({"attributes": {"plan": "pro"}})),
            ),
            event(
                wit::Op::Updated,
                "3",
                json!({"pairs": "[[\"plan\",\"max\"]]"}),
                Some(json!({"attributes": {"plan": "pro"}})),
            ),
        ],
    );
    assert_eq!(items.len(), 3);
    let first = kept(&items[0]);
    assert_eq!(
        fields(first),
        json!({"email": "a@x", "attributes": {"plan": "pro"}})
    );
    assert_eq!(
        (first.id.as_str(), first.delivery_id.as_str()),
        ("1", "d-1")
    );
    assert!(matches!(items[1], Item::Drop));
    let third = kept(&items[2]);
    assert_eq!(fields(third), json!({"attributes": {"plan": "max"}}));
    assert_eq!(third.op, wit::Op::Updated);
    assert_eq!(
        serde_json::from_slice::<Value>(third.previous.as_ref().unwrap()).unwrap(),
        json!({"attributes": {"plan": "pro"}})
    );
}

#[test]
fn rudderstack_shape_sees_an_identify_call_and_returns_the_call_to_send() {
    let source = r#"
export function transformEvent(event, metadata) {
  // A copy finds its metadata by messageId, as in RudderStack.
  const meta = metadata({ ...event });
  if (metadata({ messageId: "elsewhere" }).key !== undefined) throw new Error("unknown event has metadata");
  if (event.type !== "identify" || event.userId !== meta.key) throw new Error("not an identify");
  return {
    type: "group",
    groupId: event.traits.account,
    traits: { plan: event.traits.plan, was: meta.previous && meta.previous.plan },
    context: { ...event.context, externalId: [{ id: event.userId, type: "ACCOUNT" }] },
    integrations: { All: false, Salesforce: true },
    messageId: event.messageId,
    op: meta.op,
    sync: meta.sync,
    destination: meta.destination,
  };
}
"#;
    let items = apply(
        &config(source, "rudderstack", json!({})),
        vec![event(
            wit::Op::Updated,
            "7",
            json!({"account": "acme", "plan": "pro"}),
            Some(json!({"account": "acme", "plan": "free"})),
        )],
    );
    let sent = kept(&items[0]);
    assert_eq!(
        fields(sent),
        json!({
            "type": "group",
            "groupId": "acme",
            "traits": {"plan": "pro", "was": "free"},
            "context": {"sources": {"name": "users_to_crm"}, "externalId": [{"id": "7", "type": "ACCOUNT"}]},
            "integrations": {"All": false, "Salesforce": true},
            "messageId": "d-7",
            "op": "updated",
            "sync": "users_to_crm",
            "destination": "crm",
        })
    );
    assert_eq!(sent.op, wit::Op::Updated);
    assert_eq!(sent.id, "7");
    assert_eq!(
        sent.previous.as_deref(),
        Some(br#"{"account":"acme","plan":"free"}"#.as_slice())
    );
}

#[test]
fn an_exception_is_a_row_error_with_the_message_and_the_line() {
    let source = "export function transformEvent(event) {\n  if (event.id === \"2\") {\n    return event.fields.missing.deeper;\n  }\n  return event;\n}\n";
    let items = apply(
        &config(source, "ebb", json!({})),
        vec![
            event(wit::Op::Added, "1", json!({}), None),
            event(wit::Op::Added, "2", json!({}), None),
        ],
    );
    kept(&items[0]);
    let message = failed(&items[1]);
    assert!(message.starts_with("TypeError: "), "{message}");
    assert!(message.contains("(transforms/t.js:3"), "{message}");
}

#[test]
fn an_exception_in_a_library_names_the_library_file() {
    let libs = json!({"lib": {"file": "transforms/lib.js", "source": "export function boom() {\n  throw new RangeError('out of range');\n}\n"}});
    let source =
        "import { boom } from 'lib';\nexport function transformEvent(event) { return boom(); }\n";
    let items = apply(
        &config(source, "ebb", libs),
        vec![event(wit::Op::Added, "1", json!({}), None)],
    );
    assert_eq!(
        failed(&items[0]),
        "RangeError: out of range (transforms/lib.js:2:13)"
    );
}

#[test]
fn a_return_of_the_wrong_type_is_a_row_error() {
    let source = r#"
export function transformEvent(event) {
  if (event.id === "1") return 42;
  if (event.id === "2") return { ...event, fields: "nope" };
  if (event.id === "3") return { ...event, op: "upserted" };
  return [event, { ...event, id: "4b", fields: { n: 1n } }];
}
"#;
    let items = apply(
        &config(source, "ebb", json!({})),
        ["1", "2", "3", "4"]
            .map(|id| event(wit::Op::Added, id, json!({}), None))
            .into(),
    );
    assert!(
        failed(&items[0])
            .starts_with("TypeError: transformEvent returned number where an event is expected"),
        "{}",
        failed(&items[0])
    );
    assert!(failed(&items[1]).contains("`fields` must be an object"));
    assert!(
        failed(&items[2]).contains("whose op is \"upserted\""),
        "{}",
        failed(&items[2])
    );
    assert!(failed(&items[3]).contains("cannot be written as JSON"));
}

#[test]
fn an_array_splits_and_null_entries_are_skipped() {
    let source = r#"
export function transformEvent(event) {
  return [null, { ...event, id: event.id + "-a" }, { ...event, id: event.id + "-b", op: "deleted" }];
}
"#;
    let items = apply(
        &config(source, "ebb", json!({})),
        vec![event(wit::Op::Added, "1", json!({"x": 1}), None)],
    );
    match &items[0] {
        Item::Split(events) => {
            let ids: Vec<_> = events.iter().map(|e| (e.id.as_str(), e.op)).collect();
            assert_eq!(ids, [("1-a", wit::Op::Added), ("1-b", wit::Op::Deleted)]);
        }
        other => panic!("expected a split, got {other:?}"),
    }
}

#[test]
fn transform_batch_sees_the_whole_batch_and_maps_results_back() {
    let source = r#"
export function transformBatch(events, metadata) {
  log("batch of", events.length, { first: metadata(events[0]).key });
  return events
    .filter((e) => e.userId !== "2")
    .map((e) => ({ ...e, traits: { ...e.traits, rank: events.length } }));
}
"#;
    testing::take_logs();
    let items = apply(
        &config(source, "rudderstack", json!({})),
        ["1", "2", "3"]
            .map(|id| event(wit::Op::Added, id, json!({"n": id}), None))
            .into(),
    );
    assert_eq!(
        fields(kept(&items[0]))["traits"],
        json!({"n": "1", "rank": 3})
    );
    assert!(matches!(items[1], Item::Drop));
    assert_eq!(kept(&items[2]).id, "3");
    let logs = testing::take_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].level, Level::Info);
    assert_eq!(logs[0].message, r#"batch of 3 {"first":"1"}"#);
}

#[test]
fn transform_batch_returning_a_stranger_fails_the_batch() {
    let source =
        "export function transformBatch(events) { return [{ userId: 'x', messageId: 'nobody' }]; }";
    let items = apply(
        &config(source, "rudderstack", json!({})),
        vec![event(wit::Op::Added, "1", json!({}), None)],
    );
    assert!(failed(&items[0]).contains("none of its inputs"));
}

#[test]
fn an_async_transformation_is_awaited() {
    let source = r#"
export async function transformEvent(event) {
  const n = await Promise.resolve(2);
  if (event.id === "2") throw new Error("async failure");
  event.fields.n = n;
  return event;
}
"#;
    let items = apply(
        &config(source, "ebb", json!({})),
        ["1", "2"]
            .map(|id| event(wit::Op::Added, id, json!({}), None))
            .into(),
    );
    assert_eq!(fields(kept(&items[0])), json!({"n": 2}));
    assert!(failed(&items[1]).starts_with("Error: async failure (transforms/t.js:4"));
}

#[test]
fn a_syntax_error_fails_every_event_naming_the_file_and_line() {
    let items = apply(
        &config(
            "export function transformEvent(event) {\n  return event +;\n}\n",
            "ebb",
            json!({}),
        ),
        ["1", "2"]
            .map(|id| event(wit::Op::Added, id, json!({}), None))
            .into(),
    );
    for item in &items {
        let message = failed(item);
        assert!(
            message.starts_with("transforms/t.js does not load: SyntaxError"),
            "{message}"
        );
        assert!(message.contains("transforms/t.js:2"), "{message}");
    }
}

#[test]
fn a_module_without_the_functions_or_with_a_missing_library_says_so() {
    let none = apply(
        &config("export const x = 1;", "ebb", json!({})),
        vec![event(wit::Op::Added, "1", json!({}), None)],
    );
    assert!(failed(&none[0]).contains("exports neither transformEvent nor transformBatch"));
    let missing = apply(
        &config(
            "import { a } from 'nowhere';\nexport function transformEvent(e) { return e; }",
            "ebb",
            json!({}),
        ),
        vec![event(wit::Op::Added, "1", json!({}), None)],
    );
    assert!(
        failed(&missing[0]).contains("nowhere"),
        "{}",
        failed(&missing[0])
    );
}

#[test]
fn the_engine_is_built_once_per_config() {
    let source =
        "let calls = 0;\nexport function transformEvent(e) { e.fields.calls = ++calls; return e; }";
    let config = config(source, "ebb", json!({}));
    for expected in 1..=3 {
        let items = apply(&config, vec![event(wit::Op::Added, "1", json!({}), None)]);
        assert_eq!(fields(kept(&items[0]))["calls"], expected);
    }
}

#[test]
fn a_probe_only_compiles() {
    let probe = |source: &str| {
        let mut config: Value = serde_json::from_str(&config(source, "ebb", json!({}))).unwrap();
        config["probe"] = json!(true);
        apply(
            &config.to_string(),
            vec![event(wit::Op::Added, "1", json!({}), None)],
        )
    };
    let fine = probe("export function transformEvent(e) { throw new Error('never called'); }");
    assert!(matches!(fine[..], [Item::Drop]));
    let broken = probe("export function transformEvent(e) {\n  return e +;\n}");
    assert!(failed(&broken[0]).starts_with("transforms/t.js does not load: SyntaxError"));
}

#[test]
fn running_out_of_heap_fails_only_that_row() {
    let source = r#"
export function transformEvent(event) {
  if (event.id === "2") {
    const hog = [];
    while (true) hog.push(new Array(10000).fill(event.id));
  }
  return event;
}
"#;
    let mut config: Value = serde_json::from_str(&config(source, "ebb", json!({}))).unwrap();
    config["heap_bytes"] = json!(8 << 20);
    let items = apply(
        &config.to_string(),
        ["1", "2", "3"]
            .map(|id| event(wit::Op::Added, id, json!({}), None))
            .into(),
    );
    kept(&items[0]);
    // An `InternalError`, or `null` when not even that fits.
    assert!(
        failed(&items[1]).contains("out of memory"),
        "{}",
        failed(&items[1])
    );
    kept(&items[2]);
}
