//! The delivery id: a name for one change of one record that a destination
//! can de-duplicate by (Segment's `messageId`, an `Idempotency-Key` header).
//!
//! It must be the same whenever the change is sent again, and differ for
//! any other change, even one that brings a record back to a value it had
//! before. So it is derived from the sync, the key, the op, the fingerprint
//! of the new record and an epoch: the id of the sync's last run that went
//! through every change (ended `success` or `partial`).
//!
//! - Within a run, a retried batch holds the same events.
//! - A run that crashed, was interrupted or failed midway does not move the
//!   epoch, so the next run sends what it left uncommitted under the same
//!   ids, whether the destination saw it or not.
//! - A change owed by a finished run was recorded with its id, and keeps it
//!   for as long as it stays the same change ([`DeliveryIds::owed`]).
//! - Every other change is first met after a finished run, so its epoch is
//!   newer than that of any change to the same record before it: A→B, B→A,
//!   A→B get three ids.
//!
//! The id is 32 hex digits of xxh3-128. Events a transform splits one
//! change into are told apart by a `-N` suffix, in order.

use std::collections::HashMap;

use crate::event::Op;

/// What a change is, as far as its delivery id goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeOf<'a> {
    pub key: &'a str,
    pub op: Op,
    /// The new record's fingerprint; `None` for a deletion.
    pub fingerprint: Option<u128>,
}

/// A change a finished run could not deliver, and the id it was sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    pub op: Op,
    pub fingerprint: Option<u128>,
    pub delivery_id: String,
    /// Of the events a transform split it into, those the destination
    /// acknowledged: they are not sent again while the change is the same.
    pub delivered: Vec<String>,
}

/// Gives the changes of one run of one sync their delivery ids.
#[derive(Debug, Clone, Default)]
pub struct DeliveryIds {
    sync: String,
    /// The sync's last run that ended `success` or `partial`; 0 before one.
    epoch: i64,
    /// Owed changes by key.
    owed: HashMap<String, Owed>,
}

impl DeliveryIds {
    pub fn new(sync: &str, epoch: i64, owed: HashMap<String, Owed>) -> DeliveryIds {
        DeliveryIds {
            sync: sync.to_owned(),
            epoch,
            owed,
        }
    }

    /// The id of `change`: the one it was sent with before if it is owed
    /// and still the same change, else a new one of this epoch.
    pub fn of(&self, change: ChangeOf<'_>) -> String {
        if let Some(owed) = self.still_owed(change) {
            return owed.delivery_id.clone();
        }
        // One hash over the parts laid end to end, each string after its
        // length: the bytes ids have always been hashed from.
        let mut parts = Vec::with_capacity(self.sync.len() + change.key.len() + 48);
        for part in [self.sync.as_bytes(), change.key.as_bytes()] {
            parts.extend_from_slice(&(part.len() as u64).to_le_bytes());
            parts.extend_from_slice(part);
        }
        parts.extend_from_slice(change.op.as_str().as_bytes());
        parts.extend_from_slice(&change.fingerprint.unwrap_or(0).to_le_bytes());
        parts.extend_from_slice(&self.epoch.to_le_bytes());
        // Its 16 bytes in hex, most significant first.
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&parts))
    }
}

impl DeliveryIds {
    /// The events of `change`, split by a transform, that the destination
    /// already acknowledged while it was owed; empty unless it is owed and
    /// still the same change.
    pub fn delivered(&self, change: ChangeOf<'_>) -> &[String] {
        self.still_owed(change).map_or(&[], |o| &o.delivered)
    }

    /// The owed row of `change`, if it is still the same change.
    fn still_owed(&self, change: ChangeOf<'_>) -> Option<&Owed> {
        self.owed
            .get(change.key)
            .filter(|owed| owed.op == change.op && owed.fingerprint == change.fingerprint)
    }
}

/// The id of the `n`th (from 1) of the `made` events the transforms made
/// of a change whose id is `base`: `base` itself when they made one.
pub fn made(base: String, made: usize, n: usize) -> String {
    if made == 1 {
        base
    } else {
        format!("{base}-{n}")
    }
}

/// Whether `id` names one of several events a change was split into.
pub fn is_part(id: &str) -> bool {
    id.contains('-')
}

/// The id of an event `ebb replay` sends again, from its key and the id it
/// was delivered with (empty for events kept before ids existed): new,
/// because a replay is a deliberate second delivery that a destination
/// must not discard as a duplicate, and the same for every retry within
/// this replay.
pub fn replayed(key: &str, original: &str, replay_started_ms: i64) -> String {
    deliberate(key, original, b"replay", replay_started_ms)
}

/// The id of the event `ebb test-record` sends: new, so that the vendor
/// does not take the next run's event for the record as a duplicate of
/// the test (Segment drops a `messageId` it has seen).
pub fn tested(key: &str, test_started_ms: i64) -> String {
    deliberate(key, "", b"test", test_started_ms)
}

/// An id of a deliberate extra delivery: `purpose` of `key` at `ms`.
fn deliberate(key: &str, original: &str, purpose: &[u8], ms: i64) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in [key.as_bytes(), original.as_bytes(), purpose] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.update(&ms.to_le_bytes());
    format!("{:032x}", hasher.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, op: Op, fingerprint: Option<u128>) -> ChangeOf<'_> {
        ChangeOf {
            key,
            op,
            fingerprint,
        }
    }

    #[test]
    fn ids_stay_what_earlier_versions_named_them() {
        // Owed rows and destinations keep ids from earlier runs: the same
        // change must keep getting the same id.
        let ids = DeliveryIds::new("users", 7, HashMap::new());
        assert_eq!(
            ids.of(change("1", Op::Updated, Some(42))),
            "c97f8428e587e4286fd47f9cc78c6172"
        );
        assert_eq!(
            ids.of(change("1", Op::Deleted, None)),
            "d91afa55483685b4116d5341911ec278"
        );
    }

    #[test]
    fn the_same_change_in_the_same_epoch_has_the_same_id() {
        let ids = DeliveryIds::new("users", 7, HashMap::new());
        let a = ids.of(change("1", Op::Updated, Some(42)));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            a,
            DeliveryIds::new("users", 7, HashMap::new()).of(change("1", Op::Updated, Some(42)))
        );
    }

    #[test]
    fn anything_else_changes_it() {
        let ids = DeliveryIds::new("users", 7, HashMap::new());
        let base = ids.of(change("1", Op::Updated, Some(42)));
        let others = [
            ids.of(change("2", Op::Updated, Some(42))),
            ids.of(change("1", Op::Added, Some(42))),
            ids.of(change("1", Op::Updated, Some(43))),
            ids.of(change("1", Op::Deleted, None)),
            DeliveryIds::new("users", 8, HashMap::new()).of(change("1", Op::Updated, Some(42))),
            DeliveryIds::new("users2", 7, HashMap::new()).of(change("1", Op::Updated, Some(42))),
        ];
        for other in others {
            assert_ne!(base, other);
        }
        // The sync and key are length-prefixed: ("ab", "c") is not ("a", "bc").
        let ab = DeliveryIds::new("ab", 7, HashMap::new()).of(change("c", Op::Added, Some(1)));
        let a = DeliveryIds::new("a", 7, HashMap::new()).of(change("bc", Op::Added, Some(1)));
        assert_ne!(ab, a);
    }

    #[test]
    fn an_owed_change_keeps_its_id_until_it_changes() {
        let owed = Owed {
            op: Op::Updated,
            fingerprint: Some(42),
            delivery_id: "sent-before".into(),
            delivered: vec!["sent-before-1".into()],
        };
        let ids = DeliveryIds::new("users", 9, HashMap::from([("1".to_owned(), owed)]));
        assert_eq!(ids.of(change("1", Op::Updated, Some(42))), "sent-before");
        assert_eq!(
            ids.delivered(change("1", Op::Updated, Some(42))),
            ["sent-before-1"]
        );
        assert_ne!(ids.of(change("1", Op::Updated, Some(43))), "sent-before");
        assert!(ids.delivered(change("1", Op::Updated, Some(43))).is_empty());
        assert_ne!(ids.of(change("1", Op::Deleted, None)), "sent-before");
    }

    #[test]
    fn splits_and_replays_get_their_own() {
        assert_eq!(made("abc".into(), 1, 1), "abc");
        assert_eq!(made("abc".into(), 3, 2), "abc-2");
        assert_ne!(replayed("7", "abc", 1), "abc");
        assert_ne!(replayed("7", "abc", 1), replayed("7", "abc", 2));
        assert_ne!(replayed("7", "", 1), replayed("8", "", 1));
        assert_eq!(replayed("7", "abc", 1), replayed("7", "abc", 1));
    }
}
