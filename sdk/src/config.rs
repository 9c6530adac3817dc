//! A plugin's config arrives as a JSON string on every call. It is parsed
//! once per call into the plugin's own `Config` type; a failure names the
//! offending key (`headers.X-Api-Key: invalid type …`) so the operator can
//! find it in `ebb.toml`.

use crate::Error;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Parses `json` into `T`. An empty string or `null` counts as `{}`, so a
/// plugin whose settings all have defaults needs no config at all.
pub(crate) fn parse<T: DeserializeOwned>(json: &str) -> Result<T, Error> {
    let value = if json.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(json)
            .map_err(|e| Error::invalid_config(format!("invalid config: not JSON: {e}")))?
    };
    let value = match value {
        Value::Null => Value::Object(Map::new()),
        value => value,
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let problem = e.into_inner();
        Error::invalid_config(if path == "." {
            format!("invalid config: {problem}")
        } else {
            format!("invalid config: {path}: {problem}")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    }

    #[test]
    fn empty_and_null_configs_mean_all_defaults() {
        for json in ["", "  ", "null", "{}"] {
            let config: Config = parse(json).unwrap();
            assert_eq!(config.url, "", "{json:?}");
        }
    }

    #[test]
    fn errors_name_the_key_and_are_invalid_config() {
        let error = parse::<Config>(r#"{"headers": {"X-Key": 5}}"#).unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidConfig);
        assert!(
            error.message.starts_with(
                "invalid config: headers.X-Key: invalid type: number, expected a string"
            ),
            "{}",
            error.message
        );

        let error = parse::<Config>(r#"{"ulr": "x"}"#).unwrap_err();
        assert_eq!(
            error.message,
            "invalid config: ulr: unknown field `ulr`, expected `url` or `headers`"
        );

        let error = parse::<Config>("{url:").unwrap_err();
        assert!(
            error.message.starts_with("invalid config: not JSON:"),
            "{}",
            error.message
        );
    }
}
