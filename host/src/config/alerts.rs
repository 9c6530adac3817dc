//! `[alerts]`: where alerts about runs that did not succeed go, and which
//! run statuses raise one (also what a sync's `alert_on` names).

use serde::Deserialize;

use super::error::Invalid;
use super::resolver::Resolver;
use crate::status::Status;

/// `[alerts]` as checked: where alerts go and which run statuses raise one.
#[derive(Clone)]
pub struct Alerts {
    /// Often holds its secret in the URL itself, so never printed.
    pub webhook: String,
    /// Statuses that raise an alert unless a sync's `alert_on` says
    /// otherwise.
    pub on: Vec<Status>,
}

/// Keeps the webhook's URL out of debug output and logs.
impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("on", &self.on)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    webhook: String,
    on: Option<Vec<String>>,
}

pub fn resolve(raw: RawAlerts, r: &Resolver) -> Result<Alerts, Invalid> {
    Ok(Alerts {
        webhook: r.secrets("alerts.webhook", &raw.webhook)?,
        on: match raw.on {
            Some(on) => statuses("alerts.on", &on)?,
            None => vec![Status::Failed, Status::Partial],
        },
    })
}

/// Run statuses named in `alert_on` or `[alerts] on`.
pub fn statuses(key: &str, names: &[String]) -> Result<Vec<Status>, Invalid> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "failed" => Ok(Status::Failed),
            "partial" => Ok(Status::Partial),
            "success" => Ok(Status::Success),
            "skipped" => Ok(Status::Skipped),
            _ => Err(Invalid::new(
                key,
                format!(
                    "`{name}` is not a run status; use any of failed, partial, success, skipped"
                ),
            )),
        })
        .collect()
}
