//! Egress is granted, not assumed: a destination whose `allow_hosts` does
//! not name the endpoint cannot reach it, says so, and commits nothing;
//! no spelling of an address gets around the grant, and a granted name
//! that resolves to loopback is refused unless that address is granted.

use crate::changes::all_added;
use crate::support::config::Config;
use crate::support::events::assert_events;
use crate::support::project::{Project, SYNC};
use crate::support::server::{Reply, Server};
use crate::support::warehouse::Warehouse;

#[test]
fn destination_cannot_reach_a_host_it_was_not_granted() {
    let project = Project::new();
    let (wh, server) = granted_another_port(&project);

    let run = project.ebb(&["run", SYNC, "--format", "json"]);
    assert!(
        matches!(run.code, Some(1 | 2)),
        "an unreachable destination must fail the run: {run:#?}"
    );
    assert!(
        server.requests().is_empty(),
        "the server was reached: {:#?}",
        server.requests()
    );
    let mut text = run.text();
    if project.state_db().exists() {
        text.push_str(&project.ebb_ok(&["errors", SYNC, "--format", "json"]));
    }
    let text = text.to_lowercase();
    assert!(
        text.contains("denied") || text.contains("allow_hosts"),
        "the error must say the request was denied / not in allow_hosts:\n{text}"
    );

    // Nothing was committed: once granted, every row goes out.
    project.write_config(&Config::new(&wh).http(&server, &server.host(), 10).render());
    project.run_ok();
    assert_events(&server.accepted(), &all_added(1..=3));
}

/// Every way of writing an address the grant does not name: none reaches
/// the server, each run fails, and the next run with the real grant
/// delivers every row.
#[test]
fn no_spelling_of_an_address_gets_around_the_grant() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    let server = Server::start();
    let port = server_port(&server);
    let granted = server.host();
    for url in [
        format!("http://127.0.0.2:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f000001:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://{granted}@127.0.0.2:{port}/"),
        format!("http://user@127.0.0.2:{port}/"),
    ] {
        project.write_config(&http_to(&wh, &url, &[&granted]));
        let run = project.ebb(&["run", SYNC, "--format", "json"]);
        assert_ne!(run.code, Some(0), "{url} was let through: {}", run.text());
        assert!(
            server.requests().is_empty(),
            "{url} reached the server: {:#?}",
            server.requests()
        );
    }
    project.write_config(&Config::new(&wh).http(&server, &granted, 10).render());
    project.run_ok();
    assert_events(&server.accepted(), &all_added(1..=2));
}

/// `localhost` granted by name resolves to a loopback address, which is
/// reached only once that address is granted too.
#[test]
fn a_granted_name_resolving_to_loopback_is_refused_until_the_address_is_granted() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    let server = Server::start();
    let port = server_port(&server);
    let url = format!("http://localhost:{port}/ingest");
    let by_name = format!("localhost:{port}");
    project.write_config(&http_to(&wh, &url, &[&by_name]));

    let run = project.run();
    assert_ne!(run.status(), "success");
    assert!(server.requests().is_empty(), "{:#?}", server.requests());
    let errors = format!("{} {:?}", run.output.text(), project.errors());
    for needle in [
        "resolves to",
        "a loopback address",
        &format!("{port}` to allow_hosts"),
    ] {
        assert!(errors.contains(needle), "must say {needle:?}: {errors}");
    }

    project.write_config(&http_to(&wh, &url, &[&by_name, &server.host()]));
    let run = project.run();
    assert_eq!(run.status(), "success", "{:#?}", project.errors());
    assert_events(&server.accepted(), &all_added(1..=2));
}

/// A destination reads at most `limits.http_response_bytes` of an answer:
/// past it the batch fails saying so, and nothing is lost.
#[test]
fn a_huge_answer_is_cut_off_at_the_response_limit() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=2);
    let server = Server::start();
    server.script(None, Reply::Huge(1 << 20), 1);
    let config = Config::new(&wh)
        .http(&server, &server.host(), 10)
        .sync("retry = { max_attempts = 1 }")
        .render();
    project.write_config(&format!("{config}\n[limits]\nhttp_response_bytes = 4096\n"));

    let run = project.run();
    assert_ne!(run.status(), "success");
    let errors = format!("{} {:?}", run.output.text(), project.errors());
    assert!(
        errors.contains("limits.http_response_bytes (4096)"),
        "must name the limit: {errors}"
    );
    // The destination got the batch before its answer was cut off, so it
    // comes again (delivery is at least once).
    project.run_ok();
    let last = server.requests().pop().expect("a request");
    assert_events(&last.events, &all_added(1..=2));
}

/// `ebb:http` posting to `url`, granted `hosts`.
fn http_to(wh: &Warehouse, url: &str, hosts: &[&str]) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    Config::new(wh)
        .destination(&format!(
            r#"[destinations.out]
plugin = "ebb:http"
allow_hosts = [{hosts}]
max_in_flight = 1
timeout_secs = 3
config = {{ url = "{url}", batch_size = 10 }}
"#,
            hosts = hosts.join(", ")
        ))
        .sync("retry = { max_attempts = 1 }")
        .render()
}

/// Three users and an `ebb:http` destination whose `allow_hosts` grants
/// the sink's address on another port (the grant is per host:port).
fn granted_another_port(project: &Project) -> (Warehouse, Server) {
    let wh = Warehouse::sqlite(project);
    wh.insert_users(1..=3);
    let server = Server::start();
    let other_port = format!("127.0.0.1:{}", server_port(&server) ^ 1);
    project.write_config(&Config::new(&wh).http(&server, &other_port, 10).render());
    (wh, server)
}

fn server_port(server: &Server) -> u16 {
    server
        .host()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("host:port")
}

/// `ebb check` reads every URL of a destination's config, at any depth,
/// against its `allow_hosts`: a grant that misses one fails the check
/// naming the key, not every row of the first run.
#[test]
fn check_refuses_a_config_url_that_allow_hosts_does_not_grant() {
    let project = Project::new();
    let (_wh, server) = granted_another_port(&project);

    let out = project.ebb(&["check"]);
    assert_eq!(out.code, Some(1), "{}", out.text());
    let expected = format!(
        "destinations.out.allow_hosts does not grant `{}` (config.url names it)",
        server.host()
    );
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    assert!(server.requests().is_empty());
}
