//! `/healthz`, `/readyz`, `/metrics` and `/status` for operators and orchestrators.

use std::sync::Arc;

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
