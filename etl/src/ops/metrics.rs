//! The Prometheus recorder behind the `metrics` calls spread through the pipeline.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// Every metric's name, defined once: the code that counts and the descriptions below use these.
pub const EVENTS_APPLIED: &str = "etl_events_applied_total";
pub const EVENTS_STALE: &str = "etl_events_stale_total";
pub const EVENTS_REJECTED: &str = "etl_events_rejected_total";
pub const FILES_MOVED: &str = "etl_files_moved_total";
pub const DB_ERRORS: &str = "etl_db_errors_total";
pub const DB_RETRIES: &str = "etl_db_retries_total";
pub const BATCH_SIZE: &str = "etl_batch_size";
pub const COMMIT_SECONDS: &str = "etl_commit_seconds";
pub const CHANNEL_DEPTH: &str = "etl_channel_depth";
pub const INBOX_BACKLOG: &str = "etl_inbox_backlog";
pub const IN_FLIGHT: &str = "etl_in_flight";
pub const BROKER_MESSAGES: &str = "etl_broker_messages_total";
pub const BROKER_PENDING: &str = "etl_broker_pending";
pub const EVENTS_FORWARDED: &str = "etl_events_forwarded_total";
pub const FORWARD_DUPLICATES: &str = "etl_forward_duplicates_total";
pub const PUBLISH_ERRORS: &str = "etl_publish_errors_total";
pub const DATABASE_UP: &str = "etl_database_up";
pub const HTTP_PAGES: &str = "etl_http_pages_total";
pub const HTTP_ITEMS: &str = "etl_http_items_total";
pub const HTTP_RETRIES: &str = "etl_http_retries_total";
pub const HTTP_SINCE_SUCCESS: &str = "etl_http_seconds_since_success";
pub const LAKE_EXPORTED_ROWS: &str = "etl_lake_exported_rows_total";
pub const RAW_RETIRED: &str = "etl_raw_retired_total";
pub const LAKE_LAST_EXPORT: &str = "etl_lake_last_export_timestamp_seconds";
pub const RETENTION_REMOVED: &str = "etl_retention_removed_total";
pub const RETENTION_LEGACY_FILED: &str = "etl_retention_legacy_filed_total";
pub const UNDECLARED_FILES: &str = "etl_undeclared_files";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the global recorder once per process (tests start several pipelines in one process)
/// and returns the handle that renders `/metrics`.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(COMMIT_SECONDS.into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(BATCH_SIZE.into()),
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
pub fn describe(catalog: &crate::catalog::Catalog) {
    use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
    describe_counter!(EVENTS_APPLIED, "Events that changed a warehouse row");
    describe_counter!(
        EVENTS_STALE,
        "Valid events older than the stored version, or already applied"
    );
    describe_counter!(
        EVENTS_REJECTED,
        "Files moved to failed/, by type and reason"
    );
    describe_counter!(FILES_MOVED, "Files moved out of the inbox, by destination");
    describe_counter!(DB_ERRORS, "Failed attempts to apply a batch");
    describe_counter!(DB_RETRIES, "Batch retries after a database error");
    describe_histogram!(BATCH_SIZE, "Events per committed batch");
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Time to apply and commit one batch"
    );
    describe_gauge!(
        CHANNEL_DEPTH,
        "Events waiting in the channel to the worker pool"
    );
    describe_gauge!(
        INBOX_BACKLOG,
        "Files in the inbox not finished yet (estimate)"
    );
    describe_gauge!(
        IN_FLIGHT,
        "Files read but not yet moved to done/ or failed/"
    );
    describe_counter!(
        BROKER_MESSAGES,
        "Broker messages by outcome: received, redelivered, acknowledged, nacked, dead_lettered"
    );
    describe_gauge!(
        BROKER_PENDING,
        "Messages in the stream not yet delivered to any replica (the consumer's pending count)"
    );
    describe_counter!(
        EVENTS_FORWARDED,
        "Events etl forward published and the broker acknowledged"
    );
    describe_counter!(
        FORWARD_DUPLICATES,
        "Of those, re-publishes the broker's duplicate window dropped"
    );
    describe_counter!(
        PUBLISH_ERRORS,
        "Publishes the broker refused or did not answer (retried)"
    );
    describe_gauge!(
        DATABASE_UP,
        "1 if the warehouse answered the last ping (every 5 s), else 0"
    );
    describe_counter!(HTTP_PAGES, "Pages an HTTP API source received, by source");
    describe_counter!(HTTP_ITEMS, "Items in those pages, by source");
    describe_counter!(
        HTTP_RETRIES,
        "Requests to an HTTP API that are retried, by source and status (429, 502, timeout, connection, invalid_body…)"
    );
    describe_gauge!(
        HTTP_SINCE_SUCCESS,
        Unit::Seconds,
        "Seconds since an HTTP API source last received a page (since the start if never)"
    );
    describe_counter!(
        LAKE_EXPORTED_ROWS,
        "Raw events the scheduled lake export wrote to Parquet"
    );
    describe_counter!(
        RAW_RETIRED,
        "Raw events deleted from the warehouse after the lake had them"
    );
    describe_gauge!(
        LAKE_LAST_EXPORT,
        Unit::Seconds,
        "Unix time of the last completed lake pass of this process"
    );
    describe_counter!(
        RETENTION_REMOVED,
        "Day folders the file folders' retention deleted or archived, by folder (done, failed, landing)"
    );
    describe_counter!(
        RETENTION_LEGACY_FILED,
        "Flat files of an older version the retention filed into day folders"
    );
    describe_gauge!(
        UNDECLARED_FILES,
        "Files in an inbox folder that names no declared type (left there unread), by folder"
    );
    for kind in catalog.iter() {
        counter!(EVENTS_APPLIED, "type" => kind.name().to_owned()).absolute(0);
        counter!(EVENTS_STALE, "type" => kind.name().to_owned()).absolute(0);
    }
    counter!(FILES_MOVED, "to" => "done").absolute(0);
    counter!(FILES_MOVED, "to" => "failed").absolute(0);
    counter!(DB_ERRORS).absolute(0);
    counter!(DB_RETRIES).absolute(0);
    for folder in ["done", "failed", "landing"] {
        counter!(RETENTION_REMOVED, "folder" => folder).absolute(0);
    }
    counter!(RETENTION_LEGACY_FILED).absolute(0);
    gauge!(CHANNEL_DEPTH).set(0.0);
}
