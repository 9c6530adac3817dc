//! The change event as plugins see it: the JSON envelope
//! `{"op","id","fields","previous","delivery_id"}`. Across the WIT boundary `fields` and
//! `previous` travel as JSON bytes (WIT has no recursive types). They
//! arrive as a [`RawEvent`], checked but not parsed, so a plugin that only
//! forwards records (or looks at `op` first) never pays for parsing them;
//! [`RawEvent::decode`] parses them into an [`Event`]'s maps for the
//! plugins that read them, and what a transform keeps is written back.

use crate::Error;
use crate::bindings::destination::ebb::plugin::types as wit;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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

/// One change event whose records are still the JSON text the host sent:
/// each a JSON object, checked but not parsed. Serialises to the same
/// envelope as [`Event`], the records written out as they came.
#[derive(Debug, Clone, Serialize)]
pub struct RawEvent {
    pub op: Op,
    /// The record's primary key, as text.
    pub id: String,
    pub fields: Box<RawValue>,
    /// The last record Ebb delivered for this key; `None` for `added`.
    pub previous: Option<Box<RawValue>>,
    /// As [`Event::delivery_id`].
    pub delivery_id: String,
}

impl RawEvent {
    /// Parses the records into maps.
    pub fn decode(self) -> Result<Event, Error> {
        let decode = |part: &str, raw: &RawValue| {
            serde_json::from_str::<Record>(raw.get()).map_err(|e| {
                Error::internal(format!(
                    "event {}: {part} are not a JSON object: {e}",
                    self.id
                ))
            })
        };
        let fields = decode("fields", &self.fields)?;
        let previous = match &self.previous {
            Some(raw) => Some(decode("previous fields", raw)?),
            None => None,
        };
        Ok(Event {
            op: self.op,
            id: self.id,
            fields,
            previous,
            delivery_id: self.delivery_id,
        })
    }
}

impl From<Event> for RawEvent {
    fn from(event: Event) -> Self {
        RawEvent {
            op: event.op,
            id: event.id,
            fields: encode(&event.fields),
            previous: event.previous.as_ref().map(encode),
            delivery_id: event.delivery_id,
        }
    }
}

fn encode(record: &Record) -> Box<RawValue> {
    serde_json::value::to_raw_value(record)
        .expect("a map of JSON values with string keys always serialises")
}

impl TryFrom<wit::Event> for RawEvent {
    type Error = Error;

    fn try_from(event: wit::Event) -> Result<Self, Error> {
        let check = |part: &str, bytes: Vec<u8>| {
            let problem = |detail: String| {
                Error::internal(format!(
                    "event {}: the host sent {part} that are not a JSON object{detail}",
                    event.id
                ))
            };
            let text = String::from_utf8(bytes).map_err(|e| problem(format!(": {e}")))?;
            let raw = RawValue::from_string(text).map_err(|e| problem(format!(": {e}")))?;
            match raw.get().starts_with('{') {
                true => Ok(raw),
                false => Err(problem(String::new())),
            }
        };
        let fields = check("fields", event.fields)?;
        let previous = match event.previous {
            Some(bytes) => Some(check("previous fields", bytes)?),
            None => None,
        };
        let op = match event.op {
            wit::Op::Added => Op::Added,
            wit::Op::Updated => Op::Updated,
            wit::Op::Deleted => Op::Deleted,
        };
        Ok(RawEvent {
            op,
            id: event.id,
            fields,
            previous,
            delivery_id: event.delivery_id,
        })
    }
}

impl From<RawEvent> for wit::Event {
    fn from(event: RawEvent) -> Self {
        let op = match event.op {
            Op::Added => wit::Op::Added,
            Op::Updated => wit::Op::Updated,
            Op::Deleted => wit::Op::Deleted,
        };
        let bytes = |raw: Box<RawValue>| Box::<str>::from(raw).into_string().into_bytes();
        wit::Event {
            op,
            id: event.id,
            fields: bytes(event.fields),
            previous: event.previous.map(bytes),
            delivery_id: event.delivery_id,
        }
    }
}

/// Decodes a batch, runs `run` on the events that decoded and returns one
/// result per input event, in order: a decode failure becomes
/// `on_error(error)` at its own index so the batch stays index-aligned.
pub(crate) fn map_decoded<T, E, R>(
    batch: Vec<T>,
    decode: impl Fn(T) -> Result<E, Error>,
    run: impl FnOnce(Vec<E>) -> Result<Vec<R>, Error>,
    on_error: impl Fn(Error) -> R,
) -> Result<Vec<R>, Error> {
    let mut slots = Vec::with_capacity(batch.len());
    let mut decoded = Vec::with_capacity(batch.len());
    for event in batch {
        match decode(event) {
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

    fn decoded(event: wit::Event) -> Result<Event, Error> {
        RawEvent::try_from(event)?.decode()
    }

    #[test]
    fn round_trips_keeping_order_and_wide_numbers() {
        let fields = r#"{"z":1,"big":123456789012345678901234567890,"a":{"b":[1.50]}}"#;
        let event = decoded(wit_event("7", fields, Some("{}"))).unwrap();
        assert_eq!(event.op, Op::Updated);
        assert_eq!(event.previous, Some(Record::new()));
        let back = wit::Event::from(RawEvent::from(event));
        assert_eq!(String::from_utf8(back.fields).unwrap(), fields);
        assert_eq!(back.previous.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn raw_events_pass_the_hosts_text_through_untouched() {
        let fields = r#"{"b": 1.50,  "a":"\u00e9"}"#;
        let event = RawEvent::try_from(wit_event("7", fields, None)).unwrap();
        assert_eq!(event.fields.get(), fields);
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            format!(
                r#"{{"op":"updated","id":"7","fields":{fields},"previous":null,"delivery_id":"d-7"}}"#
            )
        );
        let back = wit::Event::from(event);
        assert_eq!(String::from_utf8(back.fields).unwrap(), fields);
    }

    #[test]
    fn serialises_as_the_envelope() {
        let event = decoded(wit_event("7", r#"{"a":1}"#, None)).unwrap();
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
            RawEvent::try_from,
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
        let error = map_decoded(batch, RawEvent::try_from, |_| Ok(vec![()]), |_| ()).unwrap_err();
        assert_eq!(
            error.message,
            "the plugin returned 1 results for a batch of 2 events"
        );
    }
}
