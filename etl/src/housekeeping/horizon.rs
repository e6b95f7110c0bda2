//! The raw zone's horizon, followed: every replica re-reads the stored one, so its decoder
//! refuses events the retention has already forgotten.

use tokio_util::sync::CancellationToken;

use crate::lake::retention::{self, Horizon};

/// Keeps `horizon` equal to the stored one, re-read every [`retention::REFRESH`] through the
/// warehouse's pool.
pub async fn follow_horizon(
    warehouse: crate::load::Warehouse,
    horizon: Horizon,
    stop: CancellationToken,
) {
    loop {
        let loaded = async {
            let client = warehouse.client().await?;
            retention::load_horizon(&horizon, &client).await
        };
        let before = horizon.get();
        match loaded.await {
            Ok(()) if horizon.get() != before => tracing::info!(
                forgotten_through = ?horizon.get(),
                "the raw zone's horizon moved: events at or before it are refused (beyond_horizon)"
            ),
            Ok(()) => {}
            Err(error) => tracing::warn!(%error, "cannot read the raw zone's horizon"),
        }
        tokio::select! {
            _ = tokio::time::sleep(retention::REFRESH) => {}
            _ = stop.cancelled() => return,
        }
    }
}
