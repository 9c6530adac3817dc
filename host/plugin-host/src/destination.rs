//! A loaded destination: its grants, checked and turned into the egress
//! policy and folder of its calls; its spec, asked for once at load and
//! checked; and its `validate` and `write` calls.
//!
//! `write` answers must line up with the batch, one outcome per event, or
//! the call is a protocol error. When the egress policy refused a request
//! during a call, the refusal is added to whatever error the plugin
//! reported, since a plugin sees only "request denied" and cannot name the
//! grant that is missing.

use std::sync::Arc;
use std::time::Duration;

use ebb_sdk::spec::Spec;

use crate::bindings::DestinationPre;
use crate::budget::{Budget, BudgetCell, Budgets, Rate};
use crate::call::{Caller, Finished, Sandbox};
use crate::convert;
use crate::egress::{Policy, Timeouts};
use crate::error::{CallError, ErrorKind, PluginError, RemoteError};
use crate::event::Event;
use crate::grants::Grants;
use crate::load::Loader;
use crate::plugin_ref::PluginRef;
use crate::record::Recorder;
use crate::schema::ConfigSchema;
use crate::store::NetGrant;
use crate::verdict::Outcome;

/// A loaded destination plugin, with its grants.
///
/// Clones share the instances the handle keeps between calls: the handle
/// a run loads serves all its batches, and its instances go with it.
#[derive(Clone)]
pub struct Destination {
    caller: Arc<Caller<DestinationPre>>,
    spec: Arc<Spec>,
    schema: Arc<ConfigSchema>,
    budget: Option<Arc<Budget>>,
    recorder: Recorder,
}

impl Destination {
    /// Loads a destination and reads its spec.
    pub(crate) async fn load(
        loader: &Loader,
        sandbox: &Arc<Sandbox>,
        budgets: &Budgets,
        plugin: &PluginRef,
        grants: Grants,
    ) -> Result<Destination, PluginError> {
        let limits = grants.limits;
        let budget_for = grants.budget.clone();
        let net = net_grant(plugin, grants)?;
        let cell = net.budget.clone();
        let recorder = net.recorder.clone();
        let pre = loader.destination(plugin).await?;
        let caller = Caller::new(
            sandbox.clone(),
            &plugin.label,
            limits,
            Some(Arc::new(net)),
            pre,
        );
        caller.prime(plugin).await?;
        let json = caller
            .call(|store, plugin| Box::pin(plugin.spec(store)))
            .await
            .map_err(|source| PluginError::Instantiate {
                label: plugin.label.clone(),
                source,
            })?
            .value;
        let spec = Spec::parse(&json).map_err(|problem| PluginError::BadSpec {
            label: plugin.label.clone(),
            problem,
        })?;
        let schema =
            ConfigSchema::compile(&spec.config_schema).map_err(|msg| PluginError::BadSchema {
                label: plugin.label.clone(),
                msg,
            })?;
        // Even without a rate, the syncs to a destination share a budget,
        // so a 429 one of them meets holds all of them back.
        let budget = budget_for.map(|b| {
            let rate = b.rate.or(spec.rate).unwrap_or_default();
            budgets.of(&b.destination, rate)
        });
        if let Some(budget) = &budget {
            cell.set(budget.clone());
        }
        Ok(Destination {
            caller: Arc::new(caller),
            spec: Arc::new(spec),
            schema: Arc::new(schema),
            budget,
            recorder,
        })
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn label(&self) -> &str {
        &self.caller.label
    }

    /// Keeps every request this handle sends from now on, to be taken from
    /// the recorder returned.
    pub fn record(&self) -> Recorder {
        self.recorder.start();
        self.recorder.clone()
    }

    /// The rate every handle of this destination shares, if it has one.
    pub fn rate(&self) -> Option<Rate> {
        self.budget
            .as_ref()
            .map(|b| b.rate())
            .filter(|r| *r != Rate::default())
    }

    /// Checks a config against the spec's `config_schema`, then asks the
    /// plugin; `Ok(Err(problems))` lists every problem found.
    pub async fn validate(
        &self,
        config: &serde_json::Value,
    ) -> Result<Result<(), Vec<String>>, CallError> {
        let problems = self.schema.problems(config);
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let config = config.to_string();
        let finished = self
            .caller
            .call(move |store, plugin| {
                Box::pin(async move { plugin.validate(store, &config).await })
            })
            .await?;
        Ok(finished.value)
    }

    /// Delivers one batch; returns one outcome per event, in order.
    pub async fn write(
        &self,
        config: &serde_json::Value,
        action: &str,
        batch: &[Event],
    ) -> Result<Vec<Outcome>, CallError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(budget) = &self.budget {
            budget.records(batch.len()).await;
        }
        let config = config.to_string();
        let action = action.to_string();
        let events: Vec<_> = batch.iter().map(convert::event_to_wit).collect();
        let Finished { value, denied } = self
            .caller
            .call(move |store, plugin| {
                Box::pin(async move { plugin.write(store, &config, &action, &events).await })
            })
            .await?;
        let denied = denied.as_deref();
        let outcomes = value.map_err(|e| {
            let error = convert::remote_error(e);
            self.note_rate_limit(&error);
            CallError::Remote(explain(error, denied))
        })?;
        if outcomes.len() != batch.len() {
            return Err(CallError::Protocol {
                label: self.caller.label.to_string(),
                msg: format!(
                    "write returned {} outcomes for a batch of {} events",
                    outcomes.len(),
                    batch.len()
                ),
            });
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| match convert::outcome_from_wit(outcome) {
                Outcome::Retry(e) => {
                    self.note_rate_limit(&e);
                    Outcome::Retry(explain(e, denied))
                }
                Outcome::Reject(e) => Outcome::Reject(explain(e, denied)),
                Outcome::Ok => Outcome::Ok,
            })
            .collect())
    }

    /// A rate limit the plugin read from its vendor's own headers (the
    /// host reads only `Retry-After`) holds every sync to the destination
    /// back, as a 429 does.
    fn note_rate_limit(&self, error: &RemoteError) {
        if let (Some(budget), ErrorKind::RateLimited, Some(wait)) =
            (&self.budget, error.kind, error.retry_after)
        {
            budget.slow_down(wait.min(MAX_RATE_LIMIT_WAIT));
        }
    }
}

/// The longest a plugin-reported rate limit holds a destination back.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// Checks what the operator granted and turns it into the network and
/// folder grant every call of this destination shares.
fn net_grant(plugin: &PluginRef, grants: Grants) -> Result<NetGrant, PluginError> {
    let grant_error = |msg: String| PluginError::Grant {
        label: plugin.label.clone(),
        msg,
    };
    grants.limits.check().map_err(grant_error)?;
    let mut policy = Policy::parse(&grants.allow_hosts).map_err(grant_error)?;
    if let Some(mock) = grants.intercept {
        policy = policy.intercept(mock);
    }
    if let Some(dir) = &grants.dir
        && !dir.is_dir()
    {
        return Err(grant_error(format!(
            "the granted folder {} does not exist; create it or fix the path",
            dir.display()
        )));
    }
    Ok(NetGrant {
        policy: Arc::new(policy),
        timeouts: Timeouts {
            connect: grants.http_connect_timeout,
            first_byte: grants.http_first_byte_timeout,
            between_bytes: grants.http_between_bytes_timeout,
        },
        dir: grants.dir,
        response_bytes: grants.http_response_bytes,
        budget: Arc::new(BudgetCell::default()),
        recorder: Recorder::default(),
    })
}

/// Appends the egress explanation to a plugin-reported error.
fn explain(mut error: RemoteError, denied: Option<&str>) -> RemoteError {
    if let Some(denied) = denied {
        error.message = format!("{}; {denied}", error.message);
    }
    error
}
