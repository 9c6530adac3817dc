//! `ebb serve` as a child process for a test, and a small client for its
//! API. The server listens on a port the OS picks (`127.0.0.1:0`); the test
//! learns it from the line `ebb serve` prints once it listens. A server
//! still alive when the test ends is killed, not left behind.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::runtime::Runtime;

use super::project::Project;
use super::warehouse::runtime;

/// The API token the configs of these tests set.
pub const TOKEN: &str = "test-token-5d1c";

/// How long the server may take to start, or a condition to come true (a
/// cold plugin compilation in a debug build is the slow part).
const WITHIN: Duration = Duration::from_secs(120);

/// `[server]` and `[limits]` for a test: any free port, the test token, and
/// intervals as short as a second so schedules fire within a test.
pub fn server_toml() -> String {
    format!(
        "\n[server]\nlisten = \"127.0.0.1:0\"\napi_token = \"{TOKEN}\"\n\n[limits]\nshortest_interval_secs = 1\n"
    )
}

pub struct Serving {
    child: Option<Child>,
    /// What the server logged so far (read as it comes, so the pipe never
    /// fills and blocks the server).
    log: Arc<Mutex<String>>,
    pub base: String,
    rt: Runtime,
    http: reqwest::Client,
}

/// A response: its status and its body, as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

/// A response as it came over the wire, body undecoded.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    /// The `code` of an error body, checking the body has the error shape.
    pub fn error_code(&self) -> String {
        let body = self.json();
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error names what went wrong: {body}"
        );
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Serving {
    /// Starts `ebb serve` in `project` and waits until it listens.
    pub fn start(project: &Project) -> Serving {
        Serving::start_with(project, &["serve"])
    }

    /// Starts `ebb ARGS…` (a `serve` with options) and waits until it listens.
    pub fn start_with(project: &Project, args: &[&str]) -> Serving {
        let mut child = project
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ebb serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("ebb serve: listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                sink.lock().expect("log lock").push_str(&text);
            }
        });
        let mut serving = Serving {
            child: Some(child),
            log,
            base: String::new(),
            rt: runtime(),
            http: reqwest::Client::new(),
        };
        match rx.recv_timeout(WITHIN) {
            Ok(base) => serving.base = base,
            Err(_) => panic!(
                "ebb serve did not start listening: {}",
                serving.stop_and_log()
            ),
        }
        serving
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, Some(TOKEN))
    }

    pub fn post(&self, path: &str) -> Reply {
        self.send(reqwest::Method::POST, path, Some(TOKEN))
    }

    /// A request with this token, or none.
    pub fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        self.rt.block_on(async {
            let resp = req.send().await.expect("request to ebb serve");
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let headers = resp.headers().clone();
            let text = resp.text().await.expect("response body");
            Reply {
                status,
                content_type,
                headers,
                text,
            }
        })
    }

    /// A GET with the token that says which encodings it accepts, its
    /// answer left as the server encoded it.
    pub fn get_encoded(&self, path: &str, accept_encoding: &str) -> RawReply {
        let http = reqwest::Client::builder()
            .no_gzip()
            .build()
            .expect("an HTTP client");
        let req = http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header(reqwest::header::ACCEPT_ENCODING, accept_encoding);
        self.rt.block_on(async {
            let resp = req.send().await.expect("request to ebb serve");
            RawReply {
                status: resp.status().as_u16(),
                headers: resp.headers().clone(),
                body: resp.bytes().await.expect("response body").to_vec(),
            }
        })
    }

    /// Asks for a run of `sync` and returns its id.
    pub fn trigger(&self, sync: &str) -> i64 {
        let reply = self.post(&format!("/syncs/{sync}/runs"));
        assert_eq!(reply.status, 202, "{}", reply.text);
        reply.json()["run_id"].as_i64().expect("a run id")
    }

    /// Waits until run `run_id` of `sync` has ended and returns it.
    pub fn finished(&mut self, sync: &str, run_id: i64) -> Value {
        let mut run = Value::Null;
        self.wait_until(&format!("run {run_id} ends"), |s| {
            run = s.get(&format!("/syncs/{sync}/runs/{run_id}")).json();
            run["status"] != "running"
        });
        run
    }

    /// Polls `condition` until it holds; fails the test, with the server's
    /// log, if the server ends first or it does not hold within two minutes.
    pub fn wait_until(&mut self, what: &str, mut condition: impl FnMut(&Serving) -> bool) {
        let deadline = Instant::now() + WITHIN;
        while !condition(self) {
            let child = self.child.as_mut().expect("the server runs");
            if child.try_wait().expect("wait for ebb serve").is_some() {
                panic!("ebb serve ended before {what}: {}", self.stop_and_log());
            }
            if Instant::now() > deadline {
                panic!("timed out waiting until {what}: {}", self.stop_and_log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the process; returns its exit code, how long
    /// it took to exit and what it logged.
    pub fn terminate(mut self) -> (Option<i32>, Duration, String) {
        let mut child = self.child.take().expect("the server runs");
        let pid = child.id().to_string();
        let asked = Instant::now();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(killed.success(), "kill -TERM {pid}");
        let status = child.wait().expect("wait for ebb serve");
        let took = asked.elapsed();
        // The reader thread takes the last of the log after the exit.
        std::thread::sleep(Duration::from_millis(100));
        (status.code(), took, self.log())
    }

    /// SIGKILL: the process gets no chance to close its runs.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("the server runs");
        child.kill().expect("kill ebb serve");
        child.wait().expect("wait for ebb serve");
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Kills the server and returns what it logged, for a failure message.
    fn stop_and_log(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        format!("--- ebb serve's log\n{}", self.log())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
