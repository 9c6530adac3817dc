//! Sources behind a bastion: Ebb reaches Postgres only through a real
//! OpenSSH server, pins its host key, authenticates with a private key, and
//! says which of those failed. A relay in front of Postgres records which
//! program opened each database connection, so the tests know the tunnel
//! carried the traffic.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::changes;
use crate::config_errors::rejected_without_touching_state;
use crate::support::cmd::Output;
use crate::support::config::Config;
use crate::support::events::assert_events;
use crate::support::project::{Project, SYNC};
use crate::support::relay::Relay;
use crate::support::sshd::{Forwarding, Sshd};
use crate::support::warehouse::Warehouse;

/// The local Postgres, as the warehouse's URL names it.
const POSTGRES: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5432));
/// What sshd logs (at DEBUG1) for each `direct-tcpip` channel it accepts.
const FORWARDED: &str = "server_request_direct_tcpip: originator";
/// What sshd logs when a client ends its session with a goodbye.
const GOODBYE: &str = "Received disconnect from 127.0.0.1";
/// A valid fingerprint that is no server's.
const OTHER_HOST_KEY: &str = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// A server and a Postgres schema, or `None` when either is missing
/// outside CI.
fn bastion_and_postgres(forwarding: Forwarding) -> Option<(Sshd, Warehouse)> {
    let sshd = Sshd::start(forwarding)?;
    let wh = Warehouse::postgres()?;
    Some((sshd, wh))
}

/// Points `wh`'s source at the database as `db` (as the bastion sees it),
/// through `sshd` with this user key and pinned host key.
fn tunnelled(wh: &mut Warehouse, sshd: &Sshd, db: SocketAddr, user_key: &str, host_key: &str) {
    tunnelled_with(wh, sshd, db, user_key, None, host_key);
}

/// [`tunnelled`] with an encrypted user key's passphrase.
fn tunnelled_with(
    wh: &mut Warehouse,
    sshd: &Sshd,
    db: SocketAddr,
    user_key: &str,
    passphrase: Option<&str>,
    host_key: &str,
) {
    let source = wh
        .source_toml()
        .replace(&POSTGRES.to_string(), &db.to_string());
    let ssh = sshd.ssh_option(user_key, passphrase, host_key);
    wh.set_source_toml(format!("{source}{ssh}\n"));
}

/// `ebb run` failed before touching anything: exit 1, one error naming
/// each of `mentions`, nothing delivered, no state store.
fn refused_before_syncing(project: &Project, out: &Output, mentions: &[&str]) {
    assert_eq!(out.code, Some(1), "the run must fail: {out:#?}");
    for needle in mentions {
        assert!(
            out.stderr.contains(needle),
            "the error must mention {needle:?}:\n{}",
            out.stderr
        );
    }
    assert_eq!(project.take_delivered(), Vec::<serde_json::Value>::new());
    assert!(
        !project.state_db().exists(),
        "a refused connection created the state store"
    );
}

#[test]
fn postgres_through_a_tunnel_delivers_exactly_the_changes() {
    let relay = Relay::to(POSTGRES);
    let Some((sshd, mut wh)) = bastion_and_postgres(Forwarding::To(relay.addr())) else {
        return;
    };
    tunnelled(
        &mut wh,
        &sshd,
        relay.addr(),
        &sshd.user_key(),
        &sshd.host_key(),
    );
    let project = Project::new();
    changes::delivers_exactly_the_changes(&project, &wh);

    // Four runs, each one database connection opened by the bastion (not
    // by Ebb), and each session closed with a goodbye rather than dropped.
    assert_eq!(relay.openers(), vec!["sshd"; 4], "{}", sshd.log());
    assert_eq!(sshd.wait_for(GOODBYE, 4), 4, "{}", sshd.log());

    // `check` connects for the source, its model and the sync, each time
    // through the bastion.
    let check = project.ebb_ok(&["check"]);
    assert!(check.contains("source `wh`: ok"), "{check}");
    let openers = relay.openers();
    assert!(
        openers.len() > 4 && openers.iter().all(|o| o == "sshd"),
        "{openers:?}\n{}",
        sshd.log()
    );
}

#[test]
fn a_bastion_that_refuses_forwarding_fails_the_run() {
    let Some((sshd, mut wh)) = bastion_and_postgres(Forwarding::Refused) else {
        return;
    };
    tunnelled(&mut wh, &sshd, POSTGRES, &sshd.user_key(), &sshd.host_key());
    wh.insert_users(1..=3);
    let project = Project::new();
    project.write_config(&Config::new(&wh).render());

    let out = project.ebb(&["run", SYNC, "--format", "json"]);
    refused_before_syncing(
        &project,
        &out,
        &[
            "source `wh`: permission denied",
            &format!(
                "SSH server 127.0.0.1:{} refused to forward to {POSTGRES}",
                sshd.port()
            ),
            "AllowTcpForwarding",
        ],
    );
    // Authenticated, asked, refused, and the session closed with a goodbye.
    assert_eq!(sshd.count("Accepted publickey"), 1, "{}", sshd.log());
    assert_eq!(
        sshd.count(
            "refused local port forward: originator 127.0.0.1 port 0, target 127.0.0.1 port 5432"
        ),
        1,
        "{}",
        sshd.log()
    );
    assert_eq!(sshd.wait_for(GOODBYE, 1), 1, "{}", sshd.log());
}

#[test]
fn a_host_key_other_than_the_pinned_one_is_refused() {
    let Some((sshd, mut wh)) = bastion_and_postgres(Forwarding::To(POSTGRES)) else {
        return;
    };
    tunnelled(&mut wh, &sshd, POSTGRES, &sshd.user_key(), OTHER_HOST_KEY);
    wh.insert_users(1..=3);
    let project = Project::new();
    project.write_config(&Config::new(&wh).render());

    let out = project.ebb(&["run", SYNC, "--format", "json"]);
    refused_before_syncing(
        &project,
        &out,
        &[
            "source `wh`: SSH host key mismatch",
            &format!(
                "host key of 127.0.0.1:{} is {}, expected {OTHER_HOST_KEY}",
                sshd.port(),
                sshd.host_key()
            ),
            "update sources.wh.ssh.host_key",
        ],
    );
    // The key was refused before Ebb offered its credentials.
    assert_eq!(sshd.count("userauth-request"), 0, "{}", sshd.log());
}

#[test]
fn a_key_the_bastion_does_not_know_fails_authentication() {
    let Some((sshd, mut wh)) = bastion_and_postgres(Forwarding::To(POSTGRES)) else {
        return;
    };
    tunnelled(
        &mut wh,
        &sshd,
        POSTGRES,
        &sshd.stranger_key(),
        &sshd.host_key(),
    );
    let project = Project::new();
    project.write_config(&Config::new(&wh).render());

    let out = project.ebb(&["run", SYNC, "--format", "json"]);
    refused_before_syncing(
        &project,
        &out,
        &[
            "source `wh`: authentication failed",
            &format!("SSH server 127.0.0.1:{} refused user", sshd.port()),
            "sources.wh.ssh.private_key",
        ],
    );
    assert_eq!(sshd.count("Accepted publickey"), 0, "{}", sshd.log());
    assert_eq!(sshd.count(FORWARDED), 0, "{}", sshd.log());
}

#[test]
fn a_private_key_that_is_not_one_is_named() {
    let Some((sshd, mut wh)) = bastion_and_postgres(Forwarding::To(POSTGRES)) else {
        return;
    };
    tunnelled(&mut wh, &sshd, POSTGRES, "not a key", &sshd.host_key());
    let project = Project::new();
    project.write_config(&Config::new(&wh).render());

    let out = project.ebb(&["run", SYNC, "--format", "json"]);
    refused_before_syncing(
        &project,
        &out,
        &[
            "source `wh`: authentication failed",
            "cannot read sources.wh.ssh.private_key",
        ],
    );
}

#[test]
fn rsa_and_passphrase_protected_keys_log_in() {
    let Some((sshd, mut wh)) = bastion_and_postgres(Forwarding::To(POSTGRES)) else {
        return;
    };
    wh.insert_users(1..=3);
    let project = Project::new();
    let host_key = sshd.host_key();
    let direct = wh.source_toml().to_owned();

    let rsa = sshd.authorize_new_key("rsa_key", &["-t", "rsa", "-b", "2048"]);
    tunnelled(&mut wh, &sshd, POSTGRES, &rsa, &host_key);
    project.write_config(&Config::new(&wh).render());
    project.run_ok();
    assert_events(&project.take_delivered(), &changes::all_added(1..=3));
    // Signed with SHA-2, which OpenSSH requires of RSA keys.
    assert_eq!(sshd.count("Accepted publickey for"), 1, "{}", sshd.log());
    assert_eq!(sshd.count("rsa-sha2-512"), 1, "{}", sshd.log());

    // One KDF round keeps an unoptimized build's key decryption quick.
    let locked = sshd.authorize_new_key("locked_key", &["-a", "1", "-N", "open sesame"]);
    wh.insert_users([4]);
    for (passphrase, succeeds) in [
        (None, false),
        (Some("nope"), false),
        (Some("open sesame"), true),
    ] {
        wh.set_source_toml(direct.clone());
        tunnelled_with(&mut wh, &sshd, POSTGRES, &locked, passphrase, &host_key);
        project.write_config(&Config::new(&wh).render());
        if succeeds {
            project.run_ok();
            assert_eq!(project.take_delivered(), changes::all_added([4]));
        } else {
            let out = project.ebb(&["run", SYNC]);
            assert_eq!(out.code, Some(1), "{out:#?}");
            assert!(
                out.stderr
                    .contains("authentication failed: cannot read sources.wh.ssh.private_key"),
                "{}",
                out.stderr
            );
            assert!(!out.stderr.contains("open sesame"), "{}", out.stderr);
        }
    }
}

/// `url = …` in the default SQLite source block, with `extra` after it.
fn sqlite_source_with(wh: &Warehouse, extra: &str) -> String {
    Config::new(wh).render().replacen(
        wh.source_toml(),
        &format!("{}{extra}\n", wh.source_toml()),
        1,
    )
}

const SSH_OPTION: &str = r#"ssh = { host = "127.0.0.1", user = "ebb", private_key = "k", host_key = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }"#;

#[test]
fn ssh_on_an_sqlite_source_is_a_config_error() {
    rejected_without_touching_state(
        |wh| sqlite_source_with(wh, SSH_OPTION),
        &["run", SYNC],
        &["sources.wh.ssh", "SQLite", "remove `ssh`"],
    );
}

#[test]
fn a_host_key_that_is_not_a_sha256_fingerprint_is_a_config_error() {
    rejected_without_touching_state(
        |wh| {
            Config::new(wh).render().replacen(
                wh.source_toml(),
                &format!(
                    "[sources.wh]\nkind = \"postgres\"\nurl = \"postgres://postgres@db.internal.invalid:5432/test\"\n{}\n",
                    SSH_OPTION.replace(
                        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                        "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"
                    )
                ),
                1,
            )
        },
        &["run", SYNC],
        &[
            "sources.wh.ssh.host_key",
            "ssh-keyscan -p 22 127.0.0.1 | ssh-keygen -lf -",
        ],
    );
}
