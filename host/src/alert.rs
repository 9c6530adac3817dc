//! Tells people when a run did not succeed: a POST to the webhook in
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

/// Sends the alert for a run that just ended, if its status calls for one.
pub async fn run_ended(cfg: &Config, state: &State, summary: &Summary) {
    let Some(alerts) = &cfg.alerts else { return };
    let on = cfg
        .syncs
        .get(&summary.sync)
        .and_then(|s| s.alert_on.as_ref())
        .unwrap_or(&alerts.on);
    if !on.contains(&summary.status) {
        return;
    }
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
    let body = message(summary, &errors, &link);
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
fn message(s: &Summary, errors: &[String], link: &str) -> Value {
    let status = match s.status {
        Status::Failed => "failed",
        Status::Partial => "partly failed",
        other => other.as_str(),
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
}
