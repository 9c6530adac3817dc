//! How the config says what is wrong: every message names the key path and
//! what to do, and [`Config::load`](super::Config::load) puts the file's
//! name in front.

/// A config that cannot be used, with the file it is in.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

/// What is wrong with one setting, before the file is named.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// The setting at `key` (a path such as `sources.wh.url`).
    #[error("{key}: {message}")]
    Setting { key: String, message: String },
    /// Worded whole where it was found: TOML's own errors (which point at
    /// the line) and checks that name their keys themselves.
    #[error("{0}")]
    Worded(String),
    /// A `${env:NAME}` the environment does not set, at `key`: a problem
    /// only for a command that uses the setting (see [`Unset`]).
    #[error("{key}: environment variable `{name}` is not set; export it before running ebb")]
    UnsetSecret { key: String, name: String },
}

/// A setting whose secrets are not all set: no problem until a command
/// uses it, so `ebb run` never needs `[server] api_token` or a secret of a
/// destination its sync does not send to. Holds the message that names
/// the key and the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unset(pub String);

/// A setting's value, or why it cannot be had yet.
pub type Lazy<T> = Result<T, Unset>;

/// `result`, with a missing secret set aside for later: other problems
/// still fail the config now.
pub fn lazy<T>(result: Result<T, Invalid>) -> Result<Lazy<T>, Invalid> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(unset @ Invalid::UnsetSecret { .. }) => Ok(Err(Unset(unset.to_string()))),
        Err(other) => Err(other),
    }
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid::Setting {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// "no sync named `usres`; did you mean `users`? defined syncs: `orders`,
/// `users`" (or "…: none").
pub fn no_such<'a>(kind: &str, name: &str, defined: impl Iterator<Item = &'a String>) -> String {
    let defined: Vec<&str> = defined.map(String::as_str).collect();
    let hint = did_you_mean(name, defined.iter().copied())
        .map(|close| format!(" did you mean `{close}`?"))
        .unwrap_or_default();
    let list = if defined.is_empty() {
        "none".to_owned()
    } else {
        defined
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("no {kind} named `{name}`;{hint} defined {kind}s: {list}")
}

/// The one of `known` a mistyped `name` most likely meant: the closest by
/// edits (a swap of two letters counts as one, case is ignored), if it is
/// within a third of the name's length.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let typed = name.to_lowercase();
    let limit = (typed.chars().count() / 3).max(1);
    known
        .into_iter()
        .filter(|k| *k != name)
        .map(|k| (strsim::damerau_levenshtein(&typed, &k.to_lowercase()), k))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// A hint for the parser's "unknown field `x`, expected one of `a`, `b`":
/// the field it most likely meant.
pub fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    let (typed, expected) = rest.split_once('`')?;
    let known = expected.split('`').skip(1).step_by(2);
    did_you_mean(typed, known).map(|close| format!("did you mean `{close}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_name_within_reach() {
        let names = ["users", "orders", "accounts"].map(String::from);
        assert_eq!(
            no_such("sync", "usres", names.iter()),
            "no sync named `usres`; did you mean `users`? defined syncs: `users`, `orders`, `accounts`"
        );
        assert_eq!(
            no_such("model", "invoices", names.iter()),
            "no model named `invoices`; defined models: `users`, `orders`, `accounts`"
        );
        assert_eq!(
            no_such("source", "wh", std::iter::empty()),
            "no source named `wh`; defined sources: none"
        );
        assert_eq!(did_you_mean("Users", ["users"]), Some("users"));
    }

    #[test]
    fn hints_at_the_field_an_unknown_one_meant() {
        let message =
            "unknown field `alow_hosts`, expected one of `plugin`, `allow_hosts`, `config`";
        assert_eq!(
            unknown_field_hint(message).as_deref(),
            Some("did you mean `allow_hosts`?")
        );
        assert_eq!(
            unknown_field_hint("unknown field `zzz`, expected `plugin`"),
            None
        );
        assert_eq!(unknown_field_hint("invalid type: string"), None);
    }
}
