//! The plugin engine against real components: the first-party plugins (as
//! checked in) and the tests' fixtures (`ebb_fixtures`).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ebb::event::{Event, Fields, Op};
use ebb::plugin::{
    BudgetFor, CallError, Engine, EngineOptions, ErrorKind, Grants, Item, Limits, Outcome,
    PluginError, PluginLocation, PluginRef, Rate, builtin,
};
use serde_json::{Value, json};

/// A first-party plugin's checked-in component (`plugins/built/`), to load
/// by path.
fn checked_in(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/built")
        .join(file)
}

fn file_ref(label: &str, path: PathBuf) -> PluginRef {
    PluginRef {
        label: label.to_string(),
        location: PluginLocation::File(path),
        sha256: None,
    }
}

fn event(id: &str, fields: Value) -> Event {
    Event {
        op: Op::Added,
        id: id.to_string(),
        fields: Fields::of(fields.as_object().unwrap()),
        previous: None,
        delivery_id: format!("d-{id}"),
    }
}

/// One engine for the tests that do not test the cache itself, with a
/// cache that outlives the test run, so each component is compiled once.
fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let cache_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
            Engine::new(EngineOptions {
                cache_dir: Some(cache_dir),
                builtins: builtin::ALL,
                ..EngineOptions::default()
            })
            .unwrap()
        })
        .clone()
}

#[tokio::test]
async fn builtin_unpack_pairs_applies_a_batch() {
    if builtin::get("unpack-pairs").is_none() {
        eprintln!("skipped: built-in unpack-pairs not embedded");
        return;
    }
    let plugin = PluginRef {
        label: "transform `unpack`".into(),
        location: PluginLocation::Builtin("unpack-pairs".into()),
        sha256: None,
    };
    let transform = engine()
        .transform(&plugin, Limits::default())
        .await
        .unwrap();
    let batch = [
        event("1", json!({"pairs": [["plan", "pro"], ["seats", 3]]})),
        event("2", json!({"pairs": "[[\"plan\", \"free\"]]"})),
        event("3", json!({"pairs": 7})),
    ];
    let items = transform
        .apply(&json!({"field": "pairs"}), &batch)
        .await
        .unwrap();
    assert_eq!(
        items[0],
        Item::Keep(event("1", json!({"pairs": {"plan": "pro", "seats": 3}})))
    );
    assert_eq!(
        items[1],
        Item::Keep(event("2", json!({"pairs": {"plan": "free"}})))
    );
    assert!(matches!(&items[2], Item::Fail(e) if e.message.contains("event 3")));
}

/// A destination's budget is the operator's rate, else the vendor limit
/// its spec declares; without a name to share it under there is none.
#[tokio::test]
async fn a_destinations_rate_is_the_operators_else_its_specs() {
    if builtin::get("segment").is_none() {
        eprintln!("skipped: built-in segment not embedded");
        return;
    }
    let plugin = PluginRef {
        label: "destination `seg`".into(),
        location: PluginLocation::Builtin("segment".into()),
        sha256: None,
    };
    let rate_of = |budget| async {
        let grants = Grants {
            budget,
            ..Grants::default()
        };
        engine().destination(&plugin, grants).await.unwrap().rate()
    };
    let declared = rate_of(Some(BudgetFor {
        destination: "seg".into(),
        rate: None,
    }))
    .await;
    assert_eq!(declared, Some(Rate::requests(500.0)));
    let operators = rate_of(Some(BudgetFor {
        destination: "seg".into(),
        rate: Some(Rate::requests(3.0)),
    }))
    .await;
    assert_eq!(operators, Some(Rate::requests(3.0)));
    assert_eq!(rate_of(None).await, None);
}

#[tokio::test]
async fn unknown_builtin_lists_the_known_ones() {
    let plugin = PluginRef {
        label: "transform `t`".into(),
        location: PluginLocation::Builtin("nope".into()),
        sha256: None,
    };
    let err = engine()
        .transform(&plugin, Limits::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PluginError::UnknownBuiltin { .. }), "{err}");
    assert!(err.to_string().contains("`nope`"), "{err}");
}

#[tokio::test]
async fn misbehaving_guests_fail_the_call_not_the_engine() {
    let path = ebb_fixtures::path("ebb_misbehave.wasm");
    let engine = engine();
    let limits = Limits {
        memory_bytes: 32 << 20,
        call_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let transform = engine
        .transform(&file_ref("transform `misbehave`", path), limits)
        .await
        .unwrap();
    let batch = [event("1", json!({"a": 1}))];
    let run = |mode: &'static str| {
        let transform = transform.clone();
        let batch = batch.clone();
        async move {
            let started = Instant::now();
            let result = transform.apply(&json!({ "mode": mode }), &batch).await;
            (result, started.elapsed())
        }
    };

    let (result, _) = run("trap").await;
    match result {
        Err(CallError::Trap { label, msg }) => {
            assert_eq!(label, "transform `misbehave`");
            assert!(msg.contains("trapping as configured"), "{msg}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }

    let (result, took) = run("loop").await;
    assert!(
        matches!(result, Err(CallError::Timeout { after, .. }) if after == limits.call_timeout),
        "{result:?}"
    );
    assert!(took < Duration::from_secs(3), "loop stopped after {took:?}");

    let (result, took) = run("alloc").await;
    assert!(
        matches!(result, Err(CallError::OutOfMemory { limit_bytes, .. }) if limit_bytes == 32 << 20),
        "{result:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "alloc stopped after {took:?}"
    );

    let (result, _) = run("ok").await;
    assert_eq!(result.unwrap(), vec![Item::Keep(batch[0].clone())]);
}

#[tokio::test]
async fn concurrent_calls_are_isolated() {
    let path = ebb_fixtures::path("ebb_misbehave.wasm");
    let transform = engine()
        .transform(&file_ref("transform `misbehave`", path), Limits::default())
        .await
        .unwrap();
    let batch = [event("1", json!({"a": 1}))];
    let calls = (0..16).map(|i| {
        let transform = transform.clone();
        let batch = batch.clone();
        tokio::spawn(async move {
            let mode = if i % 2 == 0 { "ok" } else { "trap" };
            transform.apply(&json!({ "mode": mode }), &batch).await
        })
    });
    for (i, call) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        let result = call.unwrap();
        assert_eq!(result.is_ok(), i % 2 == 0, "call {i}: {result:?}");
    }
}

/// The `calls` a `count` call of the misbehave fixture reports: how many
/// events the instance that served it has seen.
async fn calls_seen(transform: &ebb::plugin::Transform) -> u64 {
    let items = transform
        .apply(&json!({ "mode": "count" }), &[event("1", json!({}))])
        .await
        .unwrap();
    match &items[..] {
        [Item::Keep(e)] => e.fields.record()["calls"].as_u64().unwrap(),
        other => panic!("expected one kept event, got {other:?}"),
    }
}

#[tokio::test]
async fn an_instance_serves_its_handle_until_it_fails() {
    let path = ebb_fixtures::path("ebb_misbehave.wasm");
    let engine = engine();
    let plugin = file_ref("transform `misbehave`", path);
    let transform = engine.transform(&plugin, Limits::default()).await.unwrap();
    assert_eq!(calls_seen(&transform).await, 1);
    assert_eq!(calls_seen(&transform.clone()).await, 2, "clones share it");
    assert_eq!(calls_seen(&transform).await, 3);

    let other = engine.transform(&plugin, Limits::default()).await.unwrap();
    assert_eq!(calls_seen(&other).await, 1, "another handle has its own");

    let trap = transform
        .apply(&json!({ "mode": "trap" }), &[event("1", json!({}))])
        .await;
    assert!(matches!(trap, Err(CallError::Trap { .. })), "{trap:?}");
    assert_eq!(
        calls_seen(&transform).await,
        1,
        "a trapped instance is replaced, not entered again"
    );
}

#[tokio::test]
async fn transforms_built_against_a_frozen_version_still_run() {
    let path = ebb_fixtures::path("ebb_v0_1_0_transform.wasm");
    let transform = engine()
        .transform(&file_ref("transform `old`", path), Limits::default())
        .await
        .unwrap();
    let batch = [
        event("1", json!({"a": 1})),
        event("split", json!({})),
        event("drop", json!({})),
        event("fail", json!({})),
    ];
    let items = transform.apply(&json!({}), &batch).await.unwrap();
    let kept = |fields: Value, id: &str| Event {
        delivery_id: String::new(),
        ..event(id, fields)
    };
    assert_eq!(
        items,
        vec![
            Item::Keep(kept(json!({"a": 1, "wit": "0.1.0"}), "1")),
            Item::Split(vec![
                kept(json!({"wit": "0.1.0"}), "split"),
                kept(json!({"wit": "0.1.0"}), "split")
            ]),
            Item::Drop,
            Item::Fail(ebb::plugin::RemoteError {
                kind: ErrorKind::Rejected,
                message: "refused by the 0.1.0 fixture".into(),
                retry_after: None,
            }),
        ]
    );
}

#[tokio::test]
async fn destinations_built_against_a_frozen_version_still_deliver() {
    let path = ebb_fixtures::path("ebb_v0_1_0_destination.wasm");
    let destination = engine()
        .destination(&file_ref("destination `old`", path), Grants::default())
        .await
        .unwrap();
    assert_eq!(destination.spec().name, "v0-1-0");
    assert_eq!(destination.validate(&json!({})).await.unwrap(), Ok(()));
    let batch = [event("1", json!({})), event("refuse", json!({}))];
    let outcomes = destination.write(&json!({}), "send", &batch).await.unwrap();
    match &outcomes[..] {
        [Outcome::Ok, Outcome::Reject(e)] => {
            assert_eq!(e.kind, ErrorKind::Rejected);
            assert_eq!(e.message, "refused by the 0.1.0 fixture");
        }
        other => panic!("{other:?}"),
    }
    let down = destination.write(&json!("down"), "send", &batch).await;
    match down {
        Err(CallError::Remote(e)) => {
            assert_eq!(e.kind, ErrorKind::Transient);
            assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_plugin_built_against_an_unknown_version_is_refused_naming_both() {
    let path = ebb_fixtures::path("ebb_v0_1_0_transform.wasm");
    // The same component as if built against an ebb:plugin@0.9.0 that this
    // Ebb never released: every name of the package says 0.9.0.
    let mut bytes = std::fs::read(&path).unwrap();
    let mut renamed = 0;
    for interface in ["types", "host", "transform"] {
        let old = format!("ebb:plugin/{interface}@0.1.0");
        let new = format!("ebb:plugin/{interface}@0.9.0");
        let mut at = 0;
        while let Some(i) = bytes[at..]
            .windows(old.len())
            .position(|w| w == old.as_bytes())
        {
            bytes[at + i..at + i + old.len()].copy_from_slice(new.as_bytes());
            at += i + old.len();
            renamed += 1;
        }
    }
    assert!(renamed >= 3, "renamed {renamed} names");
    let dir = tempfile::tempdir().unwrap();
    let future = dir.path().join("future.wasm");
    std::fs::write(&future, bytes).unwrap();
    let err = engine()
        .transform(&file_ref("transform `future`", future), Limits::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PluginError::UnknownVersion { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("ebb:plugin@0.9.0"), "{message}");
    assert!(message.contains("0.1.0, 0.2.0"), "{message}");
}

/// A component claiming ebb:plugin@0.2.0 whose `event` has a field too
/// many is refused when loaded, naming the plugin and the mismatch.
#[tokio::test]
async fn a_same_version_shape_mismatch_is_refused_at_load() {
    let path = ebb_fixtures::path("ebb_shape_mismatch.wasm");
    let err = engine()
        .transform(&file_ref("transform `odd`", path), Limits::default())
        .await
        .err()
        .expect("refused");
    let message = err.to_string();
    for needle in [
        "transform `odd`",
        "ebb_shape_mismatch.wasm",
        "5 fields, found 6",
        "rebuild",
    ] {
        assert!(message.contains(needle), "must say {needle:?}: {message}");
    }
}

#[tokio::test]
async fn precompiled_components_are_cached_on_disk() {
    let path = checked_in("ebb_http.wasm");
    let cache = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..EngineOptions::default()
    };
    let plugin = file_ref("destination `crm`", path);

    let started = Instant::now();
    let first = Engine::new(opts.clone()).unwrap();
    first.destination(&plugin, Grants::default()).await.unwrap();
    let cold = started.elapsed();
    drop(first);

    // The artifact, and the digest it is checked against when loaded.
    let mut cached: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cached.sort();
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert_eq!(cached[0].extension().unwrap(), "cwasm");
    assert_eq!(cached[1].extension().unwrap(), "sha256");

    let started = Instant::now();
    let second = Engine::new(opts).unwrap();
    let destination = second
        .destination(&plugin, Grants::default())
        .await
        .unwrap();
    let warm = started.elapsed();
    assert_eq!(destination.spec().name, "http");
    assert!(warm < cold, "cached load {warm:?} vs cold {cold:?}");

    // Loading the same plugin again in one process reuses its InstancePre.
    let started = Instant::now();
    second
        .destination(&plugin, Grants::default())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn http_destination_cannot_reach_ungranted_hosts() {
    let path = checked_in("ebb_http.wasm");
    let grants = Grants {
        allow_hosts: vec!["api.example.com".into()],
        ..Grants::default()
    };
    let destination = engine()
        .destination(&file_ref("destination `crm`", path), grants)
        .await
        .unwrap();
    let config = json!({"url": "http://127.0.0.1:1/ingest"});
    assert_eq!(destination.validate(&config).await.unwrap(), Ok(()));
    let outcomes = destination
        .write(&config, "post", &[event("1", json!({"a": 1}))])
        .await
        .unwrap();
    let [Outcome::Retry(error) | Outcome::Reject(error)] = &outcomes[..] else {
        panic!("expected a failed outcome, got {outcomes:?}");
    };
    assert!(
        error.message.contains(
            "request to http://127.0.0.1:1/ denied: not in allow_hosts of destination `crm` \
             (granted: [api.example.com])"
        ),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn http_destination_posts_to_a_granted_host() {
    use axum::{Json, Router, routing::post};
    let path = checked_in("ebb_http.wasm");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let app = Router::new().route(
        "/ingest",
        post(move |Json(body): Json<Value>| {
            let tx = tx.clone();
            async move {
                tx.send(body).unwrap();
                Json(json!({"rejected": [{"id": "2", "error": "bad email"}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let grants = Grants {
        allow_hosts: vec![addr.to_string()],
        ..Grants::default()
    };
    let destination = engine()
        .destination(&file_ref("destination `crm`", path), grants)
        .await
        .unwrap();
    let batch = [event("1", json!({"a": 1})), event("2", json!({"a": 2}))];
    let outcomes = destination
        .write(
            &json!({"url": format!("http://{addr}/ingest")}),
            "post",
            &batch,
        )
        .await
        .unwrap();
    assert_eq!(outcomes[0], Outcome::Ok);
    assert!(matches!(&outcomes[1], Outcome::Reject(e) if e.message.contains("bad email")));
    let body = rx.recv().await.unwrap();
    assert_eq!(body["events"][1]["id"], "2");
    assert_eq!(body["events"][0]["fields"], json!({"a": 1}));
}

#[tokio::test]
async fn a_guest_waiting_on_the_network_times_out() {
    use axum::{Router, routing::post};
    let path = checked_in("ebb_http.wasm");
    let app = Router::new().route(
        "/slow",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            "too late"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let limits = Limits {
        call_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let grants = Grants {
        allow_hosts: vec![addr.to_string()],
        limits,
        ..Grants::default()
    };
    let destination = engine()
        .destination(&file_ref("destination `slow`", path), grants)
        .await
        .unwrap();
    let config = json!({"url": format!("http://{addr}/slow")});
    let started = Instant::now();
    let result = destination
        .write(&config, "post", &[event("1", json!({"a": 1}))])
        .await;
    assert!(
        matches!(result, Err(CallError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The destination stays usable.
    assert!(destination.validate(&config).await.unwrap().is_ok());
}

#[tokio::test]
async fn file_destination_writes_only_into_its_granted_folder() {
    let path = checked_in("ebb_file.wasm");
    let out = tempfile::tempdir().unwrap();
    let grants = Grants {
        dir: Some(out.path().to_path_buf()),
        ..Grants::default()
    };
    let destination = engine()
        .destination(&file_ref("destination `audit`", path), grants)
        .await
        .unwrap();
    let outcomes = destination
        .write(
            &json!({"file": "events.jsonl"}),
            "append",
            &[event("1", json!({"a": 1}))],
        )
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::Ok]);
    let written = std::fs::read_to_string(out.path().join("events.jsonl")).unwrap();
    assert!(written.contains("\"id\":\"1\""), "{written}");
}

#[tokio::test]
async fn load_errors_name_the_plugin_and_the_fix() {
    let engine = engine();
    let missing = file_ref("destination `crm`", "/nonexistent/http.wasm".into());
    let err = engine
        .destination(&missing, Grants::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PluginError::NotFound { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("destination `crm`: plugin file /nonexistent/http.wasm not found")
    );

    let not_wasm = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_wasm.path(), b"#!/bin/sh\n").unwrap();
    let err = engine
        .destination(
            &file_ref("destination `crm`", not_wasm.path().into()),
            Grants::default(),
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PluginError::NotAComponent { .. }), "{err}");

    let err = engine
        .destination(
            &file_ref("destination `crm`", "/nonexistent".into()),
            Grants {
                allow_hosts: vec!["*".into()],
                ..Grants::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("wildcards are not supported"),
        "{err}"
    );

    let path = ebb_fixtures::path("ebb_misbehave.wasm");
    let mut pinned = file_ref("transform `m`", path.clone());
    pinned.sha256 = Some("00".repeat(32));
    let err = engine
        .transform(&pinned, Limits::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PluginError::HashMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("update sha256 in ebb.toml"),
        "{err}"
    );

    let err = engine
        .destination(&file_ref("destination `m`", path), Grants::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PluginError::WrongWorld { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "ebb:plugin/transform@{}",
            ebb::plugin::WIT_VERSION
        )),
        "{err}"
    );
}

#[tokio::test]
async fn destinations_are_not_transforms() {
    let path = checked_in("ebb_http.wasm");
    let err = engine()
        .transform(&file_ref("transform `h`", path), Limits::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PluginError::WrongWorld { .. }), "{err}");
    assert!(err.to_string().contains("no network"), "{err}");
}

/// Prints load and call timings; run with
/// `cargo test -p ebb --release --test plugin_engine -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn timings() {
    let http = checked_in("ebb_http.wasm");
    let misbehave = ebb_fixtures::path("ebb_misbehave.wasm");
    let cache = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..EngineOptions::default()
    };
    let plugin = file_ref("destination `crm`", http);
    for round in ["cold compile", "cached load"] {
        let engine = Engine::new(opts.clone()).unwrap();
        let started = Instant::now();
        engine
            .destination(&plugin, Grants::default())
            .await
            .unwrap();
        println!("http destination, {round}: {:?}", started.elapsed());
    }

    let transform = engine()
        .transform(&file_ref("transform `m`", misbehave), Limits::default())
        .await
        .unwrap();
    let config = json!({"mode": "ok"});
    let batch = [event("1", json!({"a": 1}))];
    for _ in 0..100 {
        transform.apply(&config, &batch).await.unwrap();
    }
    let calls = 5000;
    let started = Instant::now();
    for _ in 0..calls {
        transform.apply(&config, &batch).await.unwrap();
    }
    println!(
        "transform call with one event (fresh instance each): {:?}",
        started.elapsed() / calls
    );
}
