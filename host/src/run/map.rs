//! The map stage: the sync's `mapping` turns each event's fields (and the
//! previous record's, so a destination compares like with like) into the
//! destination action's payload. Without a mapping, events go as the
//! transforms left them.

use crate::mapping::Mapping;
use crate::transform::Traced;

pub(super) fn apply(mapping: Option<&Mapping>, events: &mut [Traced]) {
    let Some(mapping) = mapping else { return };
    for (_, e) in events {
        e.fields = mapping.apply(&e.fields.record()).into();
        e.previous = e
            .previous
            .as_ref()
            .map(|p| mapping.apply(&p.record()).into());
    }
}
