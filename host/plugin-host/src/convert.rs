//! Conversions between the host's types and the WIT-generated ones.
//!
//! Event fields cross the boundary as JSON bytes (WIT has no recursive
//! types), so everything coming back from a guest is parsed and checked
//! here; a malformed value becomes a protocol error naming the event, never a
//! panic. Public so that benchmarks can price the boundary with the same
//! conversions the engine uses.

use std::time::Duration;

use crate::bindings::{WitError, WitErrorKind, WitEvent, WitItem, WitOp, WitOutcome};
use crate::error::{ErrorKind, RemoteError};
use crate::event::{Event, Fields, NotObject, Op};
use crate::verdict::{Item, Outcome};

/// A guest sent event fields that are not a JSON object.
#[derive(Debug, thiserror::Error)]
#[error("`{part}` of event `{id}` is not a JSON object: {error}")]
pub struct NotAnObject {
    /// `fields` or `previous`.
    pub part: &'static str,
    pub id: String,
    pub error: NotObject,
}

pub fn event_to_wit(event: &Event) -> WitEvent {
    WitEvent {
        op: match event.op {
            Op::Added => WitOp::Added,
            Op::Updated => WitOp::Updated,
            Op::Deleted => WitOp::Deleted,
        },
        id: event.id.clone(),
        fields: event.fields.json().as_bytes().to_vec(),
        previous: event
            .previous
            .as_ref()
            .map(|p| p.json().as_bytes().to_vec()),
        delivery_id: event.delivery_id.clone(),
    }
}

pub fn event_from_wit(event: WitEvent) -> Result<Event, NotAnObject> {
    let id = &event.id;
    let object = |part: &'static str, bytes: Vec<u8>| -> Result<Fields, NotAnObject> {
        Fields::from_bytes(bytes).map_err(|error| NotAnObject {
            part,
            id: id.clone(),
            error,
        })
    };
    let fields = object("fields", event.fields)?;
    let previous = match event.previous {
        Some(bytes) => Some(object("previous", bytes)?),
        None => None,
    };
    Ok(Event {
        op: match event.op {
            WitOp::Added => Op::Added,
            WitOp::Updated => Op::Updated,
            WitOp::Deleted => Op::Deleted,
        },
        id: event.id,
        fields,
        previous,
        delivery_id: event.delivery_id,
    })
}

pub fn remote_error(error: WitError) -> RemoteError {
    RemoteError {
        kind: match error.kind {
            WitErrorKind::InvalidConfig => ErrorKind::InvalidConfig,
            WitErrorKind::Auth => ErrorKind::Auth,
            WitErrorKind::RateLimited => ErrorKind::RateLimited,
            WitErrorKind::Transient => ErrorKind::Transient,
            WitErrorKind::Rejected => ErrorKind::Rejected,
            WitErrorKind::Internal => ErrorKind::Internal,
        },
        message: error.message,
        retry_after: error.retry_after_ms.map(Duration::from_millis),
    }
}

pub fn outcome_from_wit(outcome: WitOutcome) -> Outcome {
    match outcome {
        WitOutcome::Ok => Outcome::Ok,
        WitOutcome::Retry(e) => Outcome::Retry(remote_error(e)),
        WitOutcome::Reject(e) => Outcome::Reject(remote_error(e)),
    }
}

pub fn item_from_wit(item: WitItem) -> Result<Item, NotAnObject> {
    Ok(match item {
        WitItem::Keep(event) => Item::Keep(event_from_wit(event)?),
        WitItem::Drop => Item::Drop,
        WitItem::Split(events) => Item::Split(
            events
                .into_iter()
                .map(event_from_wit)
                .collect::<Result<_, _>>()?,
        ),
        WitItem::Fail(e) => Item::Fail(remote_error(e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Event {
        Event {
            op: Op::Updated,
            id: "42".into(),
            fields: Fields::from_json(r#"{"email":"a@example.com","n":2}"#.into()).unwrap(),
            previous: Some(Fields::of(
                json!({"email": "old@example.com"}).as_object().unwrap(),
            )),
            delivery_id: "d-42".into(),
        }
    }

    #[test]
    fn events_round_trip_through_json_bytes() {
        let wit = event_to_wit(&event());
        assert_eq!(wit.fields, br#"{"email":"a@example.com","n":2}"#);
        assert_eq!(event_from_wit(wit).unwrap(), event());
    }

    #[test]
    fn non_object_fields_name_the_event() {
        let mut wit = event_to_wit(&event());
        wit.fields = b"[1,2]".to_vec();
        let err = event_from_wit(wit).unwrap_err().to_string();
        assert!(err.contains("`fields` of event `42`"), "{err}");
        assert!(err.ends_with("a JSON array, not an object"), "{err}");
        wit = event_to_wit(&event());
        wit.previous = Some(b"{\"a\":".to_vec());
        let err = event_from_wit(wit).unwrap_err().to_string();
        assert!(err.contains("`previous` of event `42`"), "{err}");
    }

    #[test]
    fn retry_after_is_milliseconds() {
        let error = remote_error(WitError {
            kind: WitErrorKind::RateLimited,
            message: "slow down".into(),
            retry_after_ms: Some(1500),
        });
        assert_eq!(error.kind, ErrorKind::RateLimited);
        assert_eq!(error.retry_after, Some(Duration::from_millis(1500)));
    }
}
