//! A loopback TCP relay in front of a database that records which program
//! opened each connection (the `comm` of the process owning the peer
//! socket, found through `/proc`). Tunnel tests point the source URL at it
//! to prove the database was reached by `sshd`, not by `ebb` directly.

use std::io::{ErrorKind, copy};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct Relay {
    addr: SocketAddr,
    openers: Arc<Mutex<Vec<String>>>,
    stopped: Arc<AtomicBool>,
}

impl Relay {
    /// Listens on a free loopback port and relays to `target`.
    pub fn to(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the relay");
        let addr = listener.local_addr().expect("the relay's address");
        let openers = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (seen, stop) = (Arc::clone(&openers), Arc::clone(&stopped));
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let opener = client
                    .peer_addr()
                    .ok()
                    .and_then(|peer| opener(peer, addr))
                    .unwrap_or_else(|| "unknown".to_owned());
                seen.lock().expect("openers lock").push(opener);
                if let Ok(server) = TcpStream::connect(target) {
                    pipe(&client, &server);
                    pipe(&server, &client);
                }
            }
        });
        Relay {
            addr,
            openers,
            stopped,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The program name behind each connection so far, in order.
    pub fn openers(&self) -> Vec<String> {
        self.openers.lock().expect("openers lock").clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` into `to` on its own thread, then half-closes `to`.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        if let Err(e) = copy(&mut from, &mut to)
            && e.kind() != ErrorKind::ConnectionReset
        {
            eprintln!("relay: {e}");
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// The `comm` of the process holding the socket `peer` → `relay`.
fn opener(peer: SocketAddr, relay: SocketAddr) -> Option<String> {
    let inode = socket_inode(peer, relay)?;
    let link = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == link));
        if holds {
            return std::fs::read_to_string(entry.path().join("comm"))
                .ok()
                .map(|c| c.trim().to_owned());
        }
    }
    None
}

/// The inode of the IPv4 socket whose local end is `local` and remote end
/// `remote`, from `/proc/net/tcp` (`0100007F:1F90` is 127.0.0.1:8080).
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<String> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        )),
        SocketAddr::V6(_) => None,
    };
    let (local, remote) = (hex(local)?, hex(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
            .then(|| fields.get(9).map(|s| s.to_string()))
            .flatten()
    })
}
