//! How fast Ebb's extract stage reads a model, next to the database's own
//! command-line client dumping the same rows.
//!
//! A table of 10 columns (bigint, text ×3, double, numeric, boolean,
//! timestamptz, timestamp, jsonb / their MySQL equivalents) is created in a
//! schema of its own, then read in turns (interleaved, so machine noise hits
//! both alike):
//! - `ebb`: the source's streaming read as a sync runs it (read-only
//!   transaction, every value decoded into a JSON record), rows counted;
//! - `client`: `psql -c "COPY (…) TO STDOUT" > /dev/null` for Postgres,
//!   `mariadb -e "SELECT …" > /dev/null` for MariaDB: the database's own
//!   fastest text export, the floor any reader can hope for.
//!
//! The ratio `client / ebb` is the fraction of the client's speed Ebb
//! reaches (target ≥ 0.8).
//!
//! `cargo bench -p ebb --bench extract [-- --rows N] [--quick]`; `--quick`
//! reads 10,000 rows once (a smoke run). Needs the local Postgres and
//! MariaDB and their clients (`psql`, `mariadb`).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ebb::config::Config;
use ebb::extract::{self, Templates};
use ebb::source::Warehouse;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MARIADB_URL: &str = "mysql://root@127.0.0.1:3306";

struct Settings {
    rows: u64,
    rounds: usize,
}

fn settings() -> anyhow::Result<Settings> {
    let mut s = Settings {
        rows: 1_000_000,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {
                s.rows = 10_000;
                s.rounds = 1;
            }
            "--rows" => {
                s.rows = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .context("--rows takes a number")?;
            }
            // cargo passes `--bench`; anything else is a mistake.
            "--bench" => {}
            other => bail!("unknown argument {other}; use --rows N or --quick"),
        }
    }
    Ok(s)
}

/// One database the benchmark reads from.
struct Target {
    name: &'static str,
    /// The `[sources.wh]` block for Ebb.
    source_toml: String,
    /// The query both readers run.
    query: String,
    /// The client command dumping the query's rows to stdout.
    client: Command,
}

fn postgres(schema: &str, rows: u64) -> anyhow::Result<Target> {
    psql(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.wide AS SELECT
           g::bigint AS id,
           'user' || g || '@example.com' AS email,
           'User Number ' || g AS name,
           (ARRAY['free','pro','team'])[g % 3 + 1] AS plan,
           g * 0.25::double precision AS score,
           (g % 100000)::numeric(12,2) / 100 AS amount,
           g % 2 = 0 AS active,
           timestamptz '2024-01-01 00:00:00Z' + g * interval '1 second' AS created_at,
           timestamp '2024-01-01 00:00:00' + g * interval '1 minute' AS updated_at,
           jsonb_build_object('n', g, 'tag', 't' || g % 10) AS attrs
         FROM generate_series(1, {rows}) AS g;"
    ))?;
    let query = format!("SELECT * FROM {schema}.wide");
    let mut client = Command::new("psql");
    client.args([
        "-X",
        "-q",
        PG_URL,
        "-c",
        &format!("COPY ({query}) TO STDOUT"),
    ]);
    Ok(Target {
        name: "postgres",
        source_toml: format!("kind = \"postgres\"\nurl = \"{PG_URL}\""),
        query,
        client,
    })
}

fn mariadb(database: &str, rows: u64) -> anyhow::Result<Target> {
    mariadb_run(&format!(
        "CREATE DATABASE {database};
         CREATE TABLE {database}.wide (
           id BIGINT PRIMARY KEY, email VARCHAR(64), name VARCHAR(64), plan VARCHAR(8),
           score DOUBLE, amount DECIMAL(12,2), active BOOL, created_at TIMESTAMP(0),
           updated_at DATETIME, attrs JSON);
         INSERT INTO {database}.wide SELECT
           seq, CONCAT('user', seq, '@example.com'), CONCAT('User Number ', seq),
           ELT(seq % 3 + 1, 'free', 'pro', 'team'), seq * 0.25, (seq % 100000) / 100,
           seq % 2 = 0, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND,
           TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq MINUTE,
           JSON_OBJECT('n', seq, 'tag', CONCAT('t', seq % 10))
         FROM {database}.seq_1_to_{rows};"
    ))?;
    let query = format!("SELECT * FROM {database}.wide");
    let mut client = Command::new("mariadb");
    client.args(["-h127.0.0.1", "-uroot", "--quick", "-N", "-B", "-e", &query]);
    Ok(Target {
        name: "mariadb",
        source_toml: format!("kind = \"mysql\"\nurl = \"{MARIADB_URL}/{database}\""),
        query,
        client,
    })
}

fn mariadb_run(sql: &str) -> anyhow::Result<()> {
    let status = Command::new("mariadb")
        .args(["-h127.0.0.1", "-uroot", "-e", sql])
        .stdout(Stdio::null())
        .status()
        .context("running mariadb")?;
    if !status.success() {
        bail!("mariadb failed: {sql}");
    }
    Ok(())
}

fn psql(sql: &str) -> anyhow::Result<()> {
    let status = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", PG_URL, "-c", sql])
        .stdout(Stdio::null())
        .status()
        .context("running psql")?;
    if !status.success() {
        bail!("psql failed: {sql}");
    }
    Ok(())
}

/// Reads every row of the target's query through Ebb's source; returns the
/// row count.
async fn ebb_read(target: &Target, dir: &Path) -> anyhow::Result<u64> {
    let file = dir.join(format!("{}.toml", target.name));
    std::fs::write(
        &file,
        format!(
            "[sources.wh]\n{}\n[models.wide]\nsource = \"wh\"\nprimary_key = \"id\"\nquery = \"{}\"\n",
            target.source_toml, target.query
        ),
    )?;
    let cfg = Config::load(&file)?;
    let model = cfg.model("wide")?;
    let source = &cfg.sources[&model.source];
    let query = extract::bind(model, source.kind, &Templates::first_run(model))
        .map_err(anyhow::Error::msg)?;
    let mut chunks = Warehouse::connect(source).await?.stream(query);
    let mut rows = 0;
    while let Some(chunk) = chunks.recv().await {
        rows += chunk?.len() as u64;
    }
    Ok(rows)
}

fn client_read(target: &mut Target) -> anyhow::Result<()> {
    let status = target
        .client
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running the {} client", target.name))?;
    if !status.success() {
        bail!("the {} client failed", target.name);
    }
    Ok(())
}

fn rate(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

async fn measure(target: &mut Target, s: &Settings, dir: &Path) -> anyhow::Result<()> {
    let mut best_ebb = Duration::MAX;
    let mut best_client = Duration::MAX;
    for _ in 0..s.rounds {
        let t = Instant::now();
        let n = ebb_read(target, dir).await?;
        best_ebb = best_ebb.min(t.elapsed());
        if n != s.rows {
            bail!("{}: Ebb read {n} rows, expected {}", target.name, s.rows);
        }
        let t = Instant::now();
        client_read(target)?;
        best_client = best_client.min(t.elapsed());
    }
    println!(
        "{:<9} {:>9} rows  ebb {:>8.2} s {:>10.0} rows/s   client {:>8.2} s {:>10.0} rows/s   ebb/client speed {:.2}",
        target.name,
        s.rows,
        best_ebb.as_secs_f64(),
        rate(s.rows, best_ebb),
        best_client.as_secs_f64(),
        rate(s.rows, best_client),
        best_client.as_secs_f64() / best_ebb.as_secs_f64(),
    );
    Ok(())
}

/// Rows are built on the reading task's thread and freed on the diff's;
/// mimalloc frees across threads without the arena locks glibc takes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match bench().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("extract bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench() -> anyhow::Result<()> {
    let s = settings()?;
    let dir = tempfile::tempdir()?;
    let name = format!("ebb_bench_extract_{}", std::process::id());
    let mut pg = postgres(&name, s.rows)?;
    let result = measure(&mut pg, &s, dir.path()).await;
    psql(&format!("DROP SCHEMA {name} CASCADE"))?;
    result?;
    let mut maria = mariadb(&name, s.rows)?;
    let result = measure(&mut maria, &s, dir.path()).await;
    mariadb_run(&format!("DROP DATABASE {name}"))?;
    result
}
