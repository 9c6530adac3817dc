//! `ebb test-record`: one record's current row sent through the sync's
//! transforms and mapping to its destination, to see credentials, mapping
//! and the vendor's answer before trusting a run with them (Segment and
//! Customer.io call it "send test record").
//!
//! Nothing is written to the state store: the record's snapshot, owed rows
//! and history stay as they were, so the next run sends the record as it
//! would have anyway. The event goes under a delivery id of its own
//! ([`delivery_id::tested`]), so the vendor does not take that run's event
//! for a duplicate of the test. It is tried once: a throttled or failed
//! test shows the vendor's answer rather than waiting out retries.

use futures::StreamExt;
use serde::Serialize;

use super::error::{Result, RunError};
use super::map;
use super::prepare::{Prepared, prepare};
use crate::config::{self, Config, SourceKind};
use crate::delivery_id;
use crate::diff::key_hash;
use crate::event::{Event, Op, Record};
use crate::extract::{self, Templates};
use crate::load::Delivery;
use crate::plugin::{Engine, Exchange, Masker};
use crate::source::Warehouse;
use crate::state::State;
use crate::transform;

/// What the test sent and how the destination answered.
#[derive(Debug, Serialize)]
pub struct Tested {
    pub sync: String,
    pub key: String,
    /// What the transforms and the mapping made of the record, as sent.
    pub events: Vec<Event>,
    /// Why a transform refused the record (then nothing was sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The requests the destination made, secrets hidden.
    pub requests: Vec<Exchange>,
    /// What became of each event, in order.
    pub outcomes: Vec<Outcome>,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub id: String,
    /// `ok`, `rejected` or `failed`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Tested {
    /// Whether every event the record became was accepted.
    pub fn accepted(&self) -> bool {
        self.refused.is_none() && self.outcomes.iter().all(|o| o.error.is_none())
    }
}

/// Sends the current row of the record keyed `key` (or the first row the
/// model returns) the way the sync's next run would, and writes nothing.
pub async fn test_record(
    cfg: &Config,
    engine: &Engine,
    sync_name: &str,
    key: Option<&str>,
) -> Result<Tested> {
    let Prepared {
        warehouse,
        model,
        source,
        mut loader,
        steps,
        sync,
        ..
    } = prepare(cfg, engine, sync_name).await?;
    let (key, fields) = find(cfg, warehouse, &model, source.kind, key).await?;
    // The record as last delivered makes this an update, as it would be in
    // a run, so transforms that compare with it see what they would.
    let previous = match State::open_existing(&cfg.state_url).await? {
        Some(state) => {
            let hash = key_hash(&key);
            state.records(sync_name, &[hash]).await?.remove(&hash)
        }
        None => None,
    };
    let started_ms = chrono::Utc::now().timestamp_millis();
    let event = Event {
        op: if previous.is_some() {
            Op::Updated
        } else {
            Op::Added
        },
        id: key.clone(),
        fields: fields.into(),
        previous,
        delivery_id: delivery_id::tested(&key, started_ms),
    };
    let base_id = event.delivery_id.clone();
    let transformed = transform::run_chain(&steps, vec![(0, event)]).await?;
    let masker = Masker::new(&loader.config);
    let mut tested = Tested {
        sync: sync_name.to_owned(),
        key,
        events: Vec::new(),
        refused: transformed
            .failed
            .into_iter()
            .next()
            .map(|(_, m)| masker.text(&m)),
        requests: Vec::new(),
        outcomes: Vec::new(),
    };
    let mut events = transformed.events;
    let made = events.len();
    for (i, (_, e)) in events.iter_mut().enumerate() {
        e.delivery_id = delivery_id::made(base_id.clone(), made, i + 1);
    }
    map::apply(sync.mapping.as_ref(), &mut events);
    tested.events = events.into_iter().map(|(_, e)| e).collect();

    loader.retry.max_attempts = 1;
    let recorder = loader.destination.record();
    let mut deliveries = loader.deliver(tested.events.clone().into());
    while let Some(done) = deliveries.next().await {
        for (i, delivery) in done.range.zip(done.deliveries) {
            let outcome = delivery.outcome();
            let error = match delivery {
                Delivery::Ok => None,
                Delivery::Rejected(e) | Delivery::Failed(e) => Some(masker.text(&e)),
            };
            tested.outcomes.push(Outcome {
                id: tested.events[i].id.clone(),
                outcome,
                error,
            });
        }
    }
    drop(deliveries);
    tested.requests = recorder.take().iter().map(|r| masker.request(r)).collect();
    Ok(tested)
}

/// The model's row keyed `key` (the first row without one), read from the
/// whole model as a first run would.
async fn find(
    cfg: &Config,
    warehouse: Warehouse,
    model: &config::Model,
    kind: SourceKind,
    wanted: Option<&str>,
) -> Result<(String, Record)> {
    let query = extract::bind(model, kind, &Templates::first_run(model))?;
    let mut rows = warehouse.stream(query);
    while let Some(chunk) = rows.recv().await {
        let chunk = chunk?;
        for row in chunk.rows() {
            match extract::keyed(model, row, &cfg.limits) {
                Ok(key) if wanted.is_none_or(|w| w == key) => {
                    return Ok((key.into_owned(), row.record()));
                }
                Err(problem) if wanted == Some(problem.key.as_str()) => {
                    return Err(RunError::Refused(problem.message));
                }
                _ => {}
            }
        }
    }
    Err(RunError::Refused(match wanted {
        Some(key) => format!(
            "model `{}` returns no row whose `{}` is {key:?}; check the key with `ebb preview {}`",
            model.name, model.primary_key, model.name
        ),
        None => format!(
            "model `{}` returns no rows with a key, so there is no record to send; check its query with `ebb preview {}`",
            model.name, model.name
        ),
    }))
}
