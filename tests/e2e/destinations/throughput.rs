//! Each first-party destination's end-to-end throughput, from a Postgres
//! model to its vendor fake: once with the fake answering as fast as it
//! can, once with the fake enforcing the vendor's published rate limit and
//! the destination's budget left at the limit its plugin declares. The
//! second run must draw not a single 429, and should reach the limit.
//!
//! In CI this is a smoke run of a few hundred rows. For the numbers in
//! BENCHMARKS.md, on a release build:
//! `EBB_DESTINATION_BENCH_ROWS=100000 cargo test --release --test e2e
//! destinations::throughput -- --nocapture`.

use std::time::{Duration, Instant};

use crate::support::config::Config;
use crate::support::project::Project;
use crate::support::vendors::Gate;
use crate::support::vendors::customerio::CustomerIo;
use crate::support::vendors::hubspot::Hubspot;
use crate::support::vendors::segment::Segment;
use crate::support::warehouse::Warehouse;

/// Rows of a smoke run.
const SMOKE_ROWS: i64 = 300;
/// Below this many rows a run is too short for its rate to mean anything.
const MEASURED_ROWS: i64 = 10_000;

/// A vendor fake as the benchmark drives it.
trait Vendor {
    const NAME: &'static str;
    /// The vendor's published limit: requests a second, and the burst its
    /// window allows.
    const LIMIT: (f64, f64);
    fn start() -> Self;
    /// The `[destinations.out]` block and the sync's lines.
    fn destination(&self) -> (String, Vec<String>);
    fn gate(&self) -> &Gate;
    /// Records the fake accepted.
    fn accepted(&self) -> usize;
}

impl Vendor for Segment {
    const NAME: &'static str = "segment";
    const LIMIT: (f64, f64) = (500.0, 500.0);

    fn start() -> Segment {
        Segment::start("wk_bench")
    }

    fn destination(&self) -> (String, Vec<String>) {
        let block = format!(
            "[destinations.out]\nplugin = \"ebb:segment\"\nallow_hosts = [\"{}\"]\nconfig = {{ write_key = \"wk_bench\", endpoint = \"{}\" }}\n",
            self.host(),
            self.endpoint()
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
    const LIMIT: (f64, f64) = (100.0, 100.0);

    fn start() -> CustomerIo {
        CustomerIo::start("site_bench", "key_bench")
    }

    fn destination(&self) -> (String, Vec<String>) {
        let block = format!(
            "[destinations.out]\nplugin = \"ebb:customerio\"\nallow_hosts = [\"{}\"]\nconfig = {{ site_id = \"site_bench\", api_key = \"key_bench\", endpoint = \"{}\" }}\n",
            self.host(),
            self.endpoint()
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
    const LIMIT: (f64, f64) = (19.0, 190.0);

    fn start() -> Hubspot {
        Hubspot::start("pat_bench")
    }

    fn destination(&self) -> (String, Vec<String>) {
        let block = format!(
            "[destinations.out]\nplugin = \"ebb:hubspot\"\nallow_hosts = [\"{}\"]\nconfig = {{ token = \"pat_bench\", object = \"contacts\", id_property = \"email\", endpoint = \"{}\" }}\n",
            self.host(),
            self.endpoint()
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

/// One run's numbers.
struct Measured {
    wall: Duration,
    records_per_sec: f64,
    requests_per_sec: f64,
    refused: usize,
}

/// Runs the sync once into a fresh fake (limited or not) and state.
fn measure<V: Vendor>(wh: &Warehouse, rows: i64, limited: bool) -> Measured {
    let project = Project::new();
    let fake = V::start();
    if limited {
        fake.gate().limit(V::LIMIT.0, V::LIMIT.1);
    }
    let (block, lines) = fake.destination();
    let config = lines
        .iter()
        .fold(Config::new(wh).destination(&block), |c, line| c.sync(line));
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
    let free = measure::<V>(wh, rows, false);
    let limited = measure::<V>(wh, rows, true);
    let share = limited.requests_per_sec / V::LIMIT.0;
    println!(
        "| `ebb:{}` | {:.2} s | {:.0} | {:.0} req/s | {:.2} s | {:.0} | {:.1} req/s ({:.0} %) | {} |",
        V::NAME,
        free.wall.as_secs_f64(),
        free.records_per_sec,
        V::LIMIT.0,
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
    if rows >= MEASURED_ROWS && free.requests_per_sec > V::LIMIT.0 {
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
        "| destination | unlimited: wall | records/s | vendor limit | limited: wall | records/s | requests/s sent | 429s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    bench::<Segment>(&wh, rows);
    bench::<Hubspot>(&wh, rows);
    bench::<CustomerIo>(&wh, rows);
}
