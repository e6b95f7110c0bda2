//! `/healthz`, `/readyz`, `/metrics` and `/status` for operators and orchestrators.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::forward::BrokerHealth;
use crate::load::fault::Health;
use crate::load::Warehouse;
use crate::ops::metrics::{INBOX_BACKLOG, IN_FLIGHT};
use crate::source::Source;
use crate::stats::Stats;

/// State shared by the pipeline's stages and read by these endpoints (and the progress
/// lines): built by the wiring, which hands it down.
pub struct Shared {
    pub config: Config,
    pub stats: Arc<Stats>,
    /// The warehouse (none for `etl forward`, which publishes instead).
    pub warehouse: Option<Warehouse>,
    /// For `etl forward`: whether the broker takes publishes.
    pub broker: Option<BrokerHealth>,
    /// The database's current trouble, if batches cannot commit: `/readyz` says why.
    pub health: Arc<Health>,
    /// The configured sources, asked for their backlog, in-flight records and readiness.
    pub sources: Vec<Arc<dyn Source>>,
}

impl Shared {
    /// Records not finished yet, over every source.
    pub fn backlog(&self) -> u64 {
        self.sources.iter().map(|s| s.backlog()).sum()
    }

    /// Records read and not yet finished, over every source.
    pub fn in_flight(&self) -> u64 {
        self.sources.iter().map(|s| s.in_flight()).sum()
    }

    /// Every source takes new records (for the inbox: its watcher runs).
    pub fn sources_ready(&self) -> bool {
        self.sources.iter().all(|s| s.ready())
    }

    /// What keeps a source from finishing records, one line each (e.g. a read-only data folder).
    pub fn sources_trouble(&self) -> Vec<String> {
        self.sources.iter().filter_map(|s| s.trouble()).collect()
    }

    /// Updates the gauges that are read rather than counted.
    pub fn publish_gauges(&self) {
        metrics::gauge!(INBOX_BACKLOG).set(self.backlog() as f64);
        metrics::gauge!(IN_FLIGHT).set(self.in_flight() as f64);
    }
}

/// Serves the endpoints on `addr` until `stop`. A busy address is logged, not fatal: the
/// pipeline matters more than its dashboard (e.g. two daemons on one machine).
pub async fn serve(addr: String, shared: Arc<Shared>, stop: CancellationToken) {
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%addr, %error, "cannot serve the HTTP endpoints; running without them");
            return;
        }
    };
    tracing::info!(%addr, "serving /healthz /readyz /metrics /status");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(shared);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "HTTP endpoints stopped");
    }
}

/// Ready when the sink takes events — the database answers and takes batches (`etl run`), or
/// the broker acknowledges publishes (`etl forward`) — and every source takes records (the
/// inbox watcher runs, the broker connection is up). A database that answers a ping but refuses
/// every batch (a revoked permission, a read-only failover) is not ready either, and the body
/// says why.
async fn ready(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    let mut ok = true;
    let mut body = String::new();
    if let Some(warehouse) = &shared.warehouse {
        let db_ok = warehouse.answers().await;
        ok &= db_ok;
        body.push_str(&format!("database: {}\n", up(db_ok)));
    }
    if let Some(broker) = &shared.broker {
        let broker_ok = broker.up();
        ok &= broker_ok;
        body.push_str(&format!("broker: {}\n", up(broker_ok)));
    }
    let sources = shared.sources_ready();
    ok &= sources;
    body.push_str(&format!("sources: {}\n", up(sources)));
    for trouble in shared.sources_trouble() {
        body.push_str(&format!("data folder: {trouble}\n"));
    }
    let trouble = shared.health.trouble_now();
    if let Some(cause) = &trouble {
        ok = false;
        body.push_str(&format!("batches: retrying: {cause}\n"));
    }
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}

fn up(ok: bool) -> &'static str {
    if ok {
        "up"
    } else {
        "down"
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> String {
    shared.publish_gauges();
    super::metrics::handle()
        .map(|h| h.render())
        .unwrap_or_default()
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let s = shared.stats.snapshot();
    Json(serde_json::json!({
        "in_flight": shared.in_flight(),
        "applied": s.applied,
        "stale": s.stale,
        "rejected": s.rejected,
        "done": s.done,
        "db_errors": s.db_errors,
    }))
}
