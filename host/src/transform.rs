//! The sync's chain of transform components. Each event carries the index of
//! the change it came from (its origin), so that after drops and splits the
//! load stage still knows which change an acknowledgement belongs to.

use serde_json::Value;

use crate::event::Event;
use crate::plugin::{self, CallError, Item};

pub struct Step {
    pub label: String,
    pub transform: plugin::Transform,
    pub config: Value,
}

/// An event and the index of the change it came from.
pub type Traced = (usize, Event);

/// The result of running the chain over a batch.
pub struct Transformed {
    pub events: Vec<Traced>,
    /// Origins a transform refused, with its message.
    pub failed: Vec<(usize, String)>,
}

pub async fn run_chain(steps: &[Step], events: Vec<Traced>) -> Result<Transformed, CallError> {
    let mut current = events;
    let mut failed = Vec::new();
    for step in steps {
        if current.is_empty() {
            break;
        }
        let (origins, batch): (Vec<usize>, Vec<Event>) = current.into_iter().unzip();
        let items = step.transform.apply(&step.config, &batch).await?;
        current = Vec::with_capacity(batch.len());
        for (origin, item) in origins.into_iter().zip(items) {
            match item {
                Item::Keep(e) => current.push((origin, e)),
                Item::Drop => {}
                Item::Split(es) => current.extend(es.into_iter().map(|e| (origin, e))),
                Item::Fail(e) => failed.push((origin, format!("{}: {}", step.label, e.message))),
            }
        }
        // A failed origin sends nothing, even what other splits produced.
        let refused: std::collections::HashSet<usize> = failed.iter().map(|(o, _)| *o).collect();
        current.retain(|(o, _)| !refused.contains(o));
    }
    Ok(Transformed {
        events: current,
        failed,
    })
}
