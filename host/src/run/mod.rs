//! One sync run, as its stages: [`prepare`] (everything the config decides,
//! checked before anything is written), then for each chunk of rows
//! extract → diff → transform → map → deliver → commit, inside a
//! [`lifecycle`] that claims the run, keeps it alive and records how it
//! ended. [`plan`] walks the same path without a writer, and
//! [`test_record`] sends one record along it without one; [`replay`],
//! [`reset`] and [`drop_owed`] work on what runs delivered.
//!
//! After [`prepare`], each batch of changes is committed as soon as the
//! destination acknowledged it, so a crash loses at most the batches in
//! flight, which the next run derives again. The run does not know who
//! started it: the CLI and `ebb serve` decide what follows it (printing,
//! alerts).

mod commit;
mod committing;
mod deliver;
mod diff;
mod drop;
mod error;
mod extract;
mod in_flight;
mod lifecycle;
mod map;
mod operation;
mod pass;
mod plan;
mod prepare;
mod replay;
mod reset;
mod test_record;
mod transform;

pub use drop::drop_owed;
pub use error::{RunError, chain};
pub use lifecycle::{Claimed, Started, Summary, interrupted, start};
pub use plan::{Change, Plan, PlanSummary, PlannedEvent, plan};
pub use prepare::{Prepared, prepare};
pub use replay::{Replayed, replay};
pub use reset::reset;
pub use test_record::{Tested, test_record};
