//! `sources.NAME.ssh`: the bastion that forwards to a database only it can
//! reach. Checked here, at load, so a host key that is no fingerprint or a
//! URL the tunnel cannot stand in for is named by its key before anything
//! connects; the tunnel itself is `crate::source::ssh`.

use base64::Engine as _;
use serde::Deserialize;

use crate::config::error::Invalid;
use crate::config::resolver::Resolver;

/// An SSH server (a bastion) that forwards to the database.
#[derive(Clone)]
pub struct Ssh {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// OpenSSH or PEM private key text.
    pub private_key: String,
    pub private_key_passphrase: Option<String>,
    /// The server's host key fingerprint, `SHA256:` and unpadded base64.
    pub host_key: String,
}

/// Keeps the key and its passphrase out of debug output and logs.
impl std::fmt::Debug for Ssh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ssh")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("host_key", &self.host_key)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    host: String,
    #[serde(default = "ssh_port")]
    port: u16,
    user: String,
    private_key: String,
    private_key_passphrase: Option<String>,
    host_key: String,
}

fn ssh_port() -> u16 {
    22
}

/// How a source of a kind without a database port refuses `ssh`, `why`
/// being the reason in its own words.
pub fn refusal(why: &str) -> String {
    format!("{why}; remove `ssh` (it serves postgres, redshift and mysql sources)")
}

/// The `ssh` of the source at `source` (`sources.NAME`), whose database is
/// at `url` and listens on `default_port` unless the URL names one.
pub fn resolve(
    source: &str,
    url: &str,
    default_port: Option<u16>,
    raw: RawSsh,
    r: &Resolver,
) -> Result<Ssh, Invalid> {
    let key = format!("{source}.ssh");
    target(url, default_port).map_err(|e| Invalid::new(format!("{source}.url"), e.to_string()))?;
    let text = |field: &str, value: &str| r.secrets(&format!("{key}.{field}"), value);
    let ssh = Ssh {
        host: text("host", &raw.host)?,
        port: raw.port,
        user: text("user", &raw.user)?,
        private_key: text("private_key", &raw.private_key)?,
        private_key_passphrase: r.secret(
            &key,
            "private_key_passphrase",
            raw.private_key_passphrase,
        )?,
        host_key: text("host_key", &raw.host_key)?,
    };
    if ssh.port == 0 || ssh.host.trim().is_empty() || ssh.user.trim().is_empty() {
        return Err(Invalid::new(
            key,
            "`host`, `user` and a non-zero `port` are required",
        ));
    }
    if !is_fingerprint(&ssh.host_key) {
        return Err(Invalid::new(
            format!("{key}.host_key"),
            format!(
                "`{}` is not a SHA256 host key fingerprint; write it as `ssh-keygen -lf` prints it (SHA256: and 43 base64 characters), e.g. from `ssh-keyscan -p {} {} | ssh-keygen -lf -`",
                ssh.host_key, ssh.port, ssh.host
            ),
        ));
    }
    Ok(ssh)
}

/// Why a URL names no database a tunnel can forward to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoTarget {
    #[error("cannot read it as a URL ({0}); an SSH tunnel needs `scheme://user@host:port/…`")]
    NotUrl(url::ParseError),
    #[error(
        "names no host; an SSH tunnel needs the database's host and port in the URL (`scheme://user@host:port/…`)"
    )]
    NoHost,
    #[error("names no port; add the database's port after the host (`{scheme}://…@{host}:PORT/…`)")]
    NoPort { scheme: String, host: String },
}

/// Where the URL says the database is: the host the bastion connects to
/// (resolved on its side) and the port, `default_port` when the URL gives
/// none.
pub fn target(url: &str, default_port: Option<u16>) -> Result<(String, u16), NoTarget> {
    locate(url, default_port).map(|(_, host, port)| (host, port))
}

/// [`target`], with the URL as read.
pub fn locate(url: &str, default_port: Option<u16>) -> Result<(url::Url, String, u16), NoTarget> {
    let parsed = url::Url::parse(url).map_err(NoTarget::NotUrl)?;
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(NoTarget::NoHost),
    };
    let Some(port) = parsed.port().or(default_port) else {
        return Err(NoTarget::NoPort {
            scheme: parsed.scheme().to_string(),
            host,
        });
    };
    Ok((parsed, host, port))
}

/// `SHA256:` and the unpadded base64 of 32 bytes, as `ssh-keygen -lf` prints.
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("SHA256:").is_some_and(|b64| {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .is_ok_and(|digest| digest.len() == 32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceKind;

    #[test]
    fn the_target_is_the_urls_host_and_port() {
        let t = |url: &str| target(url, SourceKind::Postgres.default_port());
        assert_eq!(
            t("postgres://u:p%40ss@db.internal:6543/app?sslmode=require"),
            Ok(("db.internal".into(), 6543))
        );
        assert_eq!(
            t("postgresql://u@10.0.0.5/app"),
            Ok(("10.0.0.5".into(), 5432))
        );
        assert_eq!(
            target(
                "postgres://u@cluster/dev",
                SourceKind::Redshift.default_port()
            ),
            Ok(("cluster".into(), 5439))
        );
        assert_eq!(
            target(
                "mysql://root@[fd00::7]/app",
                SourceKind::Mysql.default_port()
            ),
            Ok(("fd00::7".into(), 3306))
        );
        assert!(
            target("x://u@cluster/dev", SourceKind::Snowflake.default_port())
                .unwrap_err()
                .to_string()
                .contains("no port")
        );
        assert!(
            t("postgres:///app")
                .unwrap_err()
                .to_string()
                .contains("no host")
        );
        assert!(t("not a url").is_err());
    }

    #[test]
    fn fingerprints_are_sha256_as_ssh_keygen_prints_them() {
        assert!(is_fingerprint(
            "SHA256:/K9Ph63IyjvlSGiZCKz+vbrnrnM6yC0M3g+q4EiAAmE"
        ));
        assert!(!is_fingerprint(
            "SHA256:/K9Ph63IyjvlSGiZCKz+vbrnrnM6yC0M3g+q4EiAAmE="
        ));
        assert!(!is_fingerprint("SHA256:abc"));
        assert!(!is_fingerprint(
            "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48"
        ));
        assert!(!is_fingerprint(
            "256 SHA256:/K9Ph63IyjvlSGiZCKz+vbrnrnM6yC0M3g+q4EiAAmE host (ED25519)"
        ));
    }
}
