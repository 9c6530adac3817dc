//! Egress policy: which hosts a destination plugin may call over `wasi:http`.
//!
//! A destination holds credentials and customer data, so the operator, not
//! the plugin, decides where its requests may go. Grants are explicit
//! `host` (ports 80 and 443) or `host:port` entries from `allow_hosts`; there
//! are no wildcards, so a typo or a compromised plugin cannot widen its own
//! reach.
//!
//! The check runs inside `wasi:http/outgoing-handler.handle`, which this
//! module shadows in the linker (delegating to the stock one when allowed): a refused request fails at
//! once with `error-code.http-request-denied`, which guests can report
//! clearly (a refusal later in the pipeline would only surface as a reset
//! connection). Each refusal is also recorded in the call's store so the
//! engine can tell the operator which grant is missing. The same check is
//! repeated in [`EgressHooks::send_request`] as a second line of defence.
//!
//! Matching is on the request's authority, lower-cased, with the default
//! port of its scheme filled in. A granted name is then resolved once and
//! each address it resolves to is checked as well ([`send`](crate::send)
//! connects only to an address that passed): an address that is not on
//! the public internet (loopback, private, link-local, which holds the
//! cloud metadata service at 169.254.169.254, and the other reserved
//! ranges) is reached only if `allow_hosts` names that address itself. A
//! name granted for a SaaS API therefore cannot be pointed by its DNS at
//! the machine Ebb runs on or at its cloud's metadata service. `wasi:http`
//! never follows redirects itself: a plugin that follows one sends a new
//! request, checked like the first.
//!
//! Every request also gets the destination's connect, first-byte and
//! between-bytes timeouts; a guest may ask for shorter ones, never longer.
//!
//! For `ebb plugin test`, a policy may [intercept](Policy::intercept) what
//! it allows: the request then goes over plain HTTP to a local mock
//! instead, with the origin it was meant for in an [`ORIGIN_HEADER`], so a
//! plugin is tested with the config it ships with and nothing leaves the
//! machine.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use wasmtime::component::Resource;
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler::Host as _;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme as WitScheme};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::p2::{HttpError, HttpResult};
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpCtxView, WasiHttpHooks};

use crate::send::{self, Notes, Sending};

/// The header an intercepted request carries its intended
/// `scheme://host:port` in.
pub const ORIGIN_HEADER: &str = "x-ebb-origin";

/// The hosts a destination was granted, parsed from `allow_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    grants: Vec<Grant>,
    /// Where allowed requests go instead, if anywhere.
    intercept: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    host: String,
    /// `None` grants the web's default ports, 80 and 443.
    port: Option<u16>,
}

impl Policy {
    /// Parses `allow_hosts` entries: `host` or `host:port`, IPv6 addresses
    /// in brackets. The error names the entry and says how to write it.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Policy, String> {
        let grants = entries
            .iter()
            .map(|entry| Grant::parse(entry.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            grants,
            intercept: None,
        })
    }

    /// Sends every request this policy allows to `mock` instead.
    pub fn intercept(self, mock: SocketAddr) -> Policy {
        Policy {
            intercept: Some(mock),
            ..self
        }
    }

    /// Whether a request to `authority` over `scheme` may go out. An
    /// authority that cannot be parsed is never allowed.
    pub fn check(&self, scheme: &Scheme, authority: &str) -> Verdict {
        let Some(target) = Target::parse(scheme, authority) else {
            return Verdict {
                allowed: false,
                url: format!("{scheme}://{authority}/"),
            };
        };
        let allowed = self.grants.iter().any(|grant| grant.admits(&target));
        Verdict {
            allowed,
            url: format!("{scheme}://{}:{}/", target.host, target.port),
        }
    }

    /// The explanation shown to the operator for a refused request.
    pub fn denial(&self, url: &str, label: &str) -> String {
        format!(
            "request to {url} denied: not in allow_hosts of {label} (granted: [{self}]); \
             add the host to allow_hosts if the plugin should reach it"
        )
    }

    /// Whether a request whose host name was granted may connect to
    /// `addr`: any public address, an internal one only if a grant names
    /// that address (and port) itself.
    pub fn admits_address(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        internal(ip).is_none()
            || self
                .grants
                .iter()
                .any(|grant| grant.address() == Some(ip) && grant.admits_port(addr.port()))
    }

    /// Why `host` may not be reached at `addr`, and the grant that would
    /// allow it.
    pub fn address_denial(&self, host: &str, addr: SocketAddr) -> String {
        let ip = addr.ip().to_canonical();
        let range = internal(ip).unwrap_or("a refused");
        let grant = SocketAddr::new(ip, addr.port());
        format!(
            "{host} resolves to {ip}, {range} address, which allow_hosts does not name; \
             add `{grant}` to allow_hosts if the plugin should reach it"
        )
    }
}

/// The kind of address `ip` is, if it is not on the public internet.
fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        _ if ip.is_loopback() => "a loopback",
        _ if ip.is_link_local() => "a link-local (cloud metadata)",
        _ if ip.is_private() => "a private",
        _ if a == 100 && (64..128).contains(&b) => "a shared (carrier-grade NAT)",
        _ if a == 0 || ip.is_broadcast() || ip.is_multicast() || a >= 240 => "a reserved",
        _ if a == 198 && (18..20).contains(&b) => "a reserved",
        _ if a == 192 && b == 0 && ip.octets()[2] == 0 => "a reserved",
        _ => return None,
    })
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    Some(match segments[0] {
        _ if ip.is_loopback() || ip.is_unspecified() => "a loopback",
        s if s & 0xffc0 == 0xfe80 => "a link-local",
        s if s & 0xfe00 == 0xfc00 => "a private (unique local)",
        s if s & 0xff00 == 0xff00 => "a reserved",
        // NAT64 and 6to4 carry an IPv4 address, which decides.
        0x64 if segments[1] == 0xff9b => {
            let [.., hi, lo] = segments;
            return internal_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
        }
        0x2002 => {
            return internal_v4(Ipv4Addr::from(
                (u32::from(segments[1]) << 16) | u32::from(segments[2]),
            ));
        }
        _ => return None,
    })
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, grant) in self.grants.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match grant.port {
                Some(port) => write!(f, "{}:{port}", grant.host)?,
                None => f.write_str(&grant.host)?,
            }
        }
        Ok(())
    }
}

/// The outcome of [`Policy::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// `scheme://host:port/` of the request, for messages; never the path,
    /// which may carry secrets.
    pub url: String,
}

impl Grant {
    fn parse(entry: &str) -> Result<Grant, String> {
        let entry = entry.trim();
        let bad = |why: &str| {
            Err(format!(
                "allow_hosts entry `{entry}` is not valid: {why}; write `host` or `host:port`, \
                 e.g. `api.example.com` or `127.0.0.1:8080`"
            ))
        };
        if entry.is_empty() {
            return bad("it is empty");
        }
        if entry.contains('*') {
            return bad("wildcards are not supported, list each host");
        }
        if entry.contains("://") || entry.contains('/') {
            return bad("it is a URL, not a host");
        }
        if entry.contains('@') {
            return bad("it contains user information");
        }
        let Ok(authority) = Authority::from_str(entry) else {
            return bad("it is not a host name or address (IPv6 addresses go in brackets)");
        };
        // Anything after the host is a port, which must be 1 to 65535.
        let has_port = authority.as_str().len() > authority.host().len();
        let port = match authority.port_u16() {
            Some(0) | None if has_port => return bad("its port is not a number from 1 to 65535"),
            port => port,
        };
        Ok(Grant {
            host: normalise_host(authority.host()),
            port,
        })
    }

    fn admits(&self, target: &Target) -> bool {
        self.host == target.host && self.admits_port(target.port)
    }

    fn admits_port(&self, port: u16) -> bool {
        match self.port {
            Some(granted) => granted == port,
            None => port == 80 || port == 443,
        }
    }

    /// The address this grant names, if it names one.
    fn address(&self) -> Option<IpAddr> {
        ip_literal(&self.host).map(|ip| ip.to_canonical())
    }
}

/// An authority's host as an IP address, if it is one (IPv6 in brackets).
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Where a request goes: lower-cased host and the port, default filled in.
struct Target {
    host: String,
    port: u16,
}

impl Target {
    fn parse(scheme: &Scheme, authority: &str) -> Option<Target> {
        let authority = Authority::from_str(authority).ok()?;
        let port = match authority.port_u16() {
            Some(port) => port,
            None if *scheme == Scheme::HTTP => 80,
            None if *scheme == Scheme::HTTPS => 443,
            None => return None,
        };
        let host = normalise_host(authority.host());
        (!host.is_empty()).then_some(Target { host, port })
    }
}

/// Lower-cases a host and drops a trailing root dot (`example.com.`).
fn normalise_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The HTTP timeouts a destination's requests must respect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

impl Timeouts {
    /// The guest's own timeouts where shorter, ours otherwise.
    fn clamp(&self, guest: Option<RequestOptions>) -> RequestOptions {
        let guest = guest.unwrap_or_default();
        let pick =
            |asked: Option<Duration>, ours: Duration| Some(asked.map_or(ours, |a| a.min(ours)));
        RequestOptions {
            connect_timeout: pick(guest.connect_timeout, self.connect),
            first_byte_timeout: pick(guest.first_byte_timeout, self.first_byte),
            between_bytes_timeout: pick(guest.between_bytes_timeout, self.between_bytes),
        }
    }
}

/// `wasi:http` hooks for a destination: re-checks the policy, imposes
/// [`Timeouts`] and sends through [`send`], which checks the addresses a
/// name resolves to.
#[derive(Default)]
pub struct EgressHooks {
    pub sending: Sending,
    pub timeouts: Timeouts,
}

type SendFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<send::Sent>> + Send>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let policy = &self.sending.policy;
        let uri = request.uri();
        let verdict = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => Some(policy.check(scheme, authority.as_str())),
            _ => None,
        };
        let Some(verdict) = verdict.filter(|v| v.allowed) else {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        };
        let mock = policy.intercept;
        if let Some(mock) = mock
            && intercept(&mut request, mock, &verdict.url).is_err()
        {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestUriInvalid) });
        }
        let options = self.timeouts.clamp(options);
        Box::new(send::send(request, options, self.sending.clone(), mock))
    }
}

/// Sends `request`, meant for `origin` (`scheme://host:port/`), to `mock`
/// over plain HTTP instead, saying where it was meant to go.
fn intercept(
    request: &mut http::Request<WasiBody>,
    mock: SocketAddr,
    origin: &str,
) -> Result<(), http::Error> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(mock.to_string())
        .path_and_query(path)
        .build()?;
    let origin = http::HeaderValue::from_str(origin.trim_end_matches('/'))?;
    request.headers_mut().insert(ORIGIN_HEADER, origin);
    request.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_str(&mock.to_string())?,
    );
    Ok(())
}

/// The interface whose `handle` function [`Handler`] replaces; the version
/// is the one `wasmtime-wasi-http` implements (guests built against older
/// 0.2 versions link to it too).
pub const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// `wasi:http/outgoing-handler.handle` for a destination's store: the stock
/// handler behind a policy check that records what it refuses.
pub struct Handler<'a> {
    pub http: WasiHttpCtxView<'a>,
    pub policy: &'a Policy,
    pub label: &'a str,
    /// Where each refusal is explained for the operator.
    pub notes: &'a Notes,
}

/// What `handle` returns to the guest: a pending response or an error
/// code; the outer error is a trap.
pub type HandleResult = wasmtime::Result<Result<Resource<HostFutureIncomingResponse>, ErrorCode>>;

impl Handler<'_> {
    pub fn handle(
        &mut self,
        request: Resource<HostOutgoingRequest>,
        options: Option<Resource<RequestOptions>>,
    ) -> HandleResult {
        match self.check_then_send(request, options) {
            Ok(response) => Ok(Ok(response)),
            Err(error) => error.downcast().map(Err),
        }
    }

    fn check_then_send(
        &mut self,
        request: Resource<HostOutgoingRequest>,
        options: Option<Resource<RequestOptions>>,
    ) -> HttpResult<Resource<HostFutureIncomingResponse>> {
        let outgoing = self.http.table.get(&request)?;
        let scheme = match &outgoing.scheme {
            Some(WitScheme::Http) => Scheme::HTTP,
            Some(WitScheme::Https) | None => Scheme::HTTPS,
            Some(WitScheme::Other(_)) => return Err(ErrorCode::HttpProtocolError.into()),
        };
        let verdict = self
            .policy
            .check(&scheme, outgoing.authority.as_deref().unwrap_or_default());
        if !verdict.allowed {
            self.http.table.delete(request)?;
            tracing::warn!(
                plugin = self.label,
                "{}",
                self.policy.denial(&verdict.url, self.label)
            );
            self.notes
                .push(self.policy.denial(&verdict.url, self.label));
            return Err(HttpError::from(ErrorCode::HttpRequestDenied));
        }
        self.http.handle(request, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> Policy {
        Policy::parse(entries).unwrap()
    }

    fn allows(policy: &Policy, scheme: Scheme, authority: &str) -> bool {
        policy.check(&scheme, authority).allowed
    }

    #[test]
    fn bare_host_grants_default_ports_only() {
        let p = policy(&["api.example.com"]);
        assert!(allows(&p, Scheme::HTTPS, "api.example.com"));
        assert!(allows(&p, Scheme::HTTP, "api.example.com"));
        assert!(allows(&p, Scheme::HTTPS, "api.example.com:443"));
        assert!(allows(&p, Scheme::HTTP, "api.example.com:80"));
        assert!(!allows(&p, Scheme::HTTPS, "api.example.com:8443"));
        assert!(!allows(&p, Scheme::HTTPS, "other.example.com"));
        assert!(!allows(&p, Scheme::HTTPS, "sub.api.example.com"));
    }

    #[test]
    fn explicit_port_must_match_exactly() {
        let p = policy(&["127.0.0.1:8080"]);
        assert!(allows(&p, Scheme::HTTP, "127.0.0.1:8080"));
        assert!(!allows(&p, Scheme::HTTP, "127.0.0.1"));
        assert!(!allows(&p, Scheme::HTTP, "127.0.0.1:8081"));
        let https = policy(&["example.com:443"]);
        assert!(allows(&https, Scheme::HTTPS, "example.com"));
        assert!(!allows(&https, Scheme::HTTP, "example.com"));
    }

    #[test]
    fn matching_ignores_case_and_root_dot() {
        let p = policy(&["API.Example.COM:8443"]);
        assert!(allows(&p, Scheme::HTTPS, "api.example.com:8443"));
        assert!(allows(&p, Scheme::HTTPS, "Api.Example.Com.:8443"));
    }

    #[test]
    fn ipv6_in_brackets() {
        let p = policy(&["[::1]:9000"]);
        assert!(allows(&p, Scheme::HTTP, "[::1]:9000"));
        assert!(!allows(&p, Scheme::HTTP, "[::1]:9001"));
    }

    #[test]
    fn nothing_granted_denies_everything() {
        let p = Policy::default();
        assert!(!allows(&p, Scheme::HTTP, "127.0.0.1:1"));
        assert!(!allows(&p, Scheme::HTTPS, "example.com"));
        assert!(!allows(&p, Scheme::HTTP, ""));
    }

    #[test]
    fn userinfo_does_not_fool_the_match() {
        let p = policy(&["good.example"]);
        assert!(allows(&p, Scheme::HTTPS, "user@good.example"));
        assert!(!allows(&p, Scheme::HTTPS, "good.example@evil.example"));
    }

    #[test]
    fn bad_entries_are_explained() {
        for (entry, why) in [
            ("*", "wildcards"),
            ("*.example.com", "wildcards"),
            ("https://example.com", "URL"),
            ("example.com/path", "URL"),
            ("user@example.com", "user information"),
            ("", "empty"),
            ("example.com:0", "port"),
            ("example.com:99999", "port"),
            ("example.com:", "port"),
            ("example.com:http", "port"),
        ] {
            let err = Policy::parse(&[entry]).unwrap_err();
            assert!(err.contains(why), "{entry}: {err}");
            assert!(err.contains("host:port"), "{entry}: {err}");
        }
    }

    #[test]
    fn denial_names_url_destination_and_grants() {
        let p = policy(&["a.example", "127.0.0.1:8080"]);
        let verdict = p.check(&Scheme::HTTP, "1.2.3.4:9");
        assert!(!verdict.allowed);
        assert_eq!(verdict.url, "http://1.2.3.4:9/");
        let message = p.denial(&verdict.url, "destination `crm`");
        assert!(message.starts_with(
            "request to http://1.2.3.4:9/ denied: not in allow_hosts of destination `crm` \
             (granted: [a.example, 127.0.0.1:8080])"
        ));
    }

    #[test]
    fn internal_addresses_need_a_grant_of_their_own() {
        let by_name = policy(&["api.example.com", "localhost:8080"]);
        let admits = |p: &Policy, addr: &str| p.admits_address(addr.parse().unwrap());
        for refused in [
            "127.0.0.1:443",
            "127.0.0.2:443",
            "10.1.2.3:443",
            "172.16.0.1:443",
            "192.168.1.1:443",
            "169.254.169.254:80",
            "100.64.0.1:443",
            "0.0.0.0:443",
            "[::1]:443",
            "[::]:443",
            "[fe80::1]:443",
            "[fd00:ec2::254]:80",
            "[::ffff:127.0.0.1]:443",
            "[64:ff9b::a9fe:a9fe]:80",
            "[2002:7f00:1::]:443",
            "127.0.0.1:8080",
        ] {
            assert!(!admits(&by_name, refused), "{refused}");
        }
        for public in [
            "93.184.216.34:443",
            "[2606:2800:220:1::1]:443",
            "8.8.8.8:80",
        ] {
            assert!(admits(&by_name, public), "{public}");
        }
        let by_address = policy(&["localhost:8080", "127.0.0.1:8080", "[::1]:8080"]);
        assert!(admits(&by_address, "127.0.0.1:8080"));
        assert!(admits(&by_address, "[::ffff:127.0.0.1]:8080"));
        assert!(admits(&by_address, "[::1]:8080"));
        assert!(!admits(&by_address, "127.0.0.1:8081"));
        assert!(!admits(&by_address, "127.0.0.2:8080"));
    }

    #[test]
    fn address_denials_name_the_range_and_the_grant() {
        let p = policy(&["localhost:8080"]);
        let message = p.address_denial(
            "localhost",
            "[::ffff:169.254.169.254]:8080".parse().unwrap(),
        );
        assert_eq!(
            message,
            "localhost resolves to 169.254.169.254, a link-local (cloud metadata) address, \
             which allow_hosts does not name; add `169.254.169.254:8080` to allow_hosts if \
             the plugin should reach it"
        );
    }

    #[test]
    fn guest_timeouts_are_capped() {
        let ours = Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(30),
            between_bytes: Duration::from_secs(30),
        };
        let none = ours.clamp(None);
        assert_eq!(none.connect_timeout, Some(Duration::from_secs(10)));
        assert_eq!(none.between_bytes_timeout, Some(Duration::from_secs(30)));
        let asked = ours.clamp(Some(RequestOptions {
            connect_timeout: Some(Duration::from_secs(600)),
            first_byte_timeout: Some(Duration::from_secs(1)),
            between_bytes_timeout: None,
        }));
        assert_eq!(asked.connect_timeout, Some(Duration::from_secs(10)));
        assert_eq!(asked.first_byte_timeout, Some(Duration::from_secs(1)));
        assert_eq!(asked.between_bytes_timeout, Some(Duration::from_secs(30)));
    }
}
