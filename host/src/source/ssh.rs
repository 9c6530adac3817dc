//! SSH tunnels to databases that only a bastion host can reach.
//!
//! A tunnel is a loopback port on this machine: each connection accepted
//! there becomes a `direct-tcpip` channel through the bastion to the
//! database's host and port, as the URL names them. Any driver that connects
//! by URL therefore needs nothing but its URL's host and port replaced with
//! the tunnel's local end ([`Tunnel::route`]).
//!
//! The server is trusted only when its host key has the fingerprint the
//! config pins (there is no `known_hosts` to learn from on a server running
//! Ebb, and trust-on-first-use would accept whoever answers first). The
//! first channel is opened before the driver connects, so a bastion that
//! refuses to forward, or cannot reach the database, is reported as such
//! rather than as a connection the driver saw closed; that channel then
//! carries the driver's connection (a probe connection that hung up
//! unused would count against the host in MySQL's `max_connect_errors`).
//!
//! Lifetime: the tunnel stops accepting connections once the driver has
//! connected (nothing else on the machine can use the port after that),
//! and the SSH session lasts as long as the connections it carries: as long
//! as the `Warehouse` holding one, and the task streaming its rows, which
//! waits for the session to close with a goodbye to the server.
//!
//! Built on `russh`: pure Rust on the tokio runtime Ebb already runs, so
//! there is no `ssh` binary to find and no libssh2/OpenSSL to build or link.
//! Its symmetric crypto comes from `ring` (already here for TLS) rather
//! than the default `aws-lc-rs`, which needs a C toolchain; keys are read
//! and checked by RustCrypto's `ssh-key`. That is most of the ~90 crates it
//! adds to the lock file, a price for not shelling out to `ssh -L` and
//! parsing its output.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelOpenFailure, Disconnect};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use super::error::{Problem, SourceError};
use crate::config::ssh::locate;
use crate::config::{Source, Ssh};

/// How long reaching the SSH server and agreeing on keys may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Keepalives keep an idle forwarded connection (a slow query) from being
/// dropped by firewalls between here and the bastion, and notice a dead one.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
const KEEPALIVES_UNANSWERED: usize = 3;
/// How long closing waits for the database and the server to hang up.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// `url` with `local` as its host and port, everything else (credentials,
/// database, options) kept; `None` only for URLs without a host, which
/// [`locate`] refuses.
fn pointed_at(mut url: url::Url, local: SocketAddr) -> Option<String> {
    url.set_ip_host(local.ip()).ok()?;
    url.set_port(Some(local.port())).ok()?;
    Some(url.into())
}

/// An open tunnel, accepting connections until told to stop or dropped.
pub struct Tunnel {
    /// The source's URL with the tunnel's local end as host and port.
    url: String,
    /// Dropping it tells the forwarding task to stop accepting.
    accepting: Option<oneshot::Sender<()>>,
    /// The forwarding task; it ends after the SSH session does.
    serving: JoinHandle<()>,
}

impl Tunnel {
    /// Connects to `ssh`, checks its host key, authenticates and opens a
    /// first channel to the database named by `source.url`.
    pub async fn open(source: &Source, ssh: &Ssh) -> Result<Tunnel, SourceError> {
        let attempt = Attempt {
            source,
            ssh,
            bastion: format!("{}:{}", ssh.host, ssh.port),
            key: format!("sources.{}.ssh", source.name),
        };
        let url_key = format!("sources.{}.url", source.name);
        let (url, host, port) = locate(&source.url, source.kind.default_port())
            .map_err(|e| attempt.fail(Problem::Other, format!("{url_key}: {e}")))?;
        let local_port = |e: std::io::Error| {
            attempt.fail(
                Problem::Other,
                format!("cannot open a local port for the SSH tunnel: {e}"),
            )
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(local_port)?;
        let local = listener.local_addr().map_err(local_port)?;
        let url = pointed_at(url, local).ok_or_else(|| {
            attempt.fail(
                Problem::Other,
                format!("{url_key}: cannot point it at the SSH tunnel"),
            )
        })?;

        let mut session = attempt.handshake().await?;
        let first = match attempt.authorize(&mut session, &host, port).await {
            Ok(channel) => channel,
            Err(e) => {
                goodbye(session).await;
                return Err(e);
            }
        };
        let (accepting, stop) = oneshot::channel();
        let serving = tokio::spawn(serve(session, listener, stop, (host, port), Some(first)));
        tracing::debug!(source = %source.name, bastion = %attempt.bastion, %local, "SSH tunnel open");
        Ok(Tunnel {
            url,
            accepting: Some(accepting),
            serving,
        })
    }

    /// `source` with its URL's host and port replaced by the tunnel's
    /// local end; everything else in the URL (credentials, database,
    /// options) stays.
    pub fn route(&self, source: &Source) -> Source {
        Source {
            url: self.url.clone(),
            ..source.clone()
        }
    }

    /// No further local connections; those already open go on.
    pub fn stop_accepting(&mut self) {
        self.accepting = None;
    }

    /// Waits (briefly) for the connections it carries to end and the SSH
    /// session to close; call it after closing the database connection.
    pub async fn close(mut self) {
        self.stop_accepting();
        if timeout(CLOSE_TIMEOUT, self.serving).await.is_err() {
            tracing::debug!(
                "the SSH tunnel was still carrying a connection after {CLOSE_TIMEOUT:?}"
            );
        }
    }
}

/// Opening a tunnel for one source, with errors that name it.
struct Attempt<'a> {
    source: &'a Source,
    ssh: &'a Ssh,
    /// `host:port` of the SSH server.
    bastion: String,
    /// `sources.NAME.ssh`, the config key the messages point at.
    key: String,
}

impl Attempt<'_> {
    fn fail(&self, problem: Problem, message: String) -> SourceError {
        SourceError::Connect {
            source_name: self.source.name.clone(),
            problem,
            message,
        }
    }

    /// Connects and agrees on keys with a server holding the pinned host key.
    async fn handshake(&self) -> Result<client::Handle<PinnedHostKey>, SourceError> {
        let (bastion, key) = (&self.bastion, &self.key);
        let too_slow = |what: &str| {
            self.fail(
                Problem::Timeout,
                format!("the SSH server {bastion} did not {what} within {CONNECT_TIMEOUT:?}"),
            )
        };
        let tcp = timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.ssh.host.as_str(), self.ssh.port)),
        )
        .await
        .map_err(|_| too_slow("answer"))?
        .map_err(|e| {
            self.fail(
                Problem::Connect,
                format!(
                    "cannot reach the SSH server {bastion}: {e}; check {key}.host and {key}.port"
                ),
            )
        })?;
        let config = Arc::new(client::Config {
            keepalive_interval: Some(KEEPALIVE_EVERY),
            keepalive_max: KEEPALIVES_UNANSWERED,
            nodelay: true,
            ..Default::default()
        });
        let pinned = PinnedHostKey {
            expected: self.ssh.host_key.clone(),
        };
        timeout(
            CONNECT_TIMEOUT,
            client::connect_stream(config, tcp, pinned),
        )
        .await
        .map_err(|_| too_slow("finish the handshake"))?
        .map_err(|e| match e {
            HandshakeError::HostKey { seen } => self.fail(
                Problem::HostKey,
                format!(
                    "host key of {bastion} is {seen}, expected {}; if the bastion's key changed, update {key}.host_key",
                    self.ssh.host_key
                ),
            ),
            HandshakeError::Ssh(e) => self.fail(
                Problem::Connect,
                format!("SSH handshake with {bastion} failed: {e}"),
            ),
        })
    }

    /// Logs in with the private key and opens the first channel to the
    /// database, so a refusal is reported for what it is.
    async fn authorize(
        &self,
        session: &mut client::Handle<PinnedHostKey>,
        host: &str,
        port: u16,
    ) -> Result<Channel<client::Msg>, SourceError> {
        let (bastion, key, user) = (&self.bastion, &self.key, &self.ssh.user);
        let user_key = russh::keys::decode_secret_key(
            &self.ssh.private_key,
            self.ssh.private_key_passphrase.as_deref(),
        )
        .map_err(|e| {
            self.fail(
                Problem::Authentication,
                format!(
                    "cannot read {key}.private_key: {e}; give the private key's text (OpenSSH or PEM), and {key}.private_key_passphrase when it is encrypted"
                ),
            )
        })?;
        // RSA keys sign with the strongest hash the server accepts.
        let rsa_hash = match user_key.algorithm().is_rsa() {
            true => session
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten(),
            false => None,
        };
        let auth = session
            .authenticate_publickey(
                user.as_str(),
                PrivateKeyWithHashAlg::new(Arc::new(user_key), rsa_hash),
            )
            .await
            .map_err(|e| {
                self.fail(
                    Problem::Connect,
                    format!("SSH authentication with {bastion} failed: {e}"),
                )
            })?;
        if !auth.success() {
            return Err(self.fail(
                Problem::Authentication,
                format!(
                    "the SSH server {bastion} refused user `{user}` with {key}.private_key; check {key}.user and that the key's public half is in that user's authorized_keys"
                ),
            ));
        }
        session
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| {
                let (problem, why) = match e {
                    russh::Error::ChannelOpenFailure(ChannelOpenFailure::AdministrativelyProhibited) => (
                        Problem::Permission,
                        format!("refused to forward to {host}:{port}; allow TCP forwarding to it for `{user}` (sshd_config: AllowTcpForwarding, PermitOpen)"),
                    ),
                    russh::Error::ChannelOpenFailure(ChannelOpenFailure::ConnectFailed) => (
                        Problem::Connect,
                        format!("could not connect to {host}:{port}; check the host and port in sources.{}.url as the bastion sees them", self.source.name),
                    ),
                    e => (Problem::Connect, format!("did not forward to {host}:{port}: {e}")),
                };
                self.fail(problem, format!("the SSH server {bastion} {why}"))
            })
    }
}

/// Ends the session politely and waits (briefly) for it to close.
async fn goodbye(session: client::Handle<PinnedHostKey>) {
    let _ = session
        .disconnect(Disconnect::ByApplication, "", "en")
        .await;
    let _ = timeout(CLOSE_TIMEOUT, session).await;
}

/// Accepts connections until told to stop, forwards each through its own
/// channel (the first through the one opened while connecting), then
/// closes the session once the last one ends.
async fn serve(
    session: client::Handle<PinnedHostKey>,
    listener: TcpListener,
    mut stop: oneshot::Receiver<()>,
    target: (String, u16),
    mut first: Option<Channel<client::Msg>>,
) {
    let session = Arc::new(session);
    let mut forwards = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((local, peer)) => {
                    let channel = first.take();
                    forwards.spawn(carry(Arc::clone(&session), target.clone(), local, peer, channel));
                }
                Err(e) => {
                    tracing::warn!("the SSH tunnel's local port stopped accepting: {e}");
                    break;
                }
            },
        }
    }
    drop((listener, first));
    while forwards.join_next().await.is_some() {}
    if let Ok(session) = Arc::try_unwrap(session) {
        goodbye(session).await;
    }
}

/// Copies one local connection to and from its channel until both ends close.
async fn carry(
    session: Arc<client::Handle<PinnedHostKey>>,
    (host, port): (String, u16),
    mut local: TcpStream,
    peer: SocketAddr,
    channel: Option<Channel<client::Msg>>,
) {
    let channel = match channel {
        Some(c) => c,
        None => {
            let opened = session
                .channel_open_direct_tcpip(
                    host.as_str(),
                    u32::from(port),
                    peer.ip().to_string(),
                    u32::from(peer.port()),
                )
                .await;
            match opened {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("the SSH server did not forward to {host}:{port}: {e}");
                    return;
                }
            }
        }
    };
    let mut remote = channel.into_stream();
    if let Err(e) = tokio::io::copy_bidirectional(&mut local, &mut remote).await {
        tracing::debug!("SSH-forwarded connection to {host}:{port} ended: {e}");
    }
}

/// Accepts the server only when its host key has the pinned fingerprint.
struct PinnedHostKey {
    expected: String,
}

#[derive(Debug)]
enum HandshakeError {
    HostKey { seen: String },
    Ssh(russh::Error),
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        HandshakeError::Ssh(e)
    }
}

impl client::Handler for PinnedHostKey {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, HandshakeError> {
        // A certificate is pinned by the key it certifies; russh has
        // already checked the server holds that key's private half.
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.key_data().clone(),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key().clone(),
        };
        let seen = key.fingerprint(HashAlg::Sha256).to_string();
        if seen == self.expected {
            Ok(true)
        } else {
            Err(HandshakeError::HostKey { seen })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keeps_everything_but_host_and_port() {
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 40001));
        let routed = |url: &str| pointed_at(locate(url, Some(3306)).unwrap().0, local).unwrap();
        assert_eq!(
            routed("postgres://u:p%40ss@db.internal:6543/app?options=-csearch_path%3Dx"),
            "postgres://u:p%40ss@127.0.0.1:40001/app?options=-csearch_path%3Dx"
        );
        assert_eq!(
            routed("mysql://root@[fd00::7]/app"),
            "mysql://root@127.0.0.1:40001/app"
        );
    }
}
