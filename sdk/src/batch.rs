//! Cutting a batch into requests the way vendors' batch APIs take them:
//! each event becomes one JSON entry (or nothing, or a row error of its
//! own), and the entries go in requests that stay under the vendor's byte
//! limit. Segment's `/v1/batch` and Customer.io's `/api/v2/batch` are
//! this shape; so is any API taking `{"batch": [entry, …]}`.
//!
//! ```
//! use ebb_sdk::batch::{self, Entries};
//! use ebb_sdk::{Error, Event, Outcome};
//!
//! fn write(batch: &[Event]) -> Vec<Outcome> {
//!     batch::packed(
//!         batch,
//!         500 * 1024,
//!         |event| Ok(Some(serde_json::json!({ "id": event.id }).to_string())),
//!         |entries: Entries, outcomes: &mut [Outcome]| {
//!             let body = format!("{{\"batch\":{}}}", entries.json_array());
//!             // … send `body`; on failure:
//!             # let failed: Option<Error> = None;
//!             if let Some(error) = failed {
//!                 entries.fail(error, outcomes);
//!             }
//!         },
//!     )
//! }
//! ```

use crate::{Error, Event, Outcome};

/// Bytes kept free in each request for what wraps the entries
/// (`{"batch":[…]}`, a few other keys).
const ENVELOPE_BYTES: usize = 64;

/// The entries of one request: each event's index in the batch, and its
/// entry as JSON text.
#[derive(Debug, Clone, Copy)]
pub struct Entries<'a>(pub &'a [(usize, String)]);

impl Entries<'_> {
    /// The entries as one JSON array, `[e1,e2,…]`.
    pub fn json_array(&self) -> String {
        let joined: Vec<&str> = self.0.iter().map(|(_, e)| e.as_str()).collect();
        format!("[{}]", joined.join(","))
    }

    /// Gives every event in the request `error`'s outcome (retried if it
    /// is retryable, else rejected).
    pub fn fail(&self, error: Error, outcomes: &mut [Outcome]) {
        for (i, _) in self.0 {
            outcomes[*i] = Outcome::from(error.clone());
        }
    }

    /// The batch index of the request's `n`th entry.
    pub fn index(&self, n: usize) -> Option<usize> {
        self.0.get(n).map(|(i, _)| *i)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Turns each event into its entry with `entry` (`Ok(None)`: nothing is
/// sent and the event counts as delivered; `Err`: that event alone is
/// rejected), packs the entries into requests of at most
/// `max_request_bytes`, and hands each request to `send`, which writes the
/// outcome of the events it carried if they were not delivered. Returns
/// one outcome per event, in order.
pub fn packed(
    batch: &[Event],
    max_request_bytes: usize,
    mut entry: impl FnMut(&Event) -> Result<Option<String>, Error>,
    mut send: impl FnMut(Entries, &mut [Outcome]),
) -> Vec<Outcome> {
    let room = max_request_bytes.saturating_sub(ENVELOPE_BYTES);
    let mut outcomes = vec![Outcome::Ok; batch.len()];
    let mut pending: Vec<(usize, String)> = Vec::new();
    let mut bytes = 0;
    for (i, event) in batch.iter().enumerate() {
        let text = match entry(event) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(error) => {
                outcomes[i] = Outcome::Reject(error);
                continue;
            }
        };
        // One byte for the comma between entries.
        if !pending.is_empty() && bytes + text.len() + 1 > room {
            send(Entries(&pending), &mut outcomes);
            pending.clear();
            bytes = 0;
        }
        bytes += text.len() + 1;
        pending.push((i, text));
    }
    if !pending.is_empty() {
        send(Entries(&pending), &mut outcomes);
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Op;
    use crate::testing::event;
    use serde_json::json;

    #[test]
    fn entries_are_packed_under_the_limit_and_refusals_stay_alone() {
        let batch: Vec<Event> = (0..10)
            .map(|i| event(Op::Added, i.to_string(), json!({})))
            .collect();
        let mut requests = Vec::new();
        let outcomes = packed(
            &batch,
            ENVELOPE_BYTES + 25,
            |e| match e.id.as_str() {
                "3" => Err(Error::rejected("bad")),
                "4" => Ok(None),
                id => Ok(Some(format!("\"entry-{id}\""))),
            },
            |entries, _| requests.push(entries.json_array()),
        );
        assert_eq!(
            requests,
            [
                r#"["entry-0","entry-1"]"#,
                r#"["entry-2","entry-5"]"#,
                r#"["entry-6","entry-7"]"#,
                r#"["entry-8","entry-9"]"#
            ]
        );
        assert!(matches!(&outcomes[3], Outcome::Reject(e) if e.message == "bad"));
        assert!(
            outcomes
                .iter()
                .enumerate()
                .all(|(i, o)| i == 3 || *o == Outcome::Ok)
        );
    }

    #[test]
    fn a_failed_request_fails_only_its_events() {
        let batch: Vec<Event> = (0..3)
            .map(|i| event(Op::Added, i.to_string(), json!({})))
            .collect();
        let outcomes = packed(
            &batch,
            ENVELOPE_BYTES + 10,
            |e| Ok(Some(format!("\"{}\"", e.id))),
            |entries, outcomes| {
                if entries.index(0) == Some(0) {
                    entries.fail(Error::transient("down"), outcomes);
                }
            },
        );
        assert!(matches!(&outcomes[0], Outcome::Retry(_)));
        assert!(matches!(&outcomes[1], Outcome::Retry(_)));
        assert_eq!(outcomes[2], Outcome::Ok);
    }
}
