//! The hosts a destination will call, worked out before it runs, so that a
//! missing grant is one clear error from `ebb check` rather than a denial
//! on every row of every run.
//!
//! A plugin declares in its spec the hosts it reaches with its defaults
//! (`api.segment.io`). A config that names URLs (an `endpoint` pointing at a
//! region, a proxy or a test fake; the webhook's `url`) says where the
//! requests go instead: then the hosts of those URLs are the ones wanted,
//! and the declared ones only if the config names none. Granting the vendor
//! to reach a proxy would widen the grant for nothing.

use ebb_sdk::spec::Spec;
use http::uri::{Scheme, Uri};
use serde_json::Value;

use crate::egress::Policy;

/// A host the destination will call, and why Ebb thinks so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// As an `allow_hosts` entry: `host`, or `host:port` off the default ports.
    pub entry: String,
    /// "its spec declares it", or "config.endpoint names it".
    pub why: String,
    /// The scheme and authority a request would use.
    scheme: Scheme,
    authority: String,
}

/// The hosts `spec`'s plugin will call with `config`.
pub fn wanted(spec: &Spec, config: &Value) -> Vec<Wanted> {
    let mut named = Vec::new();
    urls(config, "config", &mut named);
    let mut wanted: Vec<Wanted> = if named.is_empty() {
        spec.hosts
            .iter()
            .map(|host| Wanted {
                entry: host.clone(),
                why: "its spec declares it".into(),
                scheme: Scheme::HTTPS,
                authority: host.clone(),
            })
            .collect()
    } else {
        named
    };
    let mut seen = std::collections::HashSet::new();
    wanted.retain(|w| seen.insert(w.entry.clone()));
    wanted
}

/// Those of `wanted` that `allow_hosts` does not grant.
pub fn ungranted(allow_hosts: &[String], wanted: Vec<Wanted>) -> Result<Vec<Wanted>, String> {
    let policy = Policy::parse(allow_hosts)?;
    Ok(wanted
        .into_iter()
        .filter(|w| !policy.check(&w.scheme, &w.authority).allowed)
        .collect())
}

/// The `http(s)://` URLs among the config's string values, at any depth.
fn urls(value: &Value, at: &str, out: &mut Vec<Wanted>) {
    match value {
        Value::String(s) => {
            if let Some(wanted) = url_host(s, at) {
                out.push(wanted);
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                urls(value, &format!("{at}.{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                urls(value, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The host `url` calls, if it is an HTTP URL, as the `allow_hosts` entry
/// that grants it.
fn url_host(url: &str, at: &str) -> Option<Wanted> {
    let uri: Uri = url.trim().parse().ok()?;
    let scheme = uri.scheme()?.clone();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = uri.authority()?;
    let host = authority.host().to_ascii_lowercase();
    let entry = match authority.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host,
    };
    Some(Wanted {
        authority: entry.clone(),
        entry,
        why: format!("{at} names it"),
        scheme,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(hosts: &[&str]) -> Spec {
        Spec {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..Spec::new("t", "1")
        }
    }

    fn entries(wanted: &[Wanted]) -> Vec<&str> {
        wanted.iter().map(|w| w.entry.as_str()).collect()
    }

    #[test]
    fn declared_hosts_are_wanted_until_the_config_names_urls() {
        let spec = spec(&["api.segment.io"]);
        let defaults = wanted(&spec, &json!({"write_key": "k"}));
        assert_eq!(entries(&defaults), ["api.segment.io"]);
        assert_eq!(defaults[0].why, "its spec declares it");

        let proxied = wanted(
            &spec,
            &json!({"endpoint": "http://127.0.0.1:9000/", "extra": [{"hook": "https://Hooks.Example.com:443/x?a=1"}]}),
        );
        assert_eq!(entries(&proxied), ["127.0.0.1:9000", "hooks.example.com"]);
        assert_eq!(proxied[1].why, "config.extra[0].hook names it");
        assert!(wanted(&spec, &json!({"note": "not a url", "n": 1})).len() == 1);
    }

    #[test]
    fn ungranted_lists_only_what_allow_hosts_misses() {
        let wanted = wanted(
            &spec(&[]),
            &json!({"a": "http://127.0.0.1:9000", "b": "https://api.example.com/v1"}),
        );
        let missing = ungranted(&["127.0.0.1:9000".into()], wanted.clone()).unwrap();
        assert_eq!(entries(&missing), ["api.example.com"]);
        let missing = ungranted(&["api.example.com:443".into()], wanted.clone()).unwrap();
        assert_eq!(entries(&missing), ["127.0.0.1:9000"]);
        let missing = ungranted(&["api.example.com:8443".into()], wanted.clone()).unwrap();
        assert_eq!(entries(&missing), ["127.0.0.1:9000", "api.example.com"]);
        let all = ["127.0.0.1:9000".into(), "api.example.com".into()];
        assert!(ungranted(&all, wanted).unwrap().is_empty());
    }
}
