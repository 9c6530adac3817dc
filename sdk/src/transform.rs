//! The transform side: the [`Transform`] trait a transform author
//! implements, and the glue behind the `ebb:plugin/transform` export.

use crate::bindings::destination::ebb::plugin::types as wit;
use crate::bindings::transform::exports::ebb::plugin::transform::{Guest, Item as WitItem};
use crate::{Error, Event, RawEvent, config, event};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// A pure per-event function: no network, files or environment.
pub trait Transform {
    /// The transform's settings, deserialised from the sync's JSON config.
    type Config: DeserializeOwned;

    /// Transforms one event.
    fn apply(config: &Self::Config, event: Event) -> Item;

    /// Transforms a batch: one [`Item`] per event, in order. Defaults to
    /// [`Transform::apply`] on each event; override it to share work
    /// across a batch.
    fn apply_batch(config: &Self::Config, batch: Vec<Event>) -> Vec<Item> {
        batch
            .into_iter()
            .map(|event| Self::apply(config, event))
            .collect()
    }

    /// Transforms a batch whose records are still the host's JSON text:
    /// one item per event, in order. The SDK always calls this one; the
    /// default parses each event's records, calls
    /// [`Transform::apply_batch`] and writes what it keeps back. A
    /// transform that leaves many events as they are (one that looks at
    /// `op` first, or at few events) overrides it, keeps those raw, and
    /// calls [`RawEvent::decode`] and `apply` on the rest.
    fn apply_raw(config: &Self::Config, batch: Vec<RawEvent>) -> Vec<Item<RawEvent>> {
        let count = batch.len();
        let items = event::map_decoded(
            batch,
            RawEvent::decode,
            |events| Ok(Self::apply_batch(config, events)),
            Item::Fail,
        );
        match items {
            Ok(items) => items.into_iter().map(Item::into_raw).collect(),
            Err(error) => vec![Item::Fail(error); count],
        }
    }
}

/// What becomes of one event: an [`Event`], or a [`RawEvent`] in
/// [`Transform::apply_raw`].
#[derive(Debug, Clone, PartialEq)]
pub enum Item<E = Event> {
    /// Keep the event, possibly changed.
    Keep(E),
    /// Drop it: nothing is sent, and the record still counts as synced.
    Drop,
    /// Replace it with several events.
    Split(Vec<E>),
    /// This event cannot be transformed; it becomes a row error.
    Fail(Error),
}

impl<E> Item<E> {
    /// The same item over other events; an event `convert` fails on fails
    /// the item.
    fn convert<F>(self, convert: impl Fn(E) -> Result<F, Error>) -> Item<F> {
        let converted = match self {
            Item::Keep(event) => convert(event).map(Item::Keep),
            Item::Drop => Ok(Item::Drop),
            Item::Split(events) => events
                .into_iter()
                .map(convert)
                .collect::<Result<_, _>>()
                .map(Item::Split),
            Item::Fail(error) => Ok(Item::Fail(error)),
        };
        converted.unwrap_or_else(Item::Fail)
    }
}

impl Item {
    /// The item with its events' records written as JSON text.
    pub fn into_raw(self) -> Item<RawEvent> {
        self.convert(|event| Ok(event.into()))
    }
}

impl Item<RawEvent> {
    /// The item with its events' records parsed.
    pub fn decode(self) -> Item {
        self.convert(RawEvent::decode)
    }
}

impl From<Item<RawEvent>> for WitItem {
    fn from(item: Item<RawEvent>) -> Self {
        match item {
            Item::Keep(event) => WitItem::Keep(event.into()),
            Item::Drop => WitItem::Drop,
            Item::Split(events) => WitItem::Split(events.into_iter().map(Into::into).collect()),
            Item::Fail(error) => WitItem::Fail(error.into()),
        }
    }
}

/// The `apply` export in SDK types (the component's export wraps it, and
/// `crate::testing` calls it natively): one item per event, in order; an
/// event that does not decode fails at its index, and a bad config fails
/// every event.
pub(crate) fn apply<T: Transform>(config: &str, batch: Vec<wit::Event>) -> Vec<Item<RawEvent>> {
    let count = batch.len();
    let items = config::parse::<T::Config>(config).and_then(|config| {
        event::map_decoded(
            batch,
            RawEvent::try_from,
            |events| Ok(T::apply_raw(&config, events)),
            Item::Fail,
        )
    });
    match items {
        Ok(items) => items,
        Err(error) => vec![Item::Fail(error); count],
    }
}

/// Implements the generated export trait for any [`Transform`]; used by
/// [`crate::export_transform!`].
#[doc(hidden)]
pub struct Export<T>(PhantomData<T>);

impl<T: Transform> Guest for Export<T> {
    fn apply(config: String, batch: Vec<wit::Event>) -> Vec<WitItem> {
        apply::<T>(&config, batch)
            .into_iter()
            .map(Into::into)
            .collect()
    }
}

/// Exports a type implementing [`Transform`] as the plugin's
/// `ebb:plugin/transform` world. Call it once, at the crate root of a
/// `cdylib` built for `wasm32-wasip2`: `ebb_sdk::export_transform!(MyType);`. The
/// crate README has a complete example.
#[macro_export]
macro_rules! export_transform {
    ($ty:ty) => {
        const _: () = {
            type EbbTransformExport = $crate::transform::Export<$ty>;
            $crate::bindings::transform::export_transform_world!(
                EbbTransformExport with_types_in $crate::bindings::transform
            );
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    struct Tag;

    #[derive(Deserialize)]
    struct Config {
        tag: String,
    }

    impl Transform for Tag {
        type Config = Config;

        fn apply(config: &Config, mut event: Event) -> Item {
            match event.id.as_str() {
                "drop" => Item::Drop,
                _ => {
                    event.fields.insert("tag".into(), config.tag.clone().into());
                    Item::Keep(event)
                }
            }
        }
    }

    fn event(id: &str) -> wit::Event {
        let fields = b"{}".to_vec();
        wit::Event {
            op: wit::Op::Added,
            id: id.into(),
            fields,
            previous: None,
            delivery_id: format!("d-{id}"),
        }
    }

    #[test]
    fn applies_per_event_in_order() {
        let items = Export::<Tag>::apply(r#"{"tag":"x"}"#.into(), vec![event("1"), event("drop")]);
        assert!(matches!(&items[0], WitItem::Keep(e) if e.fields == br#"{"tag":"x"}"#));
        assert!(matches!(items[1], WitItem::Drop));
    }

    #[test]
    fn a_bad_config_fails_every_event() {
        let items = Export::<Tag>::apply("{}".into(), vec![event("1"), event("2")]);
        assert_eq!(items.len(), 2);
        for item in items {
            assert!(
                matches!(item, WitItem::Fail(e) if e.message == "invalid config: missing field `tag`")
            );
        }
    }
}
