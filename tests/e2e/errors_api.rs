//! Row errors at scale: with hundreds of rows owed, `GET
//! /syncs/{sync}/errors` pages them in natural key order ("2" before "10")
//! with the total, `/errors/groups` folds identical errors into one line
//! with a count and first keys, `?error=` pages through one group, answers
//! are gzip'd for clients that accept it, and `ebb errors` lists and groups
//! in the same order. Run on either state store (see state_postgres.rs).

use serde_json::Value;

use crate::support::config::Config;
use crate::support::project::{Project, SYNC};
use crate::support::server::Server;
use crate::support::serving::{Serving, server_toml};
use crate::support::warehouse::Warehouse;

/// Rows owed in all.
const OWED: i64 = 250;

/// The error most rows fail with: long, as a vendor's often is, so a page
/// of them compresses well.
fn bounced() -> String {
    format!(
        "email bounced: the mailbox does not exist or refuses mail from this sender; {}",
        "see the vendor's delivery report for details. ".repeat(8)
    )
}

/// Every tenth row fails with this one instead.
const BAD_PHONE: &str = "phone number is not valid";

fn keys(rows: &Value) -> Vec<String> {
    rows.as_array()
        .expect("an array of rows")
        .iter()
        .map(|r| r["key"].as_str().expect("a string key").to_owned())
        .collect()
}

fn numbers(range: impl IntoIterator<Item = i64>) -> Vec<String> {
    range.into_iter().map(|n| n.to_string()).collect()
}

fn refused(serving: &Serving, path: &str, names: &str) {
    let reply = serving.get(path);
    assert_eq!(
        (reply.status, reply.error_code()),
        (400, "bad_request".into()),
        "{path}: {}",
        reply.text
    );
    assert!(reply.text.contains(names), "{path}: {}", reply.text);
}

#[test]
fn owed_rows_page_group_and_compress() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    owed_rows_page_group_and_compress_in(&project, &wh);
}

pub fn owed_rows_page_group_and_compress_in(project: &Project, wh: &Warehouse) {
    wh.insert_users(1..=OWED);
    let server = Server::start();
    for id in 1..=OWED {
        let error = match id % 10 {
            0 => BAD_PHONE.to_owned(),
            _ => bounced(),
        };
        server.reject(&id.to_string(), &error);
    }
    let config = Config::new(wh).http(&server, &server.host(), 100);
    project.write_config(&format!("{}{}", config.render(), server_toml()));
    let mut serving = Serving::start(project);
    let run_id = serving.trigger(SYNC);
    let run = serving.finished(SYNC, run_id);
    assert_eq!(run["counts"]["rejected"], OWED, "{run}");
    let errors = format!("/syncs/{SYNC}/errors");

    // The first page: 100 rows in natural order, and the total.
    let first = serving.get(&errors);
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.headers["x-total-count"], OWED.to_string().as_str());
    let first = first.json();
    assert_eq!(
        (&first["total"], &first["limit"], &first["offset"]),
        (&OWED.into(), &100.into(), &0.into())
    );
    assert_eq!(keys(&first["rows"]), numbers(1..=100));
    assert_eq!(first["rows"][0]["run_id"], run_id);
    assert_eq!(first["rows"][0]["payload"]["id"], "1");

    let last = serving.get(&format!("{errors}?offset=200")).json();
    assert_eq!(last["total"], OWED);
    assert_eq!(keys(&last["rows"]), numbers(201..=250));
    let past = serving.get(&format!("{errors}?offset=250&limit=5")).json();
    assert_eq!(
        (&past["total"], keys(&past["rows"])),
        (&OWED.into(), vec![])
    );

    // Identical errors are one group each, the largest first, with the
    // first keys in natural order.
    let groups = serving.get(&format!("{errors}/groups")).json();
    assert_eq!(
        (&groups["total"], &groups["groups_total"]),
        (&OWED.into(), &2.into()),
        "{groups}"
    );
    let (most, phone) = (&groups["groups"][0], &groups["groups"][1]);
    assert!(
        most["error"]
            .as_str()
            .is_some_and(|e| e.contains("email bounced")),
        "{most}"
    );
    assert_eq!(
        (&most["count"], &most["last_run"]),
        (&225.into(), &run_id.into())
    );
    assert_eq!(most["keys"], serde_json::json!(["1", "2", "3", "4", "5"]));
    assert!(
        phone["error"]
            .as_str()
            .is_some_and(|e| e.contains(BAD_PHONE)),
        "{phone}"
    );
    assert_eq!(phone["count"], 25);
    assert_eq!(
        phone["keys"],
        serde_json::json!(["10", "20", "30", "40", "50"])
    );
    let second = serving
        .get(&format!("{errors}/groups?limit=1&offset=1"))
        .json();
    assert_eq!(second["groups_total"], 2);
    assert_eq!(second["groups"].as_array().map(Vec::len), Some(1));
    assert_eq!(second["groups"][0]["count"], 25);
    let beyond = serving.get(&format!("{errors}/groups?offset=2")).json();
    assert_eq!(
        (&beyond["total"], &beyond["groups_total"], &beyond["groups"]),
        (&OWED.into(), &2.into(), &serde_json::json!([]))
    );

    // One group's rows, a page at a time.
    let message = phone["error"].as_str().expect("the group's error");
    let query = format!("{errors}?error={}&limit=10&offset=2", urlencode(message));
    let group = serving.get(&query).json();
    assert_eq!(group["total"], 25, "{group}");
    assert_eq!(keys(&group["rows"]), numbers((3..=12).map(|n| n * 10)));

    // The CSV download is every row that matches, in the same order.
    let csv = serving.get(&format!("{errors}?format=csv&error={}", urlencode(message)));
    assert_eq!(csv.headers["x-total-count"], "25");
    let csv_keys: Vec<&str> = csv
        .text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap_or_default())
        .collect();
    assert_eq!(csv_keys, numbers((1..=25).map(|n| n * 10)));
    let all = serving.get(&format!("{errors}?format=csv"));
    assert_eq!(all.text.lines().count() as i64, OWED + 1);

    // Bad paging is refused, naming the parameter.
    for (query, names) in [
        ("?limit=0", "limit"),
        ("?limit=5000", "limit"),
        ("?limit=ten", "limit"),
        ("?offset=-1", "offset"),
    ] {
        refused(&serving, &format!("{errors}{query}"), names);
        refused(&serving, &format!("{errors}/groups{query}"), names);
    }

    // gzip when the client accepts it, for the API, the dashboard and
    // the metrics alike; plain otherwise.
    let plain = serving.get(&format!("{errors}?limit=1000")).text;
    let zipped = serving.get_encoded(&format!("{errors}?limit=1000"), "gzip");
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.headers["content-encoding"], "gzip");
    assert!(zipped.body.starts_with(&[0x1f, 0x8b]), "a gzip stream");
    assert!(
        zipped.body.len() * 10 < plain.len(),
        "{} bytes gzip'd of {}",
        zipped.body.len(),
        plain.len()
    );
    for path in ["/", "/metrics", "/openapi.json"] {
        let reply = serving.get_encoded(path, "gzip");
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.headers["content-encoding"], "gzip", "{path}");
    }
    let identity = serving.get_encoded(&errors, "identity");
    assert!(identity.headers.get("content-encoding").is_none());
    assert!(identity.body.starts_with(b"{"), "plain JSON");
    drop(serving);

    // The CLI lists every row in the same order, and groups them.
    let listed: Vec<String> = project
        .errors()
        .iter()
        .map(|r| r["key"].as_str().expect("a string key").to_owned())
        .collect();
    assert_eq!(listed, numbers(1..=OWED));
    let grouped = project.ebb_json(&["errors", SYNC, "--group"]);
    assert_eq!(grouped, groups["groups"], "the CLI groups as the API does");
    let table = project.ebb_ok(&["errors", SYNC, "--group"]);
    assert!(
        table.contains(BAD_PHONE) && table.contains("10, 20, 30, 40, 50, …"),
        "{table}"
    );
    assert!(
        table.contains("250 row(s) owed, 2 distinct error(s)"),
        "{table}"
    );
}

/// `text` as a query parameter's value.
fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
