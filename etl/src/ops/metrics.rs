//! The Prometheus recorder behind the `metrics` calls spread through the pipeline.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the global recorder once per process (tests start several pipelines in one process)
/// and returns the handle that renders `/metrics`.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("etl_commit_seconds".into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("etl_batch_size".into()),
                        &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0],
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "cannot install the metrics recorder; /metrics is empty");
                    None
                }
            }
        })
        .clone()
}

/// Registers every metric with a zero value so `/metrics` lists them before the first event.
pub fn describe() {
    use crate::event::Kind;
    use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
    describe_counter!(
        "etl_events_applied_total",
        "Events that changed a warehouse row"
    );
    describe_counter!(
        "etl_events_stale_total",
        "Valid events older than the stored version, or already applied"
    );
    describe_counter!(
        "etl_events_rejected_total",
        "Files moved to failed/, by type and reason"
    );
    describe_counter!(
        "etl_files_moved_total",
        "Files moved out of the inbox, by destination"
    );
    describe_counter!("etl_db_errors_total", "Failed attempts to apply a batch");
    describe_counter!(
        "etl_db_retries_total",
        "Batch retries after a database error"
    );
    describe_histogram!("etl_batch_size", "Events per committed batch");
    describe_histogram!(
        "etl_commit_seconds",
        Unit::Seconds,
        "Time to apply and commit one batch"
    );
    describe_gauge!(
        "etl_channel_depth",
        "Events waiting in the channel to the worker pool"
    );
    describe_gauge!(
        "etl_inbox_backlog",
        "Files in the inbox not finished yet (estimate)"
    );
    describe_gauge!(
        "etl_in_flight",
        "Files read but not yet moved to done/ or failed/"
    );
    for kind in Kind::ALL {
        counter!("etl_events_applied_total", "type" => kind.as_str()).absolute(0);
        counter!("etl_events_stale_total", "type" => kind.as_str()).absolute(0);
    }
    counter!("etl_files_moved_total", "to" => "done").absolute(0);
    counter!("etl_files_moved_total", "to" => "failed").absolute(0);
    counter!("etl_db_errors_total").absolute(0);
    counter!("etl_db_retries_total").absolute(0);
    gauge!("etl_channel_depth").set(0.0);
}
