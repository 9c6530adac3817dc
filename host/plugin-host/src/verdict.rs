//! What a plugin says about each event of a batch, index-aligned with it:
//! a destination's [`Outcome`] and a transform's [`Item`]. The pipeline acts
//! on these (retry, row error, keep, drop, split) without knowing anything
//! about WebAssembly.

use crate::error::RemoteError;
use crate::event::Event;

/// A destination's verdict on one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Not delivered this time; retry with backoff.
    Retry(RemoteError),
    /// Refused for good; becomes a row error.
    Reject(RemoteError),
}

/// A transform's verdict on one event of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Keep(Event),
    Drop,
    Split(Vec<Event>),
    Fail(RemoteError),
}
