//! Tells people when a sync's state changes: once when its runs start to
//! fail (or partly fail), and once when they succeed again, not on every
//! run while nothing changes. A POST to the webhook in
//! `[alerts]`, in the shape Slack's incoming webhooks take (`text` for
//! notifications, `blocks` for the message), which Mattermost, Discord's
//! Slack-compatible endpoint and most chat tools accept too. It names the
//! sync and run, the counts, the first row errors, and links to the run in
//! the dashboard. An alert that cannot be delivered is logged; it never
//! changes the run it reports.

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::Config;
use crate::run::Summary;
use crate::state::State;
use crate::status::Status;

/// How many row errors an alert quotes.
const ERRORS_QUOTED: usize = 5;

/// How long the webhook may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What an alert tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alert {
    /// The sync's runs now end with a status it alerts on.
    Entered,
    /// They succeed again after one it alerted on.
    Recovered,
}

/// The alert a run ending with `now` calls for, when the sync's previous
/// run ended with `before`: one on entering a status in `on`, one on
/// recovering from it, none while the state stays what it was.
fn alert_for(now: Status, before: Option<Status>, on: &[Status]) -> Option<Alert> {
    if before == Some(now) {
        None
    } else if on.contains(&now) {
        Some(Alert::Entered)
    } else if now == Status::Success && before.is_some_and(|b| on.contains(&b)) {
        Some(Alert::Recovered)
    } else {
        None
    }
}

/// Sends the alert for a run that just ended, if it changed the sync's
/// state (see [`alert_for`]).
pub async fn run_ended(cfg: &Config, state: &State, summary: &Summary) {
    let Some(alerts) = &cfg.alerts else { return };
    let on = cfg
        .syncs
        .get(&summary.sync)
        .and_then(|s| s.alert_on.as_ref())
        .unwrap_or(&alerts.on);
    let before = match state.status_before(&summary.sync, summary.run_id).await {
        Ok(before) => before,
        Err(e) => {
            // Better an alert too many than a failure missed.
            tracing::warn!(sync = summary.sync, "cannot read the previous run: {e}");
            None
        }
    };
    let Some(alert) = alert_for(summary.status, before, on) else {
        return;
    };
    let errors = match state.owed(&summary.sync, Some(summary.run_id)).await {
        Ok(rows) => rows
            .into_iter()
            .take(ERRORS_QUOTED)
            .map(|r| format!("`{}` ({}): {}", r.key, r.op, r.error))
            .collect(),
        Err(e) => vec![format!("(the row errors could not be read: {e})")],
    };
    let link = format!(
        "{}/#/syncs/{}/runs/{}",
        cfg.server.public_url.trim_end_matches('/'),
        summary.sync,
        summary.run_id
    );
    let body = message(summary, alert, &errors, &link);
    let sent = reqwest::Client::new()
        .post(&alerts.webhook)
        .timeout(TIMEOUT)
        .json(&body)
        .send()
        .await
        .and_then(|r| r.error_for_status());
    match sent {
        Ok(_) => tracing::info!(sync = summary.sync, run_id = summary.run_id, "alert sent"),
        // Without the URL: it often holds the webhook's secret.
        Err(e) => tracing::warn!(
            sync = summary.sync,
            run_id = summary.run_id,
            "the alert could not be delivered to [alerts] webhook: {}",
            e.without_url()
        ),
    }
}

/// The alert as Slack's incoming webhooks take it.
fn message(s: &Summary, alert: Alert, errors: &[String], link: &str) -> Value {
    let status = match (alert, s.status) {
        (Alert::Recovered, _) => "succeeded: the sync recovered",
        (_, Status::Failed) => "failed",
        (_, Status::Partial) => "partly failed",
        (_, other) => other.as_str(),
    };
    let headline = format!("Ebb: sync `{}` run {} {status}", s.sync, s.run_id);
    let c = &s.counts;
    let counts = [
        ("Extracted", c.extracted),
        ("Added", c.added),
        ("Updated", c.updated),
        ("Deleted", c.deleted),
        ("Delivered", c.ok),
        ("Rejected", c.rejected),
        ("Failed", c.failed),
    ];
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("*{headline}*\n<{link}|Open run {} in the dashboard>", s.run_id)}}),
        json!({"type": "section", "fields": counts.iter().map(|(name, n)| json!({
            "type": "mrkdwn", "text": format!("*{name}*\n{n}")
        })).collect::<Vec<_>>()}),
    ];
    if let Some(error) = &s.error {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("*Error*\n{error}")}}));
    }
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(|e| format!("• {e}")).collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("*First row errors*\n{}", lines.join("\n"))}}));
    }
    json!({ "text": headline, "blocks": blocks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Counts;

    #[test]
    fn the_message_names_the_run_and_links_to_it() {
        let summary = Summary {
            run_id: 7,
            sync: "users".into(),
            status: Status::Partial,
            counts: Counts {
                added: 3,
                ok: 2,
                rejected: 1,
                ..Counts::default()
            },
            error: None,
        };
        let m = message(
            &summary,
            Alert::Entered,
            &["`2` (added): bounced".into()],
            "http://x/#/syncs/users/runs/7",
        );
        assert_eq!(m["text"], "Ebb: sync `users` run 7 partly failed");
        let text = m.to_string();
        assert!(
            text.contains("<http://x/#/syncs/users/runs/7|Open run 7"),
            "{text}"
        );
        assert!(text.contains("*Rejected*\\n1"), "{text}");
        assert!(text.contains("• `2` (added): bounced"), "{text}");
    }

    #[test]
    fn a_sync_alerts_once_per_change_of_state() {
        use Status::*;
        let on = [Failed, Partial];
        assert_eq!(alert_for(Failed, None, &on), Some(Alert::Entered));
        assert_eq!(alert_for(Failed, Some(Success), &on), Some(Alert::Entered));
        assert_eq!(alert_for(Failed, Some(Partial), &on), Some(Alert::Entered));
        assert_eq!(alert_for(Failed, Some(Failed), &on), None);
        assert_eq!(
            alert_for(Success, Some(Failed), &on),
            Some(Alert::Recovered)
        );
        assert_eq!(alert_for(Success, Some(Success), &on), None);
        assert_eq!(alert_for(Success, None, &on), None);
        assert_eq!(alert_for(Success, Some(Failed), &[]), None);
    }
}
