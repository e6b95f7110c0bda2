//! The database-reachability gauge: a ping every few seconds, whatever the traffic, so that an
//! alert can tell an idle daemon with a healthy database from one whose database is gone (an
//! error counter only moves when there are events to fail).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::load::Warehouse;
use crate::ops::metrics::DATABASE_UP;
use crate::ops::webhook::DatabaseAlert;

/// How often the database is pinged.
pub const EVERY: Duration = Duration::from_secs(5);

/// Sets `etl_database_up` to 1 when the warehouse answers within two seconds, 0 otherwise,
/// and tells `alert` (the webhook's), every `every` until `stop`.
pub async fn database(
    warehouse: Warehouse,
    mut alert: Option<DatabaseAlert>,
    every: Duration,
    stop: CancellationToken,
) {
    let gauge = metrics::gauge!(DATABASE_UP);
    loop {
        let up = warehouse.answers().await;
        gauge.set(if up { 1.0 } else { 0.0 });
        if let Some(alert) = alert.as_mut() {
            alert.observe(up).await;
        }
        if !crate::backoff::sleep(every, &stop).await {
            return;
        }
    }
}
