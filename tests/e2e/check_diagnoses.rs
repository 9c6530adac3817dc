//! `ebb check` names what is wrong with a source or model in one line: the
//! network, TLS, credentials, grants, the SQL, or the clock. Servers that
//! misbehave are local listeners; the rest is the local Postgres.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::support::cmd::Output;
use crate::support::project::Project;
use crate::support::warehouse::Warehouse;

/// `ebb check` on a config of `sources` and one model `m` reading `query`
/// from source `wh`.
fn check(project: &Project, sources: &str, query: &str) -> Output {
    project.write_config(&format!(
        "{sources}\n[models.m]\nsource = \"wh\"\nprimary_key = \"id\"\nquery = \"{query}\"\n"
    ));
    project.ebb(&["check"])
}

/// The `error:` lines of a failed check.
fn errors(out: &Output) -> Vec<&str> {
    assert_eq!(out.code, Some(1), "a failed check exits 1: {out:#?}");
    out.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .collect()
}

fn postgres_source(kind: &str, url: &str) -> String {
    format!("[sources.wh]\nkind = \"{kind}\"\nurl = \"{url}\"\nconnect_timeout_secs = 1\n")
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    listener.local_addr().expect("local address").port()
}

/// A listener that accepts connections and hands each to `serve` on its
/// own thread, for the life of the test process.
fn listener(serve: fn(TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

/// Holds the connection open and never says a word.
fn silent(stream: TcpStream) {
    let mut stream = stream;
    let _ = stream.read_to_end(&mut Vec::new());
}

/// Answers a Postgres SSLRequest with `N` (no TLS here), as a server
/// without TLS does.
fn without_tls(mut stream: TcpStream) {
    let mut request = [0_u8; 8];
    if stream.read_exact(&mut request).is_ok() {
        let _ = stream.write_all(b"N");
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

#[test]
fn check_reports_a_refused_connection() {
    let port = closed_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let out = check(
        &Project::new(),
        &postgres_source("postgres", &url),
        "SELECT 1 AS id",
    );
    let errors = errors(&out);
    assert_eq!(errors.len(), 1, "{out:#?}");
    let prefix = format!("source `wh`: connection failed: 127.0.0.1:{port}: ");
    assert!(
        errors[0].starts_with(&prefix) && errors[0].contains("refused"),
        "{}",
        errors[0]
    );
}

#[test]
fn check_reports_an_unresolvable_host_at_redshifts_default_port() {
    let source = postgres_source("redshift", "postgres://ebb@ebb-e2e-nowhere.invalid/dev");
    let out = check(&Project::new(), &source, "SELECT 1 AS id");
    let errors = errors(&out);
    assert_eq!(errors.len(), 1, "{out:#?}");
    assert!(
        errors[0].starts_with(
            "source `wh`: connection failed: ebb-e2e-nowhere.invalid:5439: failed to lookup address"
        ),
        "{}",
        errors[0]
    );
}

#[test]
fn check_reports_tls_required_by_a_server_without_it() {
    let port = listener(without_tls);
    let url = format!("postgres://postgres@127.0.0.1:{port}/test?sslmode=require");
    let out = check(
        &Project::new(),
        &postgres_source("postgres", &url),
        "SELECT 1 AS id",
    );
    assert_eq!(
        errors(&out),
        [format!(
            "source `wh`: TLS failed: 127.0.0.1:{port}: server does not support TLS"
        )]
    );
}

#[test]
fn check_times_out_on_a_server_that_never_answers() {
    let port = listener(silent);
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let out = check(
        &Project::new(),
        &postgres_source("postgres", &url),
        "SELECT 1 AS id",
    );
    assert_eq!(
        errors(&out),
        [
            "source `wh`: timed out: no answer within 1 s; check the host and port, or raise connect_timeout_secs"
        ]
    );
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
}

#[test]
fn check_reports_an_unknown_role() {
    let Some(_wh) = Warehouse::postgres() else {
        return;
    };
    let url = "postgres://ebb_e2e_no_such_role@127.0.0.1:5432/test";
    let out = check(
        &Project::new(),
        &postgres_source("postgres", url),
        "SELECT 1 AS id",
    );
    assert_eq!(
        errors(&out),
        [
            r#"source `wh`: authentication failed: 127.0.0.1:5432: role "ebb_e2e_no_such_role" does not exist"#
        ]
    );
}

/// A role that may log in and see the schema but not read `secrets`;
/// dropped when the test ends.
struct Role<'a> {
    wh: &'a Warehouse,
    name: String,
}

impl Drop for Role<'_> {
    fn drop(&mut self) {
        self.wh.exec(&format!("DROP OWNED BY {}", self.name));
        self.wh.exec(&format!("DROP ROLE {}", self.name));
    }
}

#[test]
fn check_reports_a_table_the_user_cannot_read_and_every_other_problem() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    let role = Role {
        wh: &wh,
        name: format!("ebb_e2e_reader_{}", std::process::id()),
    };
    wh.exec("CREATE TABLE secrets (id INTEGER PRIMARY KEY, token TEXT)");
    wh.exec(&format!("CREATE ROLE {} LOGIN", role.name));
    let schema = wh.schema().expect("a Postgres schema");
    wh.exec(&format!("GRANT USAGE ON SCHEMA {schema} TO {}", role.name));
    wh.exec(&format!("GRANT SELECT ON users TO {}", role.name));

    let project = Project::new();
    let reader = wh.source_toml().replace(
        "postgres://postgres@",
        &format!("postgres://{}@", role.name),
    );
    project.write_config(&format!(
        r#"{reader}
[models.m]
source = "wh"
primary_key = "id"
query = "SELECT id, token FROM secrets"

[models.readable]
source = "wh"
primary_key = "id"
query = "SELECT id, email FROM users"

[models.typo]
source = "wh"
primary_key = "id"
query = "SELECT id, email FORM users"

[models.shapes]
source = "wh"
primary_key = "id"
query = "SELECT id, point(id, id) AS spot FROM users"
"#
    ));
    let out = project.ebb(&["check"]);
    assert_eq!(
        errors(&out),
        [
            "model `m`: permission denied: permission denied for table secrets",
            "model `shapes`: column `spot` has type POINT, which Ebb cannot read yet; cast it to text in the query",
            r#"model `typo`: SQL error: syntax error at or near "users" (at character 23 of the query)"#,
        ],
        "{out:#?}"
    );
    assert!(out.stdout.contains("source `wh`: ok\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("model `readable`: ok (full: "),
        "{}",
        out.stdout
    );
}

#[test]
fn check_reports_sqlite_sql_errors_and_passes_good_models() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    project.write_config(&format!(
        "{}\n[models.m]\nsource = \"wh\"\nprimary_key = \"id\"\nquery = \"SELECT id, nope FROM users\"\n\
         [models.fine]\nsource = \"wh\"\nprimary_key = \"id\"\nquery = \"SELECT id FROM users WHERE id > {{{{last_sync_time}}}};\"\n",
        wh.source_toml()
    ));
    let out = project.ebb(&["check"]);
    let errors = errors(&out);
    assert_eq!(errors.len(), 1, "{out:#?}");
    assert!(
        errors[0].starts_with("model `m`: SQL error: ")
            && errors[0].contains("no such column: nope"),
        "{}",
        errors[0]
    );
    assert!(out.stdout.contains("model `fine`: ok (incremental: the query uses {{last_sync_time}} at line 1; deletions are not detected)"), "{}", out.stdout);
}
