//! Secrets kept out of the requests `ebb plugin test` and `ebb test-record`
//! print, so their output can go into a bug report or a CI log: the values
//! of config keys that name a secret, credentials in headers, and URL user
//! info.

use serde_json::Value;

use ebb_plugin_host::Exchange;

/// What a hidden value is printed as.
const HIDDEN: &str = "****";

/// Words that make a key or header name a secret's.
const SECRET_WORDS: [&str; 7] = [
    "key",
    "token",
    "secret",
    "password",
    "auth",
    "credential",
    "signature",
];

/// Values shorter than this are not searched for: hiding every "1" in a
/// body would hide the body.
const SHORTEST_SECRET: usize = 4;

/// The secrets of one plugin config.
pub struct Masker {
    secrets: Vec<String>,
}

impl Masker {
    /// Collects the string values under secret-named keys, at any depth.
    pub fn new(config: &Value) -> Masker {
        let mut secrets = Vec::new();
        collect(config, false, &mut secrets);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Masker { secrets }
    }

    /// Hides every known secret in `text`.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), HIDDEN);
        }
        out
    }

    /// The request as it may be printed.
    pub fn request(&self, r: &Exchange) -> Exchange {
        Exchange {
            method: r.method.clone(),
            url: self.text(&without_query_secrets(&without_user_info(&r.url))),
            headers: r
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), self.header(name, value)))
                .collect(),
            body: self.text(&r.body),
            status: r.status,
        }
    }

    fn header(&self, name: &str, value: &str) -> String {
        if !secret_name(name) {
            return self.text(value);
        }
        // Keep the scheme of `Authorization: Basic …` so the reader sees
        // which kind of credential was sent.
        match value.split_once(' ') {
            Some((scheme, _)) if name.eq_ignore_ascii_case("authorization") => {
                format!("{scheme} {HIDDEN}")
            }
            _ => HIDDEN.to_owned(),
        }
    }
}

fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| name.contains(word))
}

fn collect(value: &Value, secret: bool, out: &mut Vec<String>) {
    match value {
        Value::String(s) if secret && s.len() >= SHORTEST_SECRET => out.push(s.clone()),
        Value::Object(map) => {
            for (key, value) in map {
                collect(value, secret || secret_name(key), out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, secret, out)),
        _ => {}
    }
}

/// `https://user:pass@host/…` without `user:pass@`.
fn without_user_info(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{HIDDEN}@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The URL with the values of secret-named query parameters hidden
/// (`?api_key=…`).
fn without_query_secrets(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret_name(name) => format!("{name}={HIDDEN}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recorded(url: &str, headers: &[(&str, &str)], body: &str) -> Exchange {
        Exchange {
            method: "POST".into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
            status: Some(200),
        }
    }

    #[test]
    fn config_secrets_are_hidden_wherever_they_appear() {
        let masker = Masker::new(&json!({
            "write_key": "wk_live_123",
            "auth": {"client_secret": "s3cr3t-value", "client_id": "abc"},
            "endpoint": "https://api.example.com",
            "api_token": "ab",
        }));
        let shown = masker.request(&recorded(
            "https://me:pw@api.example.com/v1?api_key=wk_live_123&page=2&access_token=xyz",
            &[
                ("authorization", "Basic d2tfbGl2ZV8xMjM6"),
                ("x-api-key", "anything"),
                ("x-trace", "s3cr3t-value"),
                ("content-type", "application/json"),
            ],
            r#"{"secret":"s3cr3t-value","id":"abc"}"#,
        ));
        assert_eq!(
            shown.url,
            "https://****@api.example.com/v1?api_key=****&page=2&access_token=****"
        );
        assert_eq!(
            shown.headers,
            vec![
                ("authorization".to_string(), "Basic ****".to_string()),
                ("x-api-key".to_string(), "****".to_string()),
                ("x-trace".to_string(), "****".to_string()),
                ("content-type".to_string(), "application/json".to_string()),
            ]
        );
        // `abc` sits under `auth` but, like the two-letter token, is too
        // short to hunt for.
        assert_eq!(shown.body, r#"{"secret":"****","id":"abc"}"#);
    }
}
