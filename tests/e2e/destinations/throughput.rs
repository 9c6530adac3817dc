//! Each first-party destination's end-to-end throughput, from a Postgres
//! model to its vendor fake: once with the fake answering as fast as it
//! can and the destination's budget lifted, once with the fake enforcing
//! the vendor's published rate limit and the budget left at the limit the
//! plugin declares. The second run must draw not a single 429, and should
//! reach the limit.
//!
//! In CI this is a smoke run of a few hundred rows. For the numbers in
//! BENCHMARKS.md, on a release build:
//! `EBB_DESTINATION_BENCH_ROWS=100000 cargo test --release --test e2e
//! destinations::throughput -- --nocapture`.

use std::time::{Duration, Instant};

use crate::support::config::{Config, vendor_block};
use crate::support::project::Project;
use crate::support::vendors::Gate;
use crate::support::vendors::braze::Braze;
use crate::support::vendors::customerio::CustomerIo;
use crate::support::vendors::hubspot::Hubspot;
use crate::support::vendors::mixpanel::Mixpanel;
use crate::support::vendors::salesforce::{Org, Salesforce};
use crate::support::vendors::segment::Segment;
use crate::support::warehouse::Warehouse;

/// The org the Salesforce fake accepts.
const ORG: Org = Org {
    client_id: "cid_bench",
    client_secret: "cs_bench",
    refresh_token: "rt_bench",
    object: "Contact",
    external_id: "External_Id__c",
};

/// A budget no run comes near.
const UNLIMITED: &str = "rate = { requests_per_sec = 1e9, records_per_sec = 1e9 }";

/// Rows of a smoke run.
const SMOKE_ROWS: i64 = 300;
/// Below this many rows a run is too short for its rate to mean anything.
const MEASURED_ROWS: i64 = 10_000;

/// A vendor fake as the benchmark drives it.
trait Vendor {
    const NAME: &'static str;
    /// The vendor's published limit: requests a second, and the burst its
    /// window allows; `None` when it publishes none per second.
    const LIMIT: Option<(f64, f64)>;
    fn start() -> Self;
    /// The `[destinations.out]` block and the sync's lines.
    fn destination(&self) -> (String, Vec<String>);
    fn gate(&self) -> &Gate;
    /// Records the fake accepted.
    fn accepted(&self) -> usize;
}

impl Vendor for Segment {
    const NAME: &'static str = "segment";
    const LIMIT: Option<(f64, f64)> = Some((500.0, 500.0));

    fn start() -> Segment {
        Segment::start("wk_bench")
    }

    fn destination(&self) -> (String, Vec<String>) {
        let block = vendor_block(
            "segment",
            &self.http.host(),
            &format!(
                "write_key = \"wk_bench\", endpoint = \"{}\"",
                self.http.endpoint()
            ),
        );
        (block, vec!["action = \"identify\"".to_owned()])
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn accepted(&self) -> usize {
        self.calls().len()
    }
}

impl Vendor for CustomerIo {
    const NAME: &'static str = "customerio";
    const LIMIT: Option<(f64, f64)> = Some((100.0, 100.0));

    fn start() -> CustomerIo {
        CustomerIo::start("site_bench", "key_bench")
    }

    fn destination(&self) -> (String, Vec<String>) {
        let block = vendor_block(
            "customerio",
            &self.http.host(),
            &format!(
                "site_id = \"site_bench\", api_key = \"key_bench\", endpoint = \"{}\"",
                self.http.endpoint()
            ),
        );
        (block, vec!["action = \"identify_person\"".to_owned()])
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn accepted(&self) -> usize {
        self.entries().len()
    }
}

impl Vendor for Hubspot {
    const NAME: &'static str = "hubspot";
    const LIMIT: Option<(f64, f64)> = Some((19.0, 190.0));

    fn start() -> Hubspot {
        Hubspot::start("pat_bench")
    }

    fn destination(&self) -> (String, Vec<String>) {
        let block = vendor_block(
            "hubspot",
            &self.http.host(),
            &format!(
                "token = \"pat_bench\", object = \"contacts\", id_property = \"email\", endpoint = \"{}\"",
                self.http.endpoint()
            ),
        );
        (block, Vec::new())
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn accepted(&self) -> usize {
        self.upserted().len()
    }
}

impl Vendor for Salesforce {
    const NAME: &'static str = "salesforce";
    const LIMIT: Option<(f64, f64)> = None;

    fn start() -> Salesforce {
        Salesforce::start(ORG)
    }

    fn destination(&self) -> (String, Vec<String>) {
        let config = format!(
            "login_url = \"{}\", client_id = \"{}\", client_secret = \"{}\", object = \"{}\", external_id = \"{}\"",
            self.http.endpoint(),
            ORG.client_id,
            ORG.client_secret,
            ORG.object,
            ORG.external_id
        );
        let sync = vec!["action = \"upsert\"".to_owned()];
        (vendor_block("salesforce", &self.http.host(), &config), sync)
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn accepted(&self) -> usize {
        self.upserted().len()
    }
}

impl Vendor for Mixpanel {
    const NAME: &'static str = "mixpanel";
    /// 30,000 events a second in requests of 2,000; the window is a
    /// minute.
    const LIMIT: Option<(f64, f64)> = Some((15.0, 900.0));

    fn start() -> Mixpanel {
        Mixpanel::start("42", "sa.bench", "secret_bench", "tok_bench")
    }

    fn destination(&self) -> (String, Vec<String>) {
        let config = format!(
            "project_id = 42, service_account = \"sa.bench\", secret = \"secret_bench\", project_token = \"tok_bench\", endpoint = \"{}\"",
            self.http.endpoint()
        );
        let sync = vec!["action = \"user\"".to_owned()];
        (vendor_block("mixpanel", &self.http.host(), &config), sync)
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn accepted(&self) -> usize {
        self.profiles().len()
    }
}

impl Vendor for Braze {
    const NAME: &'static str = "braze";
    const LIMIT: Option<(f64, f64)> = Some((1000.0, 3000.0));

    fn start() -> Braze {
        Braze::start("key_bench")
    }

    fn destination(&self) -> (String, Vec<String>) {
        let config = format!(
            "api_key = \"key_bench\", endpoint = \"{}\"",
            self.http.endpoint()
        );
        let sync = vec!["action = \"attributes\"".to_owned()];
        (vendor_block("braze", &self.http.host(), &config), sync)
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn accepted(&self) -> usize {
        self.objects("attributes").len()
    }
}

/// One run's numbers.
struct Measured {
    wall: Duration,
    records_per_sec: f64,
    requests_per_sec: f64,
    refused: usize,
}

/// Runs the sync once into a fresh fake (limited or not) and state.
fn measure<V: Vendor>(wh: &Warehouse, rows: i64, limit: Option<(f64, f64)>) -> Measured {
    let project = Project::new();
    let fake = V::start();
    if let Some((per_sec, burst)) = limit {
        fake.gate().limit(per_sec, burst);
    }
    let (block, lines) = fake.destination();
    let mut config = Config::new(wh).destination(&block);
    if limit.is_none() {
        // Lifts the limit the plugin declares: the fake answers at once.
        config = config.destination_setting(UNLIMITED);
    }
    let config = lines.iter().fold(config, |c, line| c.sync(line));
    project.write_config(&config.render());
    let started = Instant::now();
    let run = project.run_ok();
    let wall = started.elapsed();
    assert_eq!(run.count("added"), rows as u64, "{}", V::NAME);
    assert_eq!(fake.accepted(), rows as usize, "{}", V::NAME);
    Measured {
        wall,
        records_per_sec: rows as f64 / wall.as_secs_f64(),
        requests_per_sec: fake.gate().admitted().per_sec(),
        refused: fake.gate().refused(),
    }
}

fn bench<V: Vendor>(wh: &Warehouse, rows: i64) {
    let free = measure::<V>(wh, rows, None);
    let unlimited = format!(
        "| `ebb:{}` | {:.2} s | {:.0} | {:.1} |",
        V::NAME,
        free.wall.as_secs_f64(),
        free.records_per_sec,
        free.requests_per_sec,
    );
    let Some((per_sec, burst)) = V::LIMIT else {
        println!("{unlimited} none per second | | | | |");
        return;
    };
    let limited = measure::<V>(wh, rows, V::LIMIT);
    let share = limited.requests_per_sec / per_sec;
    println!(
        "{unlimited} {per_sec:.0} req/s (burst {burst:.0}) | {:.2} s | {:.0} | {:.1} ({:.0} %) | {} |",
        limited.wall.as_secs_f64(),
        limited.records_per_sec,
        limited.requests_per_sec,
        share * 100.0,
        limited.refused,
    );
    assert_eq!(
        limited.refused,
        0,
        "{}: the budget let 429s through",
        V::NAME
    );
    // A limit binds when the unlimited run sent faster than it allows;
    // then the budget should come within 10 % of it.
    if rows >= MEASURED_ROWS && free.requests_per_sec > per_sec {
        assert!(
            share >= 0.9,
            "{}: {:.0} % of the limit",
            V::NAME,
            share * 100.0
        );
    }
}

#[test]
fn each_destination_keeps_to_its_vendors_limit_without_a_429() {
    let Some(wh) = Warehouse::postgres() else {
        return;
    };
    let rows = std::env::var("EBB_DESTINATION_BENCH_ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SMOKE_ROWS);
    wh.insert_users(1..=rows);
    println!(
        "| destination | unlimited: wall | records/s | requests/s | vendor limit | at the limit: wall | records/s | requests/s | 429s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    bench::<Segment>(&wh, rows);
    bench::<Hubspot>(&wh, rows);
    bench::<Salesforce>(&wh, rows);
    bench::<Mixpanel>(&wh, rows);
    bench::<Braze>(&wh, rows);
    bench::<CustomerIo>(&wh, rows);
}
