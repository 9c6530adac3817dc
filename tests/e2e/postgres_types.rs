//! Every common Postgres type, with its edge values, synced to the file
//! destination and compared to the exact JSON docs/types.md promises; and
//! an aggregated array column, the shape audience syncs are built from.

use serde_json::{Value, json};

use crate::support::config::Config;
use crate::support::events::{added, assert_events};
use crate::support::project::Project;
use crate::support::warehouse::Warehouse;

const TABLE: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE TABLE everything (
    id int PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, n numeric, f4 float4, f8 float8,
    tx text, vc varchar(10), bp char(5), nm name, ci citext, m mood, u uuid, j json, jb jsonb,
    by bytea, d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
    ip inet, cd cidr, mac macaddr, mac8 macaddr8, mo money,
    a_i int4[], a_t text[], a_m mood[], a_2 int[][], a_n numeric[], a_ts timestamptz[]
);
INSERT INTO everything VALUES (
    1, true, -32768, 2147483647, 9223372036854775807,
    123456789012345678901234567890.123456789, 0.1, 1e308,
    E'h\u00e9llo \U0001F600\n\t\x01', 'v', 'ab', 'nm', 'CaSe', 'happy',
    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"b":[1,2,{"c":null}],"a":"x"}', '{"b":1,"a":[true]}',
    '\x00ff10', 'infinity', '24:00:00', '10:00:00.5+05:30', '2024-05-01 10:00:00.5', '-infinity',
    '1 year 2 months 3 days 04:05:06.5', '192.168.0.1', '10.0.0.0/8',
    '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', '-12.34',
    '{1,NULL,3}', '{"a","b c",NULL}', '{sad,happy}', '{{1,2},{3,4}}', '{1.5,NaN}',
    '{"2024-01-01 00:00:00+02"}'
);
INSERT INTO everything (id, i8, n, f4, f8, d, ts, tstz, iv, ip, a_i)
VALUES (2, 9007199254740991, 'NaN', 'NaN', '-Infinity', '2024-02-29',
        '1999-12-31 23:59:59.999999', '2024-05-01 12:00:00+02', '0', '::1', '{}');
INSERT INTO everything (id, i8, n, f8, d, iv, ip)
VALUES (3, 9007199254740992, 'Infinity', 'Infinity', '0044-03-15 BC',
        '-1 mons -2 days -00:00:03.000001', '2001:db8::1/64');
INSERT INTO everything (id, i8, n) VALUES (4, -9223372036854775808, -0.000123);
INSERT INTO everything (id, n) VALUES (5, 12.50);
INSERT INTO everything (id, n) VALUES (6, 123456789012345);
INSERT INTO everything (id, n) VALUES (7, 1234567890.123456);
INSERT INTO everything (id, n) VALUES (8, '-Infinity');
INSERT INTO everything (id) VALUES (9);
"#;

/// Row `id` with the columns it sets; every other column is null.
fn row(id: i64, set: Value) -> Value {
    let columns = [
        "b", "i2", "i4", "i8", "n", "f4", "f8", "tx", "vc", "bp", "nm", "ci", "m", "u", "j", "jb",
        "by", "d", "tm", "ttz", "ts", "tstz", "iv", "ip", "cd", "mac", "mac8", "mo", "a_i", "a_t",
        "a_m", "a_2", "a_n", "a_ts",
    ];
    let mut fields = serde_json::Map::new();
    fields.insert("id".into(), json!(id));
    for c in columns {
        fields.insert(c.into(), set.get(c).cloned().unwrap_or(Value::Null));
    }
    Value::Object(fields)
}

#[test]
fn postgres_types_become_exact_json() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    let schema = wh.schema().expect("a Postgres schema").to_owned();
    wh.exec(&format!("CREATE EXTENSION citext SCHEMA {schema}"));
    wh.exec_script(TABLE);
    let project = Project::new();
    project.write_config(&Config::new(&wh).query("SELECT * FROM everything").render());
    project.run_ok();

    let want = [
        row(
            1,
            json!({
                "b": true, "i2": -32768, "i4": 2147483647, "i8": "9223372036854775807",
                "n": "123456789012345678901234567890.123456789", "f4": 0.1, "f8": 1e308,
                "tx": "h\u{e9}llo \u{1F600}\n\t\u{1}", "vc": "v", "bp": "ab   ", "nm": "nm",
                "ci": "CaSe", "m": "happy", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "j": {"b": [1, 2, {"c": null}], "a": "x"}, "jb": {"a": [true], "b": 1},
                "by": "AP8Q", "d": "infinity", "tm": "24:00:00", "ttz": "10:00:00.5+05:30",
                "ts": "2024-05-01T10:00:00.5", "tstz": "-infinity", "iv": "P1Y2M3DT4H5M6.5S",
                "ip": "192.168.0.1", "cd": "10.0.0.0/8", "mac": "08:00:2b:01:02:03",
                "mac8": "08:00:2b:01:02:03:04:05", "mo": -12.34,
                "a_i": [1, null, 3], "a_t": ["a", "b c", null], "a_m": ["sad", "happy"],
                "a_2": [[1, 2], [3, 4]], "a_n": [1.5, "NaN"], "a_ts": ["2023-12-31T22:00:00Z"]
            }),
        ),
        row(
            2,
            json!({
                "i8": 9007199254740991_i64, "n": "NaN", "f4": "NaN", "f8": "-Infinity",
                "d": "2024-02-29", "ts": "1999-12-31T23:59:59.999999",
                "tstz": "2024-05-01T10:00:00Z", "iv": "PT0S", "ip": "::1", "a_i": []
            }),
        ),
        row(
            3,
            json!({
                "i8": "9007199254740992", "n": "Infinity", "f8": "Infinity", "d": "-0043-03-15",
                "iv": "P-1M-2DT-3.000001S", "ip": "2001:db8::1/64"
            }),
        ),
        row(4, json!({"i8": "-9223372036854775808", "n": -0.000123})),
        row(5, json!({"n": 12.5})),
        row(6, json!({"n": 123456789012345_i64})),
        row(7, json!({"n": "1234567890.123456"})),
        row(8, json!({"n": "-Infinity"})),
        row(9, json!({})),
    ];
    let want: Vec<Value> = want.into_iter().map(added).collect();
    assert_events(&project.take_delivered(), &want);
}

#[test]
fn postgres_unknown_types_are_refused_by_name() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    let project = Project::new();
    project.write_config(
        &Config::new(&wh)
            .query("SELECT 1 AS id, int4range(1, 5) AS span")
            .render(),
    );
    let out = project.ebb(&["preview", "users"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains(
            "model `users`: column `span` has type INT4RANGE, which Ebb cannot read yet; cast it to text in the query"
        ),
        "{}",
        out.stderr
    );
}

/// Each user with the SKUs they ordered, oldest first: Postgres's
/// `ARRAY_AGG(… ORDER BY …)` where Snowflake writes `WITHIN GROUP`.
#[test]
fn postgres_array_agg_becomes_a_json_array() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    wh.exec_script(
        "CREATE TABLE orders (id int PRIMARY KEY, user_id int, sku text, created_at timestamptz);
         INSERT INTO users (id, email, plan) VALUES (1, 'ann@example.com', 'pro'), (2, 'bo@example.com', 'free');
         INSERT INTO orders VALUES
           (10, 1, 'SKU-B', '2024-03-02T00:00:00Z'),
           (11, 1, 'SKU-A', '2024-03-01T00:00:00Z'),
           (12, 2, 'SKU-C', '2024-03-05T00:00:00Z'),
           (13, 1, 'SKU-C', '2024-03-03T00:00:00Z');",
    );
    let project = Project::new();
    project.write_config(
        &Config::new(&wh)
            .query(
                "SELECT u.id, u.email, ARRAY_AGG(o.sku ORDER BY o.created_at) AS skus
                 FROM users u JOIN orders o ON o.user_id = u.id
                 GROUP BY u.id, u.email",
            )
            .render(),
    );
    project.run_ok();
    assert_events(
        &project.take_delivered(),
        &[
            added(
                json!({"id": 1, "email": "ann@example.com", "skus": ["SKU-A", "SKU-B", "SKU-C"]}),
            ),
            added(json!({"id": 2, "email": "bo@example.com", "skus": ["SKU-C"]})),
        ],
    );
}
