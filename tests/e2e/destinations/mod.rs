//! The first-party destinations against local fakes of their vendors'
//! APIs: what a run sends is what the vendor's reference asks for, the
//! vendor's refusals and throttling are handled, and nothing is lost.
//! Every sync to one destination shares its rate budget. One module per
//! destination.

mod braze;
mod customerio;
mod hubspot;
mod mixpanel;
mod salesforce;
mod segment;
mod test_record;
mod throughput;

use crate::support::config::Config;
use crate::support::project::{Project, SYNC};
use crate::support::server::Server;
use crate::support::serving::{Serving, server_toml};
use crate::support::warehouse::Warehouse;

/// Asserts that exactly the records `keys` are owed, each with an error
/// saying every one of `says`.
fn assert_owed(project: &Project, keys: &[&str], says: &[&str]) {
    let errors = project.errors();
    let mut owed: Vec<&str> = errors.iter().filter_map(|e| e["key"].as_str()).collect();
    owed.sort_unstable();
    assert_eq!(owed, keys, "{errors:#?}");
    for error in &errors {
        let message = error["error"].as_str().unwrap_or_default();
        for said in says {
            assert!(message.contains(said), "{said:?} not in {message}");
        }
    }
}

/// Two syncs to one destination with a budget of 4 requests a second,
/// running at once under `ebb serve`, together send at most 4 a second,
/// and both deliver everything.
#[test]
fn syncs_to_one_destination_share_its_request_budget() {
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=6);
    let server = Server::start();
    let config = Config::new(&wh)
        .http(&server, &server.host(), 1)
        .destination_setting("rate = { requests_per_sec = 4 }")
        .render()
        .replace("max_in_flight = 1", "max_in_flight = 4");
    project.write_config(&format!(
        "{config}\n[syncs.users_again]\nmodel = \"users\"\ndestination = \"out\"\n{}",
        server_toml()
    ));
    let mut serving = Serving::start(&project);
    let runs = [SYNC, "users_again"].map(|sync| (sync, serving.trigger(sync)));
    for (sync, run) in runs {
        let run = serving.finished(sync, run);
        assert_eq!(run["status"], "success", "{sync}: {run:#}");
    }

    let requests = server.requests();
    assert_eq!(requests.len(), 12, "six rows, one request each, per sync");
    let first = requests.first().unwrap().at;
    let span = requests.last().unwrap().at - first;
    // Slots are 250 ms apart when requests leave; arriving, one may be a
    // few milliseconds late and the next on time, so a window of 1 s may
    // see the fifth slot at its edge, never more.
    for (i, request) in requests.iter().enumerate() {
        let within_a_second = requests[i..]
            .iter()
            .take_while(|r| r.at - request.at < std::time::Duration::from_secs(1))
            .count();
        assert!(
            within_a_second <= 5,
            "{within_a_second} requests within 1 s"
        );
    }
    let per_sec = (requests.len() - 1) as f64 / span.as_secs_f64();
    assert!(per_sec <= 4.0 * 1.05, "{per_sec:.2} requests a second");
}
