//! Snowflake, BigQuery and Databricks sources, driven through the real
//! binary against local fakes of their SQL APIs (tests/e2e/support/fakes):
//! paged, asynchronous results synced and diffed, a rate-limited request
//! retried after its `Retry-After`, typed bindings, every column type's
//! JSON, and refused credentials reported as such.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::config::{FILE_DESTINATION, plugin_cache};
use crate::support::events::{added, assert_events, deleted, updated};
use crate::support::fakes::{self, Fake, Script, Statement, Table};
use crate::support::project::{Project, SYNC};

const USERS_QUERY: &str = "SELECT id, email, plan FROM users ORDER BY id";

/// What differs between the three APIs, for the shared scenarios.
struct Vendor {
    start: fn(Script) -> Fake,
    source_toml: fn(&Fake) -> String,
    /// Column descriptors for an integer and a text column.
    integer: Value,
    text: Value,
    /// The bind placeholder for template `n`.
    placeholder: fn(usize) -> String,
    /// The parameters Ebb sends for two `{{last_sync_time}}` of a first run.
    first_run_params: Value,
}

fn snowflake() -> Vendor {
    Vendor {
        start: fakes::snowflake::start,
        source_toml: fakes::snowflake::source_toml,
        integer: json!({"type": "fixed", "precision": 38, "scale": 0, "nullable": false}),
        text: json!({"type": "text", "length": 16777216, "nullable": true}),
        placeholder: |_| "?".into(),
        first_run_params: json!({
            "1": {"type": "FIXED", "value": "0"},
            "2": {"type": "FIXED", "value": "0"},
        }),
    }
}

fn bigquery() -> Vendor {
    let zero = json!({"parameterType": {"type": "INT64"}, "parameterValue": {"value": "0"}});
    Vendor {
        start: fakes::bigquery::start,
        source_toml: fakes::bigquery::source_toml,
        integer: json!({"type": "INTEGER", "mode": "NULLABLE"}),
        text: json!({"type": "STRING", "mode": "NULLABLE"}),
        placeholder: |_| "?".into(),
        first_run_params: json!([zero, zero]),
    }
}

fn databricks() -> Vendor {
    Vendor {
        start: fakes::databricks::start,
        source_toml: fakes::databricks::source_toml,
        integer: json!({"type_name": "LONG", "type_text": "BIGINT"}),
        text: json!({"type_name": "STRING", "type_text": "STRING"}),
        // Named markers are reused: both templates are `:p1`.
        placeholder: |_| ":p1".into(),
        first_run_params: json!([{"name": "p1", "type": "BIGINT", "value": "0"}]),
    }
}

fn config(source: &str, query: &str) -> String {
    format!(
        r#"{source}
[plugins]
cache_dir = '{cache}'

[models.users]
source = "wh"
primary_key = "id"
query = '''{query}'''

{FILE_DESTINATION}
[syncs.{SYNC}]
model = "users"
destination = "out"
"#,
        cache = plugin_cache().display()
    )
}

fn users(vendor: &Vendor, rows: &[(i64, &str, &str)]) -> Table {
    Table {
        columns: vec![
            ("id".into(), vendor.integer.clone()),
            ("email".into(), vendor.text.clone()),
            ("plan".into(), vendor.text.clone()),
        ],
        rows: rows
            .iter()
            .map(|(id, email, plan)| vec![json!(id.to_string()), json!(email), json!(plan)])
            .collect(),
    }
}

fn user(id: i64, plan: &str) -> Value {
    json!({"id": id, "email": format!("u{id}@example.com"), "plan": plan})
}

/// Seven users over three pages, statements that stay running for two
/// polls and a first request that is rate limited: the first run delivers
/// everyone, the second only what changed in the warehouse meanwhile.
fn syncs_pages_and_sends_only_changes(vendor: Vendor) {
    let emails: Vec<String> = (1..=8).map(|i| format!("u{i}@example.com")).collect();
    let rows = |spec: &[(i64, &'static str)]| -> Vec<(i64, &str, &str)> {
        spec.iter()
            .map(|(id, plan)| (*id, emails[*id as usize - 1].as_str(), *plan))
            .collect()
    };
    let first: Vec<(i64, &str)> = (1..=7).map(|i| (i, "free")).collect();
    let fake = (vendor.start)(Script {
        table: users(&vendor, &rows(&first)),
        page_rows: 3,
        running_polls: 2,
        rate_limited: 1,
        retry_after: 1,
        query: USERS_QUERY.into(),
        ..Script::default()
    });
    let project = Project::new();
    project.write_config(&config(&(vendor.source_toml)(&fake), USERS_QUERY));

    let run = project.run_ok();
    assert_eq!(run.count("extracted"), 7);
    let want: Vec<Value> = (1..=7).map(|i| added(user(i, "free"))).collect();
    assert_events(&project.take_delivered(), &want);
    {
        let script = fake.script();
        let (limited_at, status) = script.submissions[0];
        assert_eq!(status, 429, "the first submission is rate limited");
        let retried_at = script.submissions[1].0;
        assert!(
            retried_at.duration_since(limited_at) >= Duration::from_secs(1),
            "retried {:?} after a 429 asking for 1 s",
            retried_at.duration_since(limited_at)
        );
        assert_eq!(
            script.ran,
            [Statement::Ping, Statement::Describe, Statement::Model]
        );
    }

    // In the warehouse: 2 upgraded, 5 gone, 8 new.
    let second = [
        (1, "free"),
        (2, "pro"),
        (3, "free"),
        (4, "free"),
        (6, "free"),
        (7, "free"),
        (8, "team"),
    ];
    fake.script().table = users(&vendor, &rows(&second));
    let run = project.run_ok();
    assert_eq!(run.count("extracted"), 7);
    assert_events(
        &project.take_delivered(),
        &[
            updated(user(2, "pro"), user(2, "free")),
            deleted(user(5, "free")),
            added(user(8, "team")),
        ],
    );
    fake.assert_no_problems();
}

/// `ebb preview` of one row holding every type the vendor's API encodes
/// differently, with `{{last_sync_time}}` bound as a typed parameter.
fn types_map_to_json(vendor: Vendor, columns: Vec<(&str, Value, Value)>, want: Value) {
    let template =
        "SELECT * FROM typed WHERE {{last_sync_time}} >= 0 OR {{last_sync_time}} IS NULL";
    let bound = format!(
        "SELECT * FROM typed WHERE {} >= 0 OR {} IS NULL",
        (vendor.placeholder)(1),
        (vendor.placeholder)(2)
    );
    let (names, cells): (Vec<(String, Value)>, Vec<Value>) = columns
        .into_iter()
        .map(|(name, t, cell)| ((name.to_string(), t), cell))
        .unzip();
    let fake = (vendor.start)(Script {
        table: Table {
            columns: names,
            rows: vec![cells],
        },
        page_rows: 100,
        query: bound,
        params: vendor.first_run_params.clone(),
        ..Script::default()
    });
    let project = Project::new();
    project.write_config(&config(&(vendor.source_toml)(&fake), template));
    let rows = project.ebb_json(&["preview", "users"]);
    assert_eq!(rows, json!([want]));
    fake.assert_no_problems();
}

/// Credentials the API refuses fail `ebb check` and `ebb run` with
/// "authentication failed", naming the source.
fn refused_credentials_are_reported(vendor: Vendor) {
    let fake = (vendor.start)(Script {
        deny_auth: true,
        query: USERS_QUERY.into(),
        ..Script::default()
    });
    let project = Project::new();
    project.write_config(&config(&(vendor.source_toml)(&fake), USERS_QUERY));
    for args in [&["check"][..], &["run", SYNC]] {
        let out = project.ebb(args);
        assert_eq!(out.code, Some(1), "ebb {args:?}\n{}", out.text());
        assert!(
            out.stderr.contains("source `wh`: authentication failed:"),
            "ebb {args:?} should say the credentials were refused:\n{}",
            out.text()
        );
    }
    fake.assert_no_problems();
}

#[test]
fn snowflake_syncs_pages_and_sends_only_changes() {
    syncs_pages_and_sends_only_changes(snowflake());
}

#[test]
fn bigquery_syncs_pages_and_sends_only_changes() {
    syncs_pages_and_sends_only_changes(bigquery());
}

#[test]
fn databricks_syncs_pages_and_sends_only_changes() {
    syncs_pages_and_sends_only_changes(databricks());
}

#[test]
fn snowflake_refused_credentials_are_reported() {
    refused_credentials_are_reported(snowflake());
}

#[test]
fn bigquery_refused_credentials_are_reported() {
    refused_credentials_are_reported(bigquery());
}

#[test]
fn databricks_refused_credentials_are_reported() {
    refused_credentials_are_reported(databricks());
}

const TEXT: &str = "Zoë\n\t\"quoted\" ✓";

#[test]
fn snowflake_types_map_to_json() {
    let fixed =
        |p: u32, s: u32| json!({"type": "fixed", "precision": p, "scale": s, "nullable": true});
    let t = |name: &str| json!({"type": name, "nullable": true});
    types_map_to_json(
        snowflake(),
        vec![
            ("id", fixed(38, 0), json!("1")),
            ("big", fixed(38, 0), json!("9007199254740993")),
            ("price", fixed(10, 2), json!("12.50")),
            ("exact", fixed(38, 10), json!("12345678.1234567890")),
            ("ratio", t("real"), json!("0.25")),
            ("not_a_number", t("real"), json!("NaN")),
            ("name", t("text"), json!(TEXT)),
            ("active", t("boolean"), json!("true")),
            ("born", t("date"), json!("19844")),
            (
                "wakes",
                json!({"type": "time", "scale": 9}),
                json!("36000.500000000"),
            ),
            (
                "seen_ntz",
                t("timestamp_ntz"),
                json!("1714557600.000000000"),
            ),
            (
                "seen_ltz",
                t("timestamp_ltz"),
                json!("1714557600.123456000"),
            ),
            (
                "seen_tz",
                t("timestamp_tz"),
                json!("1714557600.500000000 1560"),
            ),
            (
                "props",
                t("variant"),
                json!("{\n  \"a\": 1,\n  \"b\": [true, null]\n}"),
            ),
            ("tags", t("array"), json!("[\n  \"x\"\n]")),
            ("blob", t("binary"), json!("48690a")),
            ("nothing", t("text"), Value::Null),
        ],
        json!({
            "id": 1,
            "big": "9007199254740993",
            "price": 12.5,
            "exact": "12345678.1234567890",
            "ratio": 0.25,
            "not_a_number": "NaN",
            "name": TEXT,
            "active": true,
            "born": "2024-05-01",
            "wakes": "10:00:00.500",
            "seen_ntz": "2024-05-01T10:00:00",
            "seen_ltz": "2024-05-01T10:00:00.123456Z",
            "seen_tz": "2024-05-01T10:00:00.500Z",
            "props": {"a": 1, "b": [true, null]},
            "tags": ["x"],
            "blob": "SGkK",
            "nothing": null,
        }),
    );
}

#[test]
fn bigquery_types_map_to_json() {
    let t = |name: &str| json!({"type": name, "mode": "NULLABLE"});
    types_map_to_json(
        bigquery(),
        vec![
            ("id", t("INTEGER"), json!("1")),
            ("big", t("INT64"), json!("9007199254740993")),
            ("price", t("NUMERIC"), json!("12.5")),
            ("exact", t("BIGNUMERIC"), json!("12345678.1234567890123")),
            ("ratio", t("FLOAT"), json!("0.25")),
            ("not_a_number", t("FLOAT"), json!("NaN")),
            ("infinite", t("FLOAT64"), json!("-Infinity")),
            ("name", t("STRING"), json!(TEXT)),
            ("active", t("BOOLEAN"), json!("true")),
            ("payload", t("BYTES"), json!("SGkK")),
            ("born", t("DATE"), json!("2024-05-01")),
            ("local", t("DATETIME"), json!("2024-05-01T10:00:00.250000")),
            ("wakes", t("TIME"), json!("10:00:00.500000")),
            ("seen", t("TIMESTAMP"), json!("1.7145576005E9")),
            ("props", t("JSON"), json!("{\"a\":1}")),
            (
                "tags",
                json!({"type": "STRING", "mode": "REPEATED"}),
                json!([{"v": "x"}, {"v": "y"}]),
            ),
            (
                "address",
                json!({"type": "RECORD", "mode": "NULLABLE", "fields": [
                    {"name": "zip", "type": "STRING", "mode": "NULLABLE"},
                    {"name": "lines", "type": "INTEGER", "mode": "REPEATED"},
                ]}),
                json!({"f": [{"v": "10115"}, {"v": [{"v": "1"}, {"v": "2"}]}]}),
            ),
            ("nothing", t("STRING"), Value::Null),
        ],
        json!({
            "id": 1,
            "big": "9007199254740993",
            "price": 12.5,
            "exact": "12345678.1234567890123",
            "ratio": 0.25,
            "not_a_number": "NaN",
            "infinite": "-Infinity",
            "name": TEXT,
            "active": true,
            "payload": "SGkK",
            "born": "2024-05-01",
            "local": "2024-05-01T10:00:00.250",
            "wakes": "10:00:00.500",
            "seen": "2024-05-01T10:00:00.500Z",
            "props": {"a": 1},
            "tags": ["x", "y"],
            "address": {"zip": "10115", "lines": [1, 2]},
            "nothing": null,
        }),
    );
}

#[test]
fn databricks_types_map_to_json() {
    let t = |name: &str, text: &str| json!({"type_name": name, "type_text": text});
    types_map_to_json(
        databricks(),
        vec![
            ("id", t("LONG", "BIGINT"), json!("1")),
            ("big", t("LONG", "BIGINT"), json!("9007199254740993")),
            ("small", t("SHORT", "SMALLINT"), json!("7")),
            ("price", t("DECIMAL", "DECIMAL(10,2)"), json!("12.50")),
            (
                "exact",
                t("DECIMAL", "DECIMAL(38,10)"),
                json!("12345678.1234567890"),
            ),
            ("ratio", t("DOUBLE", "DOUBLE"), json!("0.25")),
            ("not_a_number", t("DOUBLE", "DOUBLE"), json!("NaN")),
            ("name", t("STRING", "STRING"), json!(TEXT)),
            ("active", t("BOOLEAN", "BOOLEAN"), json!("true")),
            ("born", t("DATE", "DATE"), json!("2024-05-01")),
            (
                "seen",
                t("TIMESTAMP", "TIMESTAMP"),
                json!("2024-05-01T12:00:00.5+02:00"),
            ),
            (
                "local",
                t("TIMESTAMP_NTZ", "TIMESTAMP_NTZ"),
                json!("2024-05-01T10:00:00.250"),
            ),
            ("payload", t("BINARY", "BINARY"), json!("SGkK")),
            ("tags", t("ARRAY", "ARRAY<STRING>"), json!("[\"x\",\"y\"]")),
            ("attrs", t("MAP", "MAP<STRING,INT>"), json!("{\"a\":1}")),
            (
                "address",
                t("STRUCT", "STRUCT<zip: STRING>"),
                json!("{\"zip\":\"10115\"}"),
            ),
            ("nothing", t("STRING", "STRING"), Value::Null),
        ],
        json!({
            "id": 1,
            "big": "9007199254740993",
            "small": 7,
            "price": 12.5,
            "exact": "12345678.1234567890",
            "ratio": 0.25,
            "not_a_number": "NaN",
            "name": TEXT,
            "active": true,
            "born": "2024-05-01",
            "seen": "2024-05-01T10:00:00.500Z",
            "local": "2024-05-01T10:00:00.250",
            "payload": "SGkK",
            "tags": ["x", "y"],
            "attrs": {"a": 1},
            "address": {"zip": "10115"},
            "nothing": null,
        }),
    );
}

/// These APIs run whatever they are given, so a model that is not a single
/// query is refused before it is sent.
#[test]
fn statements_other_than_queries_are_refused() {
    let fake = fakes::databricks::start(Script {
        query: USERS_QUERY.into(),
        ..Script::default()
    });
    let project = Project::new();
    project.write_config(&config(
        &fakes::databricks::source_toml(&fake),
        "DELETE FROM users WHERE id IN (SELECT id FROM users)",
    ));
    let out = project.ebb(&["check"]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    assert!(
        out.stderr.contains(
            "model `users`: the query starts with `DELETE`; Ebb only runs a single SELECT"
        ),
        "{}",
        out.text()
    );
    // Only connection checks reached the API.
    let ran = fake.script().ran.clone();
    assert!(ran.iter().all(|s| *s == Statement::Ping), "{ran:?}");
    fake.assert_no_problems();
}

/// A statement Snowflake cannot compile is a SQL error carrying
/// Snowflake's message, for `ebb check` as for `ebb run`.
#[test]
fn snowflake_compilation_errors_carry_its_message() {
    let message = "SQL compilation error:\nObject 'USERS' does not exist or not authorized.";
    let fake = fakes::snowflake::start(Script {
        sql_error: Some(message.into()),
        query: USERS_QUERY.into(),
        ..Script::default()
    });
    let project = Project::new();
    project.write_config(&config(&fakes::snowflake::source_toml(&fake), USERS_QUERY));
    for args in [&["check"][..], &["run", SYNC]] {
        let out = project.ebb(args);
        assert_eq!(out.code, Some(1), "ebb {args:?}\n{}", out.text());
        // `check` keeps each problem on one line.
        let one_line = |s: &str| s.replace('\n', " ");
        assert!(
            one_line(&out.stderr).contains(&one_line(&format!(
                "model `users`: SQL error: {message} [code 002003]"
            ))),
            "ebb {args:?}:\n{}",
            out.text()
        );
    }
    fake.assert_no_problems();
}
