//! The dashboard in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver): sign in with the token, see
//! the syncs, press "Run now", watch the run end, open the sync and read
//! its row errors with their payloads. A screenshot of that page is kept as
//! `target/tmp/dashboard.png`. Without chromedriver the test says so and
//! skips, except under `CI=true`, where it fails.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::support::config::Config;
use crate::support::project::{Project, SYNC};
use crate::support::server::Server;
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
        client
            .goto(&format!("{}/", serving.base))
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
