//! The destination side: the [`Destination`] trait a connector implements,
//! and the glue that turns the `ebb:plugin/destination` exports into calls
//! on it (config parsed once per call, events checked and, unless the
//! destination takes them raw, decoded; outcomes kept index-aligned with
//! the batch).

use crate::bindings::destination::ebb::plugin::types as wit;
use crate::bindings::destination::exports::ebb::plugin::destination::Guest;
use crate::{Error, Event, RawEvent, Spec, config, event};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// A connector that delivers events to a business tool.
pub trait Destination {
    /// The plugin's settings, deserialised from the sync's JSON config.
    type Config: DeserializeOwned;

    /// Name, version, config schema, actions, batch limits and wanted hosts.
    fn spec() -> Spec;

    /// Checks what deserialising cannot (ranges, URL schemes, …). Return
    /// every problem found, not just the first. [`Destination::write`] is
    /// only called with configs that pass.
    fn validate(config: &Self::Config) -> Result<(), Vec<String>> {
        let _ = config;
        Ok(())
    }

    /// Delivers one batch: one [`Outcome`] per event, in order. `Err` fails
    /// the whole batch with that error.
    fn write(config: &Self::Config, action: &str, batch: Vec<Event>)
    -> Result<Vec<Outcome>, Error>;

    /// Delivers one batch whose records are still the host's JSON text, as
    /// [`Destination::write`] does. The SDK always calls this one; the
    /// default parses each event's records and calls `write`. A
    /// destination that sends records on as they are (into a request body,
    /// a file) overrides it and skips parsing and writing them again, the
    /// largest cost inside such a plugin; its `write` can then convert and
    /// delegate: `Self::write_raw(config, action, batch.into_iter().map(Into::into).collect())`.
    fn write_raw(
        config: &Self::Config,
        action: &str,
        batch: Vec<RawEvent>,
    ) -> Result<Vec<Outcome>, Error> {
        event::map_decoded(
            batch,
            RawEvent::decode,
            |events| Self::write(config, action, events),
            Outcome::Reject,
        )
    }
}

/// What happened to one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Ok,
    /// Not delivered this time; the host retries it with backoff.
    Retry(Error),
    /// Refused for good; kept as a row error and tried again next run.
    Reject(Error),
}

/// Retryable errors (rate-limited, transient) retry; all others reject.
impl From<Error> for Outcome {
    fn from(error: Error) -> Self {
        if error.is_retryable() {
            Outcome::Retry(error)
        } else {
            Outcome::Reject(error)
        }
    }
}

impl From<Outcome> for wit::Outcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Ok => wit::Outcome::Ok,
            Outcome::Retry(error) => wit::Outcome::Retry(error.into()),
            Outcome::Reject(error) => wit::Outcome::Reject(error.into()),
        }
    }
}

fn parse_valid<D: Destination>(config: &str) -> Result<D::Config, Vec<String>> {
    let config = config::parse::<D::Config>(config).map_err(|e| vec![e.message])?;
    D::validate(&config)?;
    Ok(config)
}

// The export glue in SDK types: the component's exports wrap these, and
// `crate::testing` calls them natively, so both run the same steps.

/// The `spec` export: the spec as JSON.
pub(crate) fn spec_json<D: Destination>() -> String {
    serde_json::to_string(&D::spec()).expect("a Spec always serialises")
}

/// The `validate` export: parse, then the plugin's own checks.
pub(crate) fn validate<D: Destination>(config: &str) -> Result<(), Vec<String>> {
    parse_valid::<D>(config).map(drop)
}

/// The `write` export: a config that fails validation fails the batch, an
/// event that does not decode is rejected at its index, and the plugin's
/// outcomes fill the other indexes.
pub(crate) fn write<D: Destination>(
    config: &str,
    action: &str,
    batch: Vec<wit::Event>,
) -> Result<Vec<Outcome>, Error> {
    let config =
        parse_valid::<D>(config).map_err(|problems| Error::invalid_config(problems.join("; ")))?;
    event::map_decoded(
        batch,
        RawEvent::try_from,
        |events| D::write_raw(&config, action, events),
        Outcome::Reject,
    )
}

/// Implements the generated export trait for any [`Destination`]; used by
/// [`crate::export_destination!`].
#[doc(hidden)]
pub struct Export<D>(PhantomData<D>);

impl<D: Destination> Guest for Export<D> {
    fn spec() -> String {
        spec_json::<D>()
    }

    fn validate(config: String) -> Result<(), Vec<String>> {
        validate::<D>(&config)
    }

    fn write(
        config: String,
        action: String,
        batch: Vec<wit::Event>,
    ) -> Result<Vec<wit::Outcome>, wit::Error> {
        let outcomes = write::<D>(&config, &action, batch)?;
        Ok(outcomes.into_iter().map(Into::into).collect())
    }
}

/// Exports a type implementing [`Destination`] as the plugin's
/// `ebb:plugin/destination` world. Call it once, at the crate root of a
/// `cdylib` built for `wasm32-wasip2`: `ebb_sdk::export_destination!(MyType);`. The
/// crate README has a complete example.
#[macro_export]
macro_rules! export_destination {
    ($ty:ty) => {
        const _: () = {
            type EbbDestinationExport = $crate::destination::Export<$ty>;
            $crate::bindings::destination::export_destination_world!(
                EbbDestinationExport with_types_in $crate::bindings::destination
            );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, FieldType, Op};
    use serde::Deserialize;

    struct Echo;

    #[derive(Deserialize)]
    struct Config {
        limit: usize,
    }

    impl Destination for Echo {
        type Config = Config;

        fn spec() -> Spec {
            Spec::new("echo", "1.0.0")
        }

        fn validate(config: &Config) -> Result<(), Vec<String>> {
            match config.limit {
                0 => Err(vec!["limit must be at least 1".into(), "really".into()]),
                _ => Ok(()),
            }
        }

        fn write(config: &Config, action: &str, batch: Vec<Event>) -> Result<Vec<Outcome>, Error> {
            assert_eq!(action, "send");
            Ok(batch
                .iter()
                .map(|event| match event.fields.len() > config.limit {
                    true => Error::rejected("too many fields").into(),
                    false if event.op == Op::Deleted => Error::transient("later").into(),
                    false => Outcome::Ok,
                })
                .collect())
        }
    }

    fn event(op: wit::Op, fields: &str) -> wit::Event {
        let fields = fields.as_bytes().to_vec();
        wit::Event {
            op,
            id: "1".into(),
            fields,
            previous: None,
            delivery_id: "d-1".into(),
        }
    }

    #[test]
    fn validate_reports_parse_and_plugin_problems() {
        assert_eq!(Export::<Echo>::validate(r#"{"limit": 1}"#.into()), Ok(()));
        assert_eq!(
            Export::<Echo>::validate(r#"{"limit": 0}"#.into()),
            Err(vec!["limit must be at least 1".into(), "really".into()])
        );
        assert_eq!(
            Export::<Echo>::validate("{}".into()),
            Err(vec!["invalid config: missing field `limit`".into()])
        );
    }

    #[test]
    fn write_checks_config_then_keeps_outcomes_aligned() {
        let error =
            Export::<Echo>::write(r#"{"limit": 0}"#.into(), "send".into(), vec![]).unwrap_err();
        assert!(matches!(error.kind, wit::ErrorKind::InvalidConfig));
        assert_eq!(error.message, "limit must be at least 1; really");

        let batch = vec![
            event(wit::Op::Added, r#"{"a":1}"#),
            event(wit::Op::Added, r#"{"a":1,"b":2}"#),
            event(wit::Op::Added, "not json"),
            event(wit::Op::Deleted, "{}"),
        ];
        let outcomes =
            Export::<Echo>::write(r#"{"limit": 1}"#.into(), "send".into(), batch).unwrap();
        assert!(matches!(outcomes[0], wit::Outcome::Ok));
        assert!(matches!(&outcomes[1], wit::Outcome::Reject(e) if e.message == "too many fields"));
        assert!(
            matches!(&outcomes[2], wit::Outcome::Reject(e) if matches!(e.kind, wit::ErrorKind::Internal))
        );
        assert!(
            matches!(&outcomes[3], wit::Outcome::Retry(e) if matches!(e.kind, wit::ErrorKind::Transient))
        );
    }

    #[test]
    fn spec_serialises_to_the_wit_json_shape() {
        let spec = Spec {
            actions: vec![Action::new("upsert", "create or update").field(
                "email",
                FieldType::String,
                true,
            )],
            ..Echo::spec()
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&Export::<Echo>::spec()).unwrap()["max_batch_records"],
            100
        );
        assert_eq!(
            serde_json::to_value(spec).unwrap(),
            serde_json::json!({
                "name": "echo", "version": "1.0.0", "config_schema": {"type": "object"},
                "actions": [{"name": "upsert", "description": "create or update",
                             "fields": [{"name": "email", "type": "string", "required": true}]}],
                "max_batch_records": 100, "max_batch_bytes": 1048576, "hosts": []
            })
        );
    }
}
