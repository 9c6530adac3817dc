//! Egress is granted, not assumed: a destination whose `allow_hosts` does
//! not name the endpoint cannot reach it, says so, and commits nothing.

use crate::changes::all_added;
use crate::support::config::Config;
use crate::support::events::assert_events;
use crate::support::project::{Project, SYNC};
use crate::support::server::Server;
use crate::support::warehouse::Warehouse;

#[test]
fn destination_cannot_reach_a_host_it_was_not_granted() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let server = Server::start();
    // Same address, another port: the grant is per host:port.
    let other_port = format!("127.0.0.1:{}", server_port(&server) ^ 1);
    project.write_config(&Config::new(&wh).http(&server, &other_port, 10).render());

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

fn server_port(server: &Server) -> u16 {
    server
        .host()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("host:port")
}
