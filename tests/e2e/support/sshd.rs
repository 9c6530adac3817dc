//! A real OpenSSH server for tunnel tests: `sshd` as a child process on a
//! free loopback port, with its own config, host key, authorized key and
//! pid file in a temp dir, logging at DEBUG1 to stderr so a test can see
//! which connections it forwarded. It stops when dropped.
//!
//! Tests skip (with a message) when `/usr/sbin/sshd` is missing, except
//! under `CI=true`, where they fail: CI installs `openssh-server`.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const SSHD: &str = "/usr/sbin/sshd";
/// sshd refuses to start without its privilege separation directory,
/// which the package's service unit normally creates at boot.
const PRIVSEP_DIR: &str = "/run/sshd";

pub struct Sshd {
    dir: TempDir,
    child: Child,
    port: u16,
    user: String,
    log: Arc<Mutex<String>>,
}

/// What the server allows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// To this address only (`PermitOpen`).
    To(SocketAddr),
    /// `AllowTcpForwarding no`.
    Refused,
}

impl Sshd {
    /// A running server, or `None` (after saying so) when sshd is not
    /// installed outside CI.
    pub fn start(forwarding: Forwarding) -> Option<Sshd> {
        if !Path::new(SSHD).exists() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{SSHD} is missing under CI; install openssh-server");
            }
            eprintln!("skipping: no {SSHD} (apt-get install openssh-server)");
            return None;
        }
        std::fs::create_dir_all(PRIVSEP_DIR)
            .unwrap_or_else(|e| panic!("sshd needs {PRIVSEP_DIR}, which cannot be created: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("ebb-sshd-")
            .tempdir()
            .expect("creating the sshd dir");
        keygen(&dir.path().join("host_key"), &[]);
        keygen(&dir.path().join("user_key"), &[]);
        keygen(&dir.path().join("stranger_key"), &[]);
        std::fs::copy(
            dir.path().join("user_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("writing authorized_keys");
        let port = free_port();
        let p = |name: &str| dir.path().join(name).display().to_string();
        let config = format!(
            "ListenAddress 127.0.0.1:{port}
HostKey {host_key}
PidFile {pid}
AuthorizedKeysFile {authorized}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
{forwarding}
X11Forwarding no
AllowAgentForwarding no
LogLevel DEBUG1
",
            host_key = p("host_key"),
            pid = p("sshd.pid"),
            authorized = p("authorized_keys"),
            forwarding = match forwarding {
                Forwarding::To(addr) => format!("AllowTcpForwarding yes\nPermitOpen {addr}"),
                Forwarding::Refused => "AllowTcpForwarding no".to_owned(),
            },
        );
        std::fs::write(dir.path().join("sshd_config"), config).expect("writing sshd_config");
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        collect(
            child.stderr.take().expect("stderr is piped"),
            Arc::clone(&log),
        );
        let sshd = Sshd {
            dir,
            child,
            port,
            user: current_user(),
            log,
        };
        sshd.wait_until_listening();
        Some(sshd)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's host key fingerprint, as `ssh-keygen -lf` prints it.
    pub fn host_key(&self) -> String {
        fingerprint(&self.dir.path().join("host_key.pub"))
    }

    /// The private key the server authorizes.
    pub fn user_key(&self) -> String {
        self.read("user_key")
    }

    /// A valid private key the server does not know.
    pub fn stranger_key(&self) -> String {
        self.read("stranger_key")
    }

    /// A new key made by `ssh-keygen` with `args` (type, passphrase…),
    /// added to the authorized keys; returns its private half.
    pub fn authorize_new_key(&self, name: &str, args: &[&str]) -> String {
        let path = self.dir.path().join(name);
        keygen(&path, args);
        let public = self.read(&format!("{name}.pub"));
        let authorized = self.dir.path().join("authorized_keys");
        let mut keys = std::fs::read_to_string(&authorized).expect("reading authorized_keys");
        keys.push_str(&public);
        std::fs::write(&authorized, keys).expect("writing authorized_keys");
        self.read(name)
    }

    /// The `ssh = { … }` line for `[sources.wh]`, with this user key (and
    /// its passphrase) and host key fingerprint.
    pub fn ssh_option(
        &self,
        private_key: &str,
        passphrase: Option<&str>,
        host_key: &str,
    ) -> String {
        // A JSON string is a valid TOML basic string (same escapes).
        let quoted = |s: &str| serde_json::to_string(s).expect("a string serializes");
        let passphrase = passphrase
            .map(|p| format!(", private_key_passphrase = {}", quoted(p)))
            .unwrap_or_default();
        format!(
            "ssh = {{ host = \"127.0.0.1\", port = {}, user = \"{}\", private_key = {}{passphrase}, host_key = \"{host_key}\" }}",
            self.port,
            self.user,
            quoted(private_key),
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// How many log lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits up to 5 s for `n` log lines containing `needle` (the server
    /// logs what a connection did while it winds down, after the client
    /// has gone), and returns how many there were.
    pub fn wait_for(&self, needle: &str, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = self.count(needle);
            if seen >= n || Instant::now() > deadline {
                return seen;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_else(|e| panic!("reading {name}: {e}"))
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on 127.0.0.1:{} within 10 s:\n{}",
                self.port,
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ssh-keygen` into `path`: an unencrypted ED25519 key unless `args`
/// say otherwise (later options win).
fn keygen(path: &PathBuf, args: &[&str]) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ebb-e2e"])
        .args(args)
        .arg("-f")
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("running ssh-keygen");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

fn fingerprint(public_key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key)
        .output()
        .expect("running ssh-keygen -lf");
    let text = String::from_utf8_lossy(&out.stdout);
    // `256 SHA256:… comment (ED25519)`
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in `ssh-keygen -lf` output: {text}"))
        .to_owned()
}

fn current_user() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .expect("running id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A loopback port nothing listens on (the OS picks it; sshd takes it
/// right after).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

fn collect(mut pipe: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            log.lock()
                .expect("log lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}
