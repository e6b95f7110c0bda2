//! Operating the daemon: HTTP endpoints (health, readiness, metrics, status), `etl replay` and
//! `etl status`.

pub mod http;
pub mod metrics;
pub mod probe;
pub mod replay;
pub mod status;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ops::http::Shared;

/// The ops tasks of a running daemon.
pub struct Tasks {
    probe: Option<JoinHandle<()>>,
    summaries: Option<JoinHandle<()>>,
    http: Option<JoinHandle<()>>,
}

impl Tasks {
    /// Stops the probe and the alerts at once; the HTTP endpoints stay up, answering while the
    /// daemon finishes what is in flight (returned to be awaited).
    pub fn stop_all_but_http(self) -> Option<JoinHandle<()>> {
        for task in [self.probe, self.summaries].into_iter().flatten() {
            task.abort();
        }
        self.http
    }
}

/// Starts what `shared.config` asks for: the database probe behind `etl_database_up` (with its
/// alert), the rejection summaries sent to the webhook, and the HTTP endpoints.
pub fn start(shared: &Arc<Shared>, stop: &CancellationToken) -> Tasks {
    let config = &shared.config;
    let webhook = webhook::Webhook::from_config(config);
    let probe = shared.warehouse.clone().map(|warehouse| {
        let alert = webhook
            .clone()
            .map(|w| webhook::DatabaseAlert::new(w, config));
        // The ping comes often enough to honour a short alert threshold.
        let every = probe::EVERY.min(Duration::from_secs(config.alerts.database_down_secs.max(1)));
        tokio::spawn(probe::database(warehouse, alert, every, stop.clone()))
    });
    let summaries = webhook.map(|webhook| {
        let (stats, config, stop) = (shared.stats.clone(), shared.config.clone(), stop.clone());
        tokio::spawn(async move { webhook::rejections(webhook, stats, &config, stop).await })
    });
    let http = (!config.http_addr.is_empty()).then(|| {
        tokio::spawn(http::serve(
            config.http_addr.clone(),
            shared.clone(),
            stop.clone(),
        ))
    });
    Tasks {
        probe,
        summaries,
        http,
    }
}
