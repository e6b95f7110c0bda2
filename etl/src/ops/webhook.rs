//! The alert webhook, for teams without Prometheus: one JSON POST when the database has been
//! unreachable past a threshold (and one when it is back), and a summary of the rejections at
//! most once per interval. Its URL is a credential: it is never logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::stats::Stats;

/// Where alerts are posted.
pub struct Webhook {
    http: reqwest::Client,
    url: String,
}

impl Webhook {
    /// The configured webhook, if any.
    pub fn from_config(config: &Config) -> Option<Arc<Webhook>> {
        if config.alerts.webhook_url.is_empty() {
            return None;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .ok()?;
        Some(Arc::new(Webhook {
            http,
            url: config.alerts.webhook_url.clone(),
        }))
    }

    /// Posts `body`; a failure is logged (without the URL) and not retried: the next alert
    /// or summary is another chance.
    pub async fn post(&self, body: serde_json::Value) {
        let sent = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(status = %response.status(), alert = %body["alert"], "the alert webhook refused an alert")
            }
            Err(error) => {
                tracing::warn!(error = %error.without_url(), alert = %body["alert"], "cannot post to the alert webhook")
            }
        }
    }
}

/// Follows the database's reachability (fed by the probe): fires once past the threshold,
/// resolves once when it answers again.
pub struct DatabaseAlert {
    webhook: Arc<Webhook>,
    threshold: Duration,
    down_since: Option<Instant>,
    fired: bool,
}

impl DatabaseAlert {
    pub fn new(webhook: Arc<Webhook>, config: &Config) -> DatabaseAlert {
        DatabaseAlert {
            webhook,
            threshold: Duration::from_secs(config.alerts.database_down_secs),
            down_since: None,
            fired: false,
        }
    }

    /// One probe's result.
    pub async fn observe(&mut self, up: bool) {
        if up {
            self.down_since = None;
            if self.fired {
                self.fired = false;
                self.webhook
                    .post(json!({"alert": "database_unreachable", "status": "resolved"}))
                    .await;
            }
            return;
        }
        let since = *self.down_since.get_or_insert_with(Instant::now);
        if !self.fired && since.elapsed() >= self.threshold {
            self.fired = true;
            self.webhook
                .post(json!({
                    "alert": "database_unreachable",
                    "status": "firing",
                    "down_for_secs": since.elapsed().as_secs(),
                    "summary": "the warehouse does not answer; batches wait and are retried, nothing is rejected for it",
                }))
                .await;
        }
    }
}

/// Every `alert_rejections_interval_secs`, one POST summarising the rejections since the last
/// (none when there were none), until `stop`.
pub async fn rejections(
    webhook: Arc<Webhook>,
    stats: Arc<Stats>,
    config: &Config,
    stop: CancellationToken,
) {
    let every = Duration::from_secs(config.alerts.rejections_interval_secs);
    while crate::backoff::sleep(every, &stop).await {
        let recent = stats.take_rejections();
        if recent.by.is_empty() {
            continue;
        }
        let count: u64 = recent.by.values().sum();
        let by: Vec<_> = recent
            .by
            .iter()
            .map(|((type_name, code), n)| json!({"type": type_name, "code": code, "count": n}))
            .collect();
        let examples: Vec<_> = recent
            .examples
            .iter()
            .map(|(origin, reason)| json!({"origin": origin, "reason": reason}))
            .collect();
        webhook
            .post(json!({
                "alert": "rejections",
                "count": count,
                "interval_secs": every.as_secs(),
                "by": by,
                "examples": examples,
            }))
            .await;
    }
}
