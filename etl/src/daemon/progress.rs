//! The progress line: done, rate, records left and ETA, every few seconds while work is pending.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ops::http::Shared;

/// An INFO line every few seconds while work is pending: done, rate, records left and ETA.
pub async fn report(shared: Arc<Shared>, stop: CancellationToken) {
    let every = Duration::from_secs(shared.config.progress_interval_secs.max(1));
    let mut last = shared.stats.snapshot();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        shared.publish_gauges();
        let now = shared.stats.snapshot();
        let left = shared.backlog();
        if now == last && left == 0 {
            continue;
        }
        let rate = (now.finished() - last.finished()) as f64 / every.as_secs_f64();
        let eta = if rate > 0.0 {
            format!("{:.0}s", left as f64 / rate)
        } else {
            "-".into()
        };
        tracing::info!(
            done = now.done,
            failed = now.rejected,
            applied = now.applied,
            stale = now.stale,
            left,
            rate = format!("{rate:.0}/s"),
            eta,
            "progress"
        );
        last = now;
    }
}
