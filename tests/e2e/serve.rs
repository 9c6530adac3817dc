//! `ebb serve`: the HTTP API (token, error shape, OpenAPI document, runs,
//! owed rows, reset, enable/disable, plan, preview), the scheduler (slots,
//! one run after downtime, `at` once, overlap recorded as skipped) and
//! shutdown on SIGTERM, all through the real binary and real HTTP.

use std::time::Duration;

use serde_json::Value;

use crate::changes::all_added;
use crate::support::config::Config;
use crate::support::events::{assert_events, updated};
use crate::support::project::{Project, SYNC};
use crate::support::server::{Reply as Answer, Server};
use crate::support::serving::{Serving, TOKEN, server_toml};
use crate::support::state::sqlite_scalar;
use crate::support::warehouse::{Warehouse, user};

/// A project with users 1–3 in SQLite, delivered to the file destination,
/// the sync's schedule given by `sync_lines`.
fn project_with(sync_lines: &[&str]) -> (Project, Warehouse) {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let mut config = Config::new(&wh);
    for line in sync_lines {
        config = config.sync(line);
    }
    project.write_config(&format!("{}{}", config.render(), server_toml()));
    (project, wh)
}

fn runs(serving: &Serving) -> Vec<Value> {
    let reply = serving.get(&format!("/syncs/{SYNC}/runs"));
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json().as_array().cloned().unwrap_or_default()
}

fn with_status<'a>(runs: &'a [Value], status: &str) -> Vec<&'a Value> {
    runs.iter().filter(|r| r["status"] == status).collect()
}

#[test]
fn the_api_wants_the_token_everywhere_but_health() {
    let (project, _wh) = project_with(&[]);
    let serving = Serving::start(&project);

    let health = serving.send(reqwest::Method::GET, "/health", None);
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, "ok".into())
    );
    // The icon browsers ask for on their own needs no token either.
    let icon = serving.send(reqwest::Method::GET, "/favicon.ico", None);
    assert_eq!(
        (icon.status, icon.content_type.as_str()),
        (200, "image/svg+xml"),
        "{}",
        icon.text
    );
    for path in [
        "/syncs",
        "/openapi.json",
        "/metrics",
        &format!("/syncs/{SYNC}/runs"),
    ] {
        for token in [None, Some("wrong")] {
            let reply = serving.send(reqwest::Method::GET, path, token);
            assert_eq!(reply.status, 401, "{path} with {token:?}: {}", reply.text);
            assert_eq!(reply.error_code(), "unauthorized");
        }
    }
    let missing = serving.get("/syncs/nope");
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "not_found".into())
    );
    let unknown = serving.get("/no/such/endpoint");
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (404, "not_found".into())
    );
    let method = serving.send(reqwest::Method::DELETE, "/syncs", Some(TOKEN));
    assert_eq!(
        (method.status, method.error_code()),
        (405, "method_not_allowed".into())
    );
    let bad = serving.get(&format!("/syncs/{SYNC}/runs/seven"));
    assert_eq!((bad.status, bad.error_code()), (400, "bad_request".into()));
    let bad = serving.get(&format!("/syncs/{SYNC}/runs?limit=0"));
    assert_eq!((bad.status, bad.error_code()), (400, "bad_request".into()));

    let spec = serving.get("/openapi.json").json();
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    for path in [
        "/health",
        "/syncs",
        "/syncs/{sync}",
        "/syncs/{sync}/runs",
        "/syncs/{sync}/runs/{run}",
        "/syncs/{sync}/runs/{run}/replay",
        "/syncs/{sync}/errors",
        "/syncs/{sync}/errors/groups",
        "/syncs/{sync}/reset",
        "/syncs/{sync}/enable",
        "/syncs/{sync}/disable",
        "/syncs/{sync}/plan",
        "/models/{model}/preview",
        "/metrics",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is in the spec");
    }
    assert_eq!(
        spec["paths"]["/health"]["get"]["security"],
        serde_json::json!([{}])
    );
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
}

#[test]
fn a_run_asked_for_over_the_api_delivers_and_is_reported() {
    let (project, wh) = project_with(&[]);
    let mut serving = Serving::start(&project);

    let sync = serving.get(&format!("/syncs/{SYNC}")).json();
    assert_eq!(sync["schedule"], "manual");
    assert_eq!(sync["enabled"], true);
    assert_eq!(sync["last_run"], Value::Null);

    let plan = serving.get(&format!("/syncs/{SYNC}/plan?limit=2")).json();
    assert_eq!(plan["events"].as_array().map(Vec::len), Some(2), "{plan}");
    assert_eq!(plan["summary"]["added"], 3, "{plan}");
    assert_eq!(plan["summary"]["total"], 3, "{plan}");
    assert_eq!(plan["truncated"], true, "{plan}");
    assert_eq!(plan["events"][0]["op"], "added", "{plan}");
    let preview = serving.get("/models/users/preview?limit=1").json();
    assert_eq!(preview["rows"][0]["email"], user(1)["email"]);
    assert!(preview["columns"].as_array().is_some_and(|c| c.len() == 3));

    let run_id = serving.trigger(SYNC);
    let run = serving.finished(SYNC, run_id);
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["counts"]["added"], 3);
    assert!(run["timings_ms"]["extract"].is_u64(), "{run}");
    assert_events(&project.take_delivered(), &all_added(1..=3));

    let metrics = serving.get("/metrics");
    assert!(
        metrics
            .content_type
            .starts_with("application/openmetrics-text")
    );
    for series in [
        format!("ebb_runs_total{{sync=\"{SYNC}\",status=\"success\"}} 1"),
        format!("ebb_records_total{{sync=\"{SYNC}\",outcome=\"added\"}} 3"),
        format!("ebb_deliveries_total{{sync=\"{SYNC}\",op=\"added\",outcome=\"ok\"}} 3"),
        format!("ebb_stage_seconds_count{{sync=\"{SYNC}\",stage=\"extract\"}} 1"),
        "ebb_destination_write_seconds_count{destination=\"out\"} 1".to_owned(),
        "ebb_plugin_call_seconds_count{role=\"destination\",name=\"out\",plugin=\"ebb:file\"}"
            .to_owned(),
        format!("ebb_last_success_timestamp_seconds{{sync=\"{SYNC}\"}} 1"),
        format!("ebb_rows_owed{{sync=\"{SYNC}\"}} 0"),
    ] {
        assert!(
            metrics.text.contains(&series),
            "{series} in\n{}",
            metrics.text
        );
    }

    let listed = serving.get("/syncs").json();
    assert_eq!(listed[0]["name"], SYNC);
    assert_eq!(listed[0]["last_run"]["run_id"], run_id);

    wh.exec("UPDATE users SET plan = 'enterprise' WHERE id = 2");
    let next = serving.trigger(SYNC);
    assert_eq!(serving.finished(SYNC, next)["status"], "success");
    let mut changed = user(2);
    changed["plan"] = "enterprise".into();
    assert_events(&project.take_delivered(), &[updated(changed, user(2))]);
    let ids: Vec<i64> = runs(&serving)
        .iter()
        .filter_map(|r| r["run_id"].as_i64())
        .collect();
    assert_eq!(ids, vec![next, run_id]);

    let replayed = serving.post(&format!("/syncs/{SYNC}/runs/{next}/replay"));
    assert_eq!(replayed.status, 200, "{}", replayed.text);
    let replayed = replayed.json();
    assert_eq!(
        (replayed["sent"].clone(), replayed["ok"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(project.take_delivered().len(), 1);
    let reset = serving.post(&format!("/syncs/{SYNC}/reset"));
    assert_eq!(reset.status, 200, "{}", reset.text);
    let kinds: Vec<String> = runs(&serving)
        .iter()
        .map(|r| format!("{} {}", r["kind"].as_str().unwrap_or_default(), r["status"]))
        .collect();
    assert_eq!(
        kinds,
        [
            "reset \"success\"",
            "replay \"success\"",
            "run \"success\"",
            "run \"success\""
        ]
    );
    let again = serving.trigger(SYNC);
    assert_eq!(serving.finished(SYNC, again)["counts"]["added"], 3);
}

#[test]
fn a_disabled_sync_does_not_run_until_enabled_and_then_catches_up() {
    let (project, wh) = project_with(&[]);
    let mut serving = Serving::start(&project);
    let first = serving.trigger(SYNC);
    serving.finished(SYNC, first);
    project.take_delivered();

    let disabled = serving.post(&format!("/syncs/{SYNC}/disable")).json();
    assert_eq!(
        (disabled["enabled"].clone(), disabled["disabled_by"].clone()),
        (false.into(), "api".into())
    );
    let refused = serving.post(&format!("/syncs/{SYNC}/runs"));
    assert_eq!(
        (refused.status, refused.error_code()),
        (409, "disabled".into())
    );
    let cli = project.ebb(&["run", SYNC]);
    assert!(
        cli.code != Some(0) && cli.stderr.contains("disabled"),
        "{}",
        cli.stderr
    );

    wh.exec("UPDATE users SET plan = 'team' WHERE id = 3");
    wh.exec("DELETE FROM users WHERE id = 1");
    let enabled = serving.post(&format!("/syncs/{SYNC}/enable")).json();
    assert_eq!(enabled["enabled"], true);
    let run = serving.trigger(SYNC);
    let run = serving.finished(SYNC, run);
    assert_eq!(
        (
            run["counts"]["updated"].clone(),
            run["counts"]["deleted"].clone()
        ),
        (1.into(), 1.into()),
        "{run}"
    );
}

#[test]
fn rows_owed_are_listed_and_exported_as_json_and_csv() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let server = Server::start();
    server.reject("2", "email bounced");
    let config = Config::new(&wh).http(&server, &server.host(), 10);
    project.write_config(&format!("{}{}", config.render(), server_toml()));
    let mut serving = Serving::start(&project);

    let run_id = serving.trigger(SYNC);
    assert_eq!(serving.finished(SYNC, run_id)["status"], "partial");
    let owed = serving.get(&format!("/syncs/{SYNC}/errors")).json()["rows"].take();
    assert_eq!(owed[0]["key"], "2", "{owed}");
    assert!(
        owed[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("email bounced"))
    );
    assert_eq!(owed[0]["payload"]["id"], "2");
    let metrics = serving.get("/metrics").text;
    assert!(
        metrics.contains(&format!("ebb_rows_owed{{sync=\"{SYNC}\"}} 1")),
        "{metrics}"
    );

    let csv = serving.get(&format!("/syncs/{SYNC}/errors?format=csv"));
    assert!(
        csv.content_type.starts_with("text/csv"),
        "{}",
        csv.content_type
    );
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "key,op,run_id,attempts,error,payload");
    assert!(
        lines[1].starts_with(&format!("2,added,{run_id},1,")),
        "{}",
        csv.text
    );
    let bad = serving.get(&format!("/syncs/{SYNC}/errors?format=xml"));
    assert_eq!((bad.status, bad.error_code()), (400, "bad_request".into()));
}

#[test]
fn every_schedule_runs_on_its_slots() {
    let (project, _wh) = project_with(&[r#"schedule = { every = "1s" }"#]);
    let mut serving = Serving::start(&project);
    let sync = serving.get(&format!("/syncs/{SYNC}")).json();
    assert_eq!(sync["schedule"], "every 1s");
    assert!(sync["next_run_at"].is_string(), "{sync}");

    serving.wait_until("two scheduled runs succeeded", |s| {
        with_status(&runs(s), "success").len() >= 2
    });
    assert_events(&project.take_delivered(), &all_added(1..=3));
    let (code, took, log) = serving.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn a_slot_missed_while_down_runs_once() {
    let (project, _wh) = project_with(&[r#"schedule = { every = "1h" }"#]);
    let serving = Serving::start(&project);
    assert!(runs(&serving).is_empty(), "the first slot is an hour away");
    serving.terminate();

    // As if the server had been down through three slots.
    let back = "UPDATE schedules SET due_at = due_at - 3 * 3600 * 1000 RETURNING 1";
    assert_eq!(sqlite_scalar(&project.state_db(), back), 1);
    let mut serving = Serving::start(&project);
    serving.wait_until("the missed slot ran", |s| {
        with_status(&runs(s), "success").len() == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&serving).len(), 1, "one run, not one per missed slot");
    let next = serving.get(&format!("/syncs/{SYNC}")).json()["next_run_at"].clone();
    let next = chrono::DateTime::parse_from_rfc3339(next.as_str().unwrap_or_default())
        .expect("next_run_at is a time");
    assert!(next > chrono::Utc::now(), "the next slot is ahead: {next}");
}

#[test]
fn an_at_schedule_runs_once() {
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (project, _wh) = project_with(&[&format!(r#"schedule = {{ at = "{at}" }}"#)]);
    let mut serving = Serving::start(&project);
    serving.wait_until("the run at its time succeeded", |s| {
        with_status(&runs(s), "success").len() == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&serving).len(), 1);
    assert_eq!(
        serving.get(&format!("/syncs/{SYNC}")).json()["next_run_at"],
        Value::Null
    );
}

#[test]
fn a_run_due_while_one_is_in_progress_is_recorded_as_skipped_and_sigterm_closes_it() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let server = Server::start();
    server.script(None, Answer::Hold, 1);
    let config = Config::new(&wh)
        .http_within(&server, &server.host(), 10, 60)
        .sync(r#"schedule = { every = "1s" }"#);
    project.write_config(&format!("{}{}", config.render(), server_toml()));
    let mut serving = Serving::start(&project);

    serving.wait_until("a slot came due during the held run", |s| {
        !with_status(&runs(s), "skipped").is_empty()
    });
    let busy = serving.post(&format!("/syncs/{SYNC}/runs"));
    assert_eq!((busy.status, busy.error_code()), (409, "busy".into()));
    // The rule `ebb reset` follows: no reset while a run is in progress.
    let refused = serving.post(&format!("/syncs/{SYNC}/reset"));
    assert_eq!(
        (refused.status, refused.error_code()),
        (409, "busy".into()),
        "{}",
        refused.text
    );
    let running = with_status(&runs(&serving), "running").len();
    assert_eq!(running, 1);
    let metrics = serving.get("/metrics").text;
    assert!(
        metrics.contains(&format!(
            "ebb_runs_total{{sync=\"{SYNC}\",status=\"skipped\"}} "
        )),
        "{metrics}"
    );

    let (code, took, log) = serving.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(took < Duration::from_secs(20), "took {took:?}: {log}");
    let failed = sqlite_scalar(
        &project.state_db(),
        "SELECT count(*) FROM runs WHERE status = 'failed' AND error LIKE 'interrupted by ebb serve shutting down%'",
    );
    assert_eq!(failed, 1, "{log}");
    let open = sqlite_scalar(
        &project.state_db(),
        "SELECT count(*) FROM runs WHERE status = 'running'",
    );
    assert_eq!(open, 0);
}

#[test]
fn a_sync_alerts_once_per_change_of_state_and_a_dead_webhook_changes_nothing() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let destination = Server::start();
    destination.reject("2", "email bounced");
    let webhook = Server::start();
    let config = Config::new(&wh).http(&destination, &destination.host(), 10);
    let alerts = format!(
        "\n[alerts]\nwebhook = \"{}\"\n\n[server]\npublic_url = \"https://ebb.example.com/\"\n",
        webhook.url()
    );
    project.write_config(&format!("{}{alerts}", config.render()));

    let run = project.run();
    run.assert_status("partial");
    let sent = webhook.requests();
    assert_eq!(sent.len(), 1, "one alert");
    let alert = &sent[0].body;
    let run_id = run.run_id();
    assert_eq!(
        alert["text"],
        format!("Ebb: sync `{SYNC}` run {run_id} partly failed")
    );
    let text = alert["blocks"].to_string();
    for part in [
        format!("<https://ebb.example.com/#/syncs/{SYNC}/runs/{run_id}|"),
        "*Added*\\n3".to_owned(),
        "*Rejected*\\n1".to_owned(),
        "`2` (added): ".to_owned(),
        "email bounced".to_owned(),
    ] {
        assert!(text.contains(&part), "{part} in {text}");
    }

    webhook.script(
        None,
        Answer::Status {
            code: 500,
            retry_after: None,
        },
        1,
    );
    // Only the owed row is sent again, and refused again.
    let again = project.run();
    again.assert_status("failed");
    assert!(
        again
            .output
            .stderr
            .contains("the alert could not be delivered"),
        "{}",
        again.output.stderr
    );
    assert_eq!(webhook.requests().len(), 2);

    // Failing again changes nothing: no alert.
    project.run().assert_status("failed");
    assert_eq!(webhook.requests().len(), 2, "one alert per change of state");

    // Recovering is a change: one alert saying so.
    destination.accept_all();
    let recovered = project.run_ok();
    let sent = webhook.requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(
        sent[2].body["text"],
        format!(
            "Ebb: sync `{SYNC}` run {} succeeded: the sync recovered",
            recovered.run_id()
        )
    );
    project.run_ok();
    assert_eq!(webhook.requests().len(), 3, "still fine: no alert");

    // A sync may opt out: no alert for it at all.
    destination.reject("2", "email bounced");
    wh.exec("UPDATE users SET plan = 'enterprise' WHERE id = 2");
    project.write_config(&format!(
        "{}{alerts}",
        config.sync("alert_on = []").render()
    ));
    project.run().assert_status("failed");
    assert_eq!(webhook.requests().len(), 3);
}

#[test]
fn serve_logs_one_json_object_per_line_when_asked() {
    let (project, _wh) = project_with(&[]);
    let mut serving = Serving::start_with(&project, &["--log-format", "json", "serve"]);
    let run_id = serving.trigger(SYNC);
    serving.finished(SYNC, run_id);
    let (code, _, log) = serving.terminate();
    assert_eq!(code, Some(0), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let started = lines
        .iter()
        .find(|l| l["fields"]["message"] == "run started")
        .expect("the run's start is logged");
    assert_eq!(started["fields"]["run_id"], run_id);
    assert_eq!(started["fields"]["sync"], SYNC);
}

#[test]
fn serve_compiles_every_plugin_at_start_and_names_one_that_does_not_load() {
    let (project, _wh) = project_with(&[r#"transforms = [{ plugin = "broken.wasm" }]"#]);
    project.write("broken.wasm", "not a component");
    let out = project.ebb(&["serve"]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(
        out.stderr.contains(&format!("sync `{SYNC}`"))
            && out.stderr.contains("transform 1 (broken.wasm)"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("listening"), "{}", out.stdout);
}
