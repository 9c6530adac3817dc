//! `${env:NAME}` secrets. They are substituted into values only after the
//! file is parsed, so the parser's messages never contain them, and a
//! missing variable is named with the key that wants it.

use serde_json::Value;

use super::error::Invalid;
use super::resolver::Resolver;

/// A credential; never printed.
#[derive(Clone)]
pub struct Secret(pub(super) String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Resolver<'_> {
    /// Substitutes `${env:NAME}` in a string value.
    pub fn secrets(&self, key: &str, s: &str) -> Result<String, Invalid> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${env:") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 6..];
            let end = after.find('}').ok_or_else(|| {
                Invalid::new(key, "unterminated `${env:` reference; write `${env:NAME}`")
            })?;
            let name = &after[..end];
            let value = (self.env)(name).ok_or_else(|| Invalid::UnsetSecret {
                key: key.to_owned(),
                name: name.to_owned(),
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// [`Resolver::secrets`] of `section.field`, when it is given.
    pub fn secret(
        &self,
        section: &str,
        field: &str,
        value: Option<String>,
    ) -> Result<Option<String>, Invalid> {
        value
            .map(|v| self.secrets(&format!("{section}.{field}"), &v))
            .transpose()
    }

    /// A TOML value as JSON, with secrets substituted in every string.
    pub fn json_with_secrets(&self, key: &str, v: toml::Value) -> Result<Value, Invalid> {
        Ok(match v {
            toml::Value::String(s) => Value::String(self.secrets(key, &s)?),
            toml::Value::Integer(i) => Value::from(i),
            toml::Value::Float(f) => serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| Invalid::new(key, format!("{f} cannot be represented in JSON")))?,
            toml::Value::Boolean(b) => Value::Bool(b),
            toml::Value::Datetime(d) => Value::String(d.to_string()),
            toml::Value::Array(a) => Value::Array(
                a.into_iter()
                    .enumerate()
                    .map(|(i, v)| self.json_with_secrets(&format!("{key}[{i}]"), v))
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(t) => Value::Object(
                t.into_iter()
                    .map(|(k, v)| {
                        Ok((k.clone(), self.json_with_secrets(&format!("{key}.{k}"), v)?))
                    })
                    .collect::<Result<_, Invalid>>()?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_substituted_and_missing_ones_named() {
        let env = |n: &str| (n == "TOKEN").then(|| "s3cret".to_string());
        let r = Resolver {
            dir: "/cfg".into(),
            env: &env,
        };
        assert_eq!(
            r.secrets("k", "Bearer ${env:TOKEN}!").unwrap(),
            "Bearer s3cret!"
        );
        let e = r
            .secrets("destinations.crm.config.key", "${env:NOPE}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("destinations.crm.config.key") && e.contains("`NOPE`"),
            "{e}"
        );
        assert!(
            r.secrets("k", "${env:TOKEN")
                .unwrap_err()
                .to_string()
                .contains("unterminated")
        );
    }
}
