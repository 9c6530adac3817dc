//! The change event as plugins see it: the JSON envelope
//! `{"op","id","fields","previous","delivery_id"}`. Across the WIT boundary `fields` and
//! `previous` travel as JSON bytes (WIT has no recursive types); this module
//! decodes them once per event, and re-encodes what a transform keeps.

use crate::Error;
use crate::bindings::destination::ebb::plugin::types as wit;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object: a record's fields.
pub type Record = Map<String, Value>;

/// What happened to a record since the last committed sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Added,
    Updated,
    Deleted,
}

/// One change event. Serialises to the envelope destinations usually send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub op: Op,
    /// The record's primary key, as text.
    pub id: String,
    pub fields: Record,
    /// The last record Ebb delivered for this key; `None` for `added`.
    pub previous: Option<Record>,
    /// Names this change of this record: the same whenever Ebb sends the
    /// change again (a retried batch, a resend after a crash or a failed
    /// run), different for any other change. Send it as the idempotency
    /// key where the destination takes one (Segment's `messageId`, an
    /// `Idempotency-Key` header), so a resent batch is not applied twice.
    #[serde(default)]
    pub delivery_id: String,
}

impl TryFrom<wit::Event> for Event {
    type Error = Error;

    fn try_from(event: wit::Event) -> Result<Self, Error> {
        let decode = |part: &str, bytes: &[u8]| {
            serde_json::from_slice::<Record>(bytes).map_err(|e| {
                Error::internal(format!(
                    "event {}: the host sent {part} that are not a JSON object: {e}",
                    event.id
                ))
            })
        };
        let fields = decode("fields", &event.fields)?;
        let previous = match &event.previous {
            Some(bytes) => Some(decode("previous fields", bytes)?),
            None => None,
        };
        let op = match event.op {
            wit::Op::Added => Op::Added,
            wit::Op::Updated => Op::Updated,
            wit::Op::Deleted => Op::Deleted,
        };
        Ok(Event {
            op,
            id: event.id,
            fields,
            previous,
            delivery_id: event.delivery_id,
        })
    }
}

impl From<Event> for wit::Event {
    fn from(event: Event) -> Self {
        let op = match event.op {
            Op::Added => wit::Op::Added,
            Op::Updated => wit::Op::Updated,
            Op::Deleted => wit::Op::Deleted,
        };
        wit::Event {
            op,
            id: event.id,
            fields: encode(&event.fields),
            previous: event.previous.as_ref().map(encode),
            delivery_id: event.delivery_id,
        }
    }
}

fn encode(record: &Record) -> Vec<u8> {
    serde_json::to_vec(record).expect("a map of JSON values with string keys always serialises")
}

/// Decodes a batch, runs `run` on the events that decoded and returns one
/// result per input event, in order: a decode failure becomes
/// `on_error(error)` at its own index so the batch stays index-aligned.
pub(crate) fn map_decoded<R>(
    batch: Vec<wit::Event>,
    run: impl FnOnce(Vec<Event>) -> Result<Vec<R>, Error>,
    on_error: impl Fn(Error) -> R,
) -> Result<Vec<R>, Error> {
    let mut slots = Vec::with_capacity(batch.len());
    let mut decoded = Vec::with_capacity(batch.len());
    for event in batch {
        match Event::try_from(event) {
            Ok(event) => {
                decoded.push(event);
                slots.push(None);
            }
            Err(error) => slots.push(Some(on_error(error))),
        }
    }
    let expected = decoded.len();
    let results = run(decoded)?;
    if results.len() != expected {
        return Err(Error::internal(format!(
            "the plugin returned {} results for a batch of {expected} events",
            results.len()
        )));
    }
    let mut results = results.into_iter();
    Ok(slots
        .into_iter()
        .flat_map(|slot| slot.or_else(|| results.next()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use serde_json::json;

    fn wit_event(id: &str, fields: &str, previous: Option<&str>) -> wit::Event {
        wit::Event {
            op: wit::Op::Updated,
            id: id.to_owned(),
            fields: fields.as_bytes().to_vec(),
            previous: previous.map(|p| p.as_bytes().to_vec()),
            delivery_id: format!("d-{id}"),
        }
    }

    #[test]
    fn round_trips_keeping_order_and_wide_numbers() {
        let fields = r#"{"z":1,"big":123456789012345678901234567890,"a":{"b":[1.50]}}"#;
        let event = Event::try_from(wit_event("7", fields, Some("{}"))).unwrap();
        assert_eq!(event.op, Op::Updated);
        assert_eq!(event.previous, Some(Record::new()));
        let back = wit::Event::from(event);
        assert_eq!(String::from_utf8(back.fields).unwrap(), fields);
        assert_eq!(back.previous.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn serialises_as_the_envelope() {
        let event = Event::try_from(wit_event("7", r#"{"a":1}"#, None)).unwrap();
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"op": "updated", "id": "7", "fields": {"a": 1}, "previous": null, "delivery_id": "d-7"})
        );
    }

    #[test]
    fn bad_bytes_become_an_error_at_their_index() {
        let batch = vec![
            wit_event("1", "{}", None),
            wit_event("2", "[1]", None),
            wit_event("3", "{}", Some("nope")),
            wit_event("4", "{}", None),
        ];
        let results = map_decoded(
            batch,
            |events| Ok(events.into_iter().map(|e| Ok(e.id)).collect()),
            Err,
        )
        .unwrap();
        assert_eq!(results[0], Ok("1".to_owned()));
        assert_eq!(results[3], Ok("4".to_owned()));
        let error = results[1].clone().unwrap_err();
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(
            error
                .message
                .starts_with("event 2: the host sent fields that are not a JSON object")
        );
        assert!(
            results[2]
                .clone()
                .unwrap_err()
                .message
                .starts_with("event 3: the host sent previous fields")
        );
    }

    #[test]
    fn a_plugin_returning_the_wrong_count_fails_the_batch() {
        let batch = vec![wit_event("1", "{}", None), wit_event("2", "{}", None)];
        let error = map_decoded(batch, |_| Ok(vec![()]), |_| ()).unwrap_err();
        assert_eq!(
            error.message,
            "the plugin returned 1 results for a batch of 2 events"
        );
    }
}
