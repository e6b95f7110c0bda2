//! `/healthz`, `/readyz`, `/metrics` and `/status` for operators and orchestrators.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::pipeline::Shared;

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

/// Ready when the database answers, takes batches, and the inbox watcher runs. A database that
/// answers a ping but refuses every batch (a revoked permission, a read-only failover) is not
/// ready either, and the body says why.
async fn ready(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    let db = tokio::time::timeout(Duration::from_secs(2), shared.warehouse.ping()).await;
    let db_ok = matches!(db, Ok(Ok(())));
    let trouble = shared.health.trouble_now();
    let watching = shared.sources_ready();
    let code = if db_ok && trouble.is_none() && watching {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = format!("database: {}\nwatcher: {}\n", up(db_ok), up(watching));
    if let Some(cause) = trouble {
        body.push_str(&format!("batches: retrying: {cause}\n"));
    }
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
