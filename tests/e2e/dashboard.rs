//! The dashboard in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver): sign in with the token, see
//! the syncs, press "Run now", watch the run end, open the sync and read
//! its row errors with their payloads; and, with hundreds of rows owed, see
//! a run's counts while it is in progress with "Run now" off, the errors
//! grouped with their counts, page through the rows in natural key order
//! and through one group's, all on a phone's width. A screenshot of the
//! sync's page is kept as `target/tmp/dashboard.png` (and
//! `dashboard-phone.png`). Without chromedriver the test says so and skips,
//! except under `CI=true`, where it fails.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::support::config::Config;
use crate::support::project::{Project, SYNC};
use crate::support::server::{Reply, Server};
use crate::support::serving::{Serving, TOKEN, server_toml};
use crate::support::warehouse::{Warehouse, runtime};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long the page may take to show something (the first run compiles
/// the plugin in a debug build).
const WITHIN: Duration = Duration::from_secs(90);

/// chromedriver on a free loopback port, stopped with the test.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<(Driver, String)> {
    if !Path::new(CHROMEDRIVER).exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("no {CHROMEDRIVER} under CI; install chromium and chromium-driver");
        }
        eprintln!("skipping: no {CHROMEDRIVER} (apt install chromium chromium-driver)");
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    Some((Driver(child), format!("http://127.0.0.1:{port}")))
}

async fn connect(webdriver: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,900"]}),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(webdriver)
            .await
        {
            Ok(client) => return client,
            Err(e) if Instant::now() > deadline => panic!("cannot start Chromium: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Waits until the element at `css` exists and its text contains `needle`.
async fn text_shows(client: &Client, css: &str, needle: &str) -> String {
    let deadline = Instant::now() + WITHIN;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(found) = client.find(Locator::Css(css)).await
            && let Ok(text) = found.text().await
        {
            if text.contains(needle) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{css}` never showed `{needle}`; last it showed: {last:?}");
}

/// Opens the dashboard at `base` and signs in with the token.
async fn sign_in(client: &Client, base: &str) {
    client
        .goto(&format!("{base}/"))
        .await
        .expect("open the dashboard");
    let token = client
        .wait()
        .at_most(WITHIN)
        .for_element(Locator::Css("#token"))
        .await;
    token
        .expect("the token field")
        .send_keys(TOKEN)
        .await
        .expect("type the token");
    client
        .find(Locator::Css("form.login button"))
        .await
        .expect("the Open button")
        .click()
        .await
        .expect("sign in");
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
}

/// Whether the element at `css` can be pressed.
async fn enabled(client: &Client, css: &str) -> bool {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
        .is_enabled()
        .await
        .expect("whether it is enabled")
}

/// The keys of the owed rows the page shows, top to bottom.
async fn shown_keys(client: &Client) -> Vec<String> {
    let mut keys = Vec::new();
    for row in client
        .find_all(Locator::Css("#errors tbody tr"))
        .await
        .expect("the owed rows")
    {
        keys.push(
            row.attr("data-key")
                .await
                .expect("a row's key")
                .unwrap_or_default(),
        );
    }
    keys
}

fn numbers(range: impl IntoIterator<Item = i64>) -> Vec<String> {
    range.into_iter().map(|n| n.to_string()).collect()
}

/// Fails unless the page is no wider than the window.
async fn fits_the_width(client: &Client, what: &str) {
    let widths = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .expect("the page's widths");
    let (page, window) = (widths[0].as_i64(), widths[1].as_i64());
    assert!(
        page.is_some() && page <= window,
        "{what} is {page:?} px wide in a {window:?} px window"
    );
}

#[test]
fn the_dashboard_shows_syncs_runs_and_row_errors_and_runs_a_sync() {
    let Some((_driver, webdriver)) = chromedriver() else {
        return;
    };
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=3);
    let destination = Server::start();
    destination.reject("2", "email bounced");
    let config = Config::new(&wh)
        .http(&destination, &destination.host(), 10)
        .sync(r#"schedule = { cron = "0 9 * * MON-FRI", timezone = "Europe/Berlin" }"#);
    project.write_config(&format!("{}{}", config.render(), server_toml()));
    let serving = Serving::start(&project);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");

    runtime().block_on(async {
        let client = connect(&webdriver).await;
        sign_in(&client, &serving.base).await;

        let row = format!("#syncs tr[data-sync='{SYNC}']");
        let listed = text_shows(&client, &row, "never run").await;
        assert!(
            listed.contains("cron 0 9 * * MON-FRI (Europe/Berlin)"),
            "{listed}"
        );
        client
            .find(Locator::Css(&format!("{row} button")))
            .await
            .expect("Run now")
            .click()
            .await
            .expect("press Run now");
        text_shows(&client, &format!("{row} [data-status]"), "partial").await;

        client
            .find(Locator::Css(&format!("{row} a")))
            .await
            .expect("the sync's link")
            .click()
            .await
            .expect("open the sync");
        let error = text_shows(&client, "#errors tr[data-key='2']", "email bounced").await;
        assert!(error.contains("added"), "{error}");
        client
            .find(Locator::Css("#errors tr[data-key='2'] summary"))
            .await
            .expect("the payload toggle")
            .click()
            .await
            .expect("open the payload");
        text_shows(&client, "#errors tr[data-key='2'] pre", "user2@example.com").await;
        text_shows(&client, "#runs tbody tr", "partial").await;
        let page = client.find(Locator::Css("main")).await.expect("the page");
        let shown = page.text().await.expect("the page's text");
        let stray = |l: &str| matches!(l.trim(), "null" | "undefined") || l.contains("undefined");
        assert!(!shown.lines().any(stray), "{shown}");

        let png = client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(&shot, png).expect("keep the screenshot");
        client.close().await.expect("close the browser");
    });
}

#[test]
fn the_dashboard_groups_and_pages_many_owed_rows_and_fits_a_phone() {
    let Some((_driver, webdriver)) = chromedriver() else {
        return;
    };
    let project = Project::new();
    let wh = Warehouse::sqlite(&project);
    wh.insert_users(1..=250);
    let destination = Server::start();
    for id in 1..=250 {
        let error = match id % 10 {
            0 => "phone number is not valid",
            _ => "email bounced",
        };
        destination.reject(&id.to_string(), error);
    }
    // The last of five batches waits until the test lets it go, so the
    // run is in progress with four batches committed.
    destination.script(None, Reply::Accept, 4);
    destination.script(None, Reply::Hold, 1);
    // Batches of 50 at the host too, so each is committed as it is answered.
    let config = Config::new(&wh)
        .http_within(&destination, &destination.host(), 50, 120)
        .destination_setting("batch_size = 50");
    project.write_config(&format!("{}{}", config.render(), server_toml()));
    let serving = Serving::start(&project);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-phone.png");

    runtime().block_on(async {
        let client = connect(&webdriver).await;
        sign_in(&client, &serving.base).await;
        text_shows(
            &client,
            &format!("#syncs tr[data-sync='{SYNC}']"),
            "never run",
        )
        .await;
        client
            .goto(&format!("{}/#/syncs/{SYNC}", serving.base))
            .await
            .expect("open the sync");
        text_shows(&client, "#owed-total", "(0)").await;
        click(&client, ".run-now").await;

        // In progress: the counts committed so far, and no second run.
        let running = text_shows(&client, "#runs tbody tr:first-child", "running").await;
        let row = text_shows(&client, "#runs tbody tr:first-child", "200").await;
        assert!(
            row.contains("250"),
            "extracted 250 so far: {row} (first {running})"
        );
        assert!(
            !enabled(&client, ".run-now").await,
            "Run now is off during a run"
        );
        destination.release();
        text_shows(&client, "#runs tbody tr:first-child", "failed").await;
        assert!(
            enabled(&client, ".run-now").await,
            "Run now is back once the run ended"
        );

        // The errors grouped, the largest first, with their first keys.
        text_shows(&client, "#owed-total", "(250)").await;
        let largest = text_shows(&client, "#groups tbody tr:nth-child(1)", "email bounced").await;
        assert!(largest.starts_with("225"), "{largest}");
        let phone = text_shows(
            &client,
            "#groups tbody tr:nth-child(2)",
            "10, 20, 30, 40, 50, …",
        )
        .await;
        assert!(
            phone.starts_with("25") && phone.contains("phone number"),
            "{phone}"
        );

        // Every row, a hundred at a time, in natural key order.
        text_shows(&client, "#owed-pager .range", "1–100 of 250").await;
        assert_eq!(shown_keys(&client).await, numbers(1..=100));
        assert!(!enabled(&client, "#owed-pager .previous").await);
        click(&client, "#owed-pager .next").await;
        text_shows(&client, "#owed-pager .range", "101–200 of 250").await;
        assert_eq!(shown_keys(&client).await, numbers(101..=200));
        click(&client, "#owed-pager .next").await;
        text_shows(&client, "#owed-pager .range", "201–250 of 250").await;
        assert_eq!(shown_keys(&client).await, numbers(201..=250));
        assert!(!enabled(&client, "#owed-pager .next").await);

        // One group's rows.
        click(&client, "#groups tbody tr:nth-child(2) .show-rows").await;
        text_shows(&client, "#owed-pager .range", "1–25 of 25").await;
        assert_eq!(shown_keys(&client).await, numbers((1..=25).map(|n| n * 10)));
        text_shows(&client, "#owed-shown", "phone number is not valid").await;

        // A phone's width: the page does not overflow, wide tables scroll
        // in place.
        client
            .set_window_size(375, 812)
            .await
            .expect("a phone-sized window");
        text_shows(&client, "#owed-pager .range", "1–25 of 25").await;
        fits_the_width(&client, "the sync's page").await;
        let png = client.screenshot().await.expect("a screenshot");
        std::fs::write(&shot, png).expect("keep the screenshot");
        click(&client, "header a").await;
        text_shows(&client, &format!("#syncs tr[data-sync='{SYNC}']"), "failed").await;
        fits_the_width(&client, "the list of syncs").await;
        client.close().await.expect("close the browser");
    });
}
