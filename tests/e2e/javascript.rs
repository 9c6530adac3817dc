//! JavaScript transforms (`{ js = "FILE", libraries = {…}, shape = … }`)
//! in real runs: a library imported by name, updates dropped by comparing
//! with `previous`, an exception owed as a row error naming the line, `log`
//! at `-v`, RudderStack's identify shape turned into a Segment `group` call,
//! config mistakes refused by `check`, and `ebb plugin test FILE.js`.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::cmd::run_with_deadline;
use crate::support::config::Config;
use crate::support::events::{added, assert_events, updated};
use crate::support::project::{Project, SYNC};
use crate::support::vendors::segment::Segment;
use crate::support::warehouse::{Warehouse, user};

const UTILS: &str = r#"
export function fromPairs(pairs) {
  const object = {};
  for (const [key, value] of JSON.parse(pairs)) object[key] = value;
  return object;
}
"#;

/// Rebuilds `pairs`, drops updates where email and pairs did not change,
/// and throws for user 3's email, on line 9.
const REBUILD: &str = r#"import { fromPairs } from "warehouseActionsUtils";

export function transformEvent(event, metadata) {
  const pairs = fromPairs(event.fields.pairs);
  const before = event.previous && fromPairs(event.previous.pairs);
  const same = before && JSON.stringify(before) === JSON.stringify(pairs);
  if (event.op === "updated" && same && event.previous.email === event.fields.email) {
    log("unchanged:", metadata(event).key, "in", metadata(event).sync);
    if (event.fields.email.startsWith("bad")) null.boom;
    return null;
  }
  if (event.fields.email === "throw@example.com") throw new Error("no throwing users");
  return { ...event, fields: { ...event.fields, pairs } };
}
"#;

const JS_SYNC: &str = r#"transforms = [
  { js = "transforms/rebuild.js", libraries = { warehouseActionsUtils = "transforms/utils.js" } },
]"#;

fn with_pairs(id: i64, pairs: serde_json::Value) -> serde_json::Value {
    let mut fields = user(id);
    fields["pairs"] = pairs;
    fields
}

fn js_project() -> (Project, Warehouse) {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    wh.exec(r#"UPDATE users SET pairs = '[["country","UK"]]' WHERE id = 1"#);
    project.write("transforms/utils.js", UTILS);
    project.write("transforms/rebuild.js", REBUILD);
    project.write_config(
        &Config::new(&wh)
            .query("SELECT id, email, plan, pairs FROM users ORDER BY id")
            .sync(JS_SYNC)
            .render(),
    );
    (project, wh)
}

#[test]
fn a_javascript_transform_with_a_library_reshapes_drops_and_owes_its_exceptions() {
    let (project, wh) = js_project();
    project.ebb_ok(&["check"]);
    project.run_ok();
    assert_events(
        &project.take_delivered(),
        &[
            added(with_pairs(1, json!({"country": "UK"}))),
            added(with_pairs(2, json!({}))),
            added(with_pairs(3, json!({}))),
        ],
    );

    // `plan` alone changed for 1: dropped, and its log line shows at -v,
    // tagged with the transform. 2 changed its pairs: sent, with
    // `previous` as delivered (raw, since the model's row is what is kept).
    // 3 throws: a row error with the message and the line.
    wh.exec("UPDATE users SET plan = 'team' WHERE id = 1");
    wh.exec(r#"UPDATE users SET pairs = '[["seats","4"]]' WHERE id = 2"#);
    wh.exec("UPDATE users SET email = 'throw@example.com' WHERE id = 3");
    let out = project.ebb(&["-v", "run", SYNC]);
    assert_eq!(out.code, Some(2), "partial: {}", out.text());
    assert!(
        out.stderr.contains("unchanged: 1 in users_out")
            && out
                .stderr
                .contains("transform 1 (transforms/rebuild.js) of sync `users_out`"),
        "{}",
        out.stderr
    );
    let mut before_2 = user(2);
    before_2["pairs"] = json!("[]");
    assert_events(
        &project.take_delivered(),
        &[updated(with_pairs(2, json!({"seats": "4"})), before_2)],
    );
    let owed = project.errors();
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert_eq!(owed[0]["key"], "3");
    let error = owed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("Error: no throwing users (transforms/rebuild.js:12:"),
        "{error}"
    );

    // An exception inside a library names the library's file; fixing the
    // data lets the owed row go.
    wh.exec("UPDATE users SET email = 'user3@example.com', pairs = 'not json' WHERE id = 3");
    project.run();
    let owed = project.errors();
    let error = owed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("SyntaxError") && error.contains("(transforms/utils.js:4:"),
        "{error}"
    );
    wh.exec(r#"UPDATE users SET pairs = '[]' WHERE id = 3"#);
    project.run_ok();
    assert!(project.errors().is_empty());
}

#[test]
fn javascript_mistakes_in_the_config_are_refused_naming_the_entry() {
    let (project, wh) = js_project();
    let config = |transforms: &str| {
        Config::new(&wh)
            .query("SELECT id, email, plan, pairs FROM users ORDER BY id")
            .sync(transforms)
            .render()
    };
    for (transforms, says) in [
        (
            r#"transforms = [{ js = "transforms/missing.js" }]"#,
            "syncs.users_out.transforms[0].js",
        ),
        (
            r#"transforms = [{ js = "transforms/rebuild.js", libraries = { warehouseActionsUtils = "nope.js" } }]"#,
            "transforms[0].libraries.warehouseActionsUtils",
        ),
        (
            r#"transforms = [{ js = "transforms/rebuild.js", shape = "segment" }]"#,
            "unknown shape `segment`",
        ),
        (
            r#"transforms = [{ js = "transforms/rebuild.js", plugin = "ebb:compare-truths" }]"#,
            "set `plugin` or `js`, not both",
        ),
        (
            r#"transforms = [{ plugin = "ebb:compare-truths", shape = "ebb" }]"#,
            "only a JavaScript transform",
        ),
    ] {
        project.write_config(&config(transforms));
        let out = project.ebb(&["check"]);
        assert_ne!(out.code, Some(0), "{transforms}: {}", out.text());
        assert!(out.text().contains(says), "{transforms}: {}", out.text());
    }

    // A syntax error stops `check` and the run before anything is read,
    // naming the file and line; nothing is owed or committed.
    project.write(
        "transforms/rebuild.js",
        "export function transformEvent(e) {\n  return e +;\n}\n",
    );
    project.write_config(&config(
        r#"transforms = [{ js = "transforms/rebuild.js" }]"#,
    ));
    for args in [&["check"][..], &["run", SYNC]] {
        let out = project.ebb(args);
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.text());
        assert!(
            out.stderr.contains(
                "transform 1 (transforms/rebuild.js) of sync `users_out`: transforms/rebuild.js does not load: SyntaxError"
            ) && out.stderr.contains("(transforms/rebuild.js:2:"),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert!(project.errors().is_empty());
}

/// A RudderStack transformation: the identify call comes in, a `group`
/// call with `groupId`, `context.externalId` and `integrations` goes out.
const TO_GROUP: &str = r#"export function transformEvent(event, metadata) {
  const meta = metadata(event);
  return {
    type: "group",
    userId: event.userId,
    groupId: event.traits.plan,
    traits: { email: event.traits.email, previousPlan: meta.previous && meta.previous.plan },
    context: { ...event.context, externalId: [{ id: event.userId, type: "CONTACT", identifierType: "id" }] },
    integrations: { All: false, Salesforce: true },
    messageId: event.messageId,
  };
}
"#;

#[test]
fn a_rudderstack_transformation_sends_a_group_call_through_segment() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    let fake = Segment::start("wk");
    project.write("transforms/group.js", TO_GROUP);
    project.write_config(
        &Config::new(&wh)
            .vendor(
                "segment",
                &fake.http.host(),
                &format!(r#"write_key = "wk", endpoint = "{}""#, fake.http.endpoint()),
            )
            .sync(r#"action = "identify""#)
            .sync(r#"transforms = [{ js = "transforms/group.js", shape = "rudderstack" }]"#)
            .render(),
    );
    project.run_ok();
    wh.exec("UPDATE users SET plan = 'team' WHERE id = 1");
    project.run_ok();
    let calls = fake.calls();
    assert_eq!(calls.len(), 3, "{calls:#?}");
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
    let last = &calls[2];
    let message_id = last["messageId"].as_str().unwrap();
    assert_eq!(message_id.len(), 32, "the delivery id: {last}");
    assert_eq!(
        last,
        &json!({
            "type": "group",
            "userId": "1",
            "groupId": "team",
            "traits": {"email": "user1@example.com", "previousPlan": "free"},
            "context": {
                "sources": {"name": "users_out"},
                "externalId": [{"id": "1", "type": "CONTACT", "identifierType": "id"}],
            },
            "integrations": {"All": false, "Salesforce": true},
            "messageId": message_id,
        })
    );
}

#[test]
fn plugin_test_runs_a_javascript_file_over_events() {
    let project = Project::new();
    project.write("transforms/utils.js", UTILS);
    project.write("transforms/rebuild.js", REBUILD);
    project.write(
        "events.jsonl",
        concat!(
            r#"{"op":"added","id":"1","fields":{"email":"a@x","pairs":"[[\"k\",\"v\"]]"},"previous":null}"#,
            "\n",
            r#"{"op":"updated","id":"2","fields":{"email":"b@x","pairs":"[]"},"previous":{"email":"b@x","pairs":"[]"}}"#,
            "\n",
            r#"{"op":"added","id":"3","fields":{"email":"throw@example.com","pairs":"[]"},"previous":null}"#,
            "\n",
        ),
    );
    // `ebb plugin` reads no ebb.toml: run it as a user would, in the folder.
    let mut command = Command::new(env!("CARGO_BIN_EXE_ebb"));
    command
        .current_dir(project.root())
        .args([
            "plugin",
            "test",
            "transforms/rebuild.js",
            "--events",
            "events.jsonl",
            "--library",
            "warehouseActionsUtils=transforms/utils.js",
        ])
        .env_remove("RUST_LOG")
        .env_remove("EBB_CONFIG")
        .env("NO_COLOR", "1");
    let out = run_with_deadline(command, Duration::from_secs(120));
    assert_eq!(out.code, Some(1), "one event fails: {}", out.text());
    for line in [
        r#"event 1 (added): kept"#,
        r#""fields":{"email":"a@x","pairs":{"k":"v"}}"#,
        "event 2 (updated): dropped",
        "event 3 (added): failed: Error: no throwing users (transforms/rebuild.js:12:",
        "1 of 3 event(s) not accepted",
    ] {
        assert!(out.stdout.contains(line), "{line}: {}", out.text());
    }
    assert!(
        out.stderr.contains("unchanged: 2 in test"),
        "logs show without -v: {}",
        out.stderr
    );
}
