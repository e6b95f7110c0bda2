//! The one place where an outcome is recorded: the log line operators grep for, the counters of
//! [`Stats`] and the Prometheus metrics. Stages report what happened here instead of counting
//! on their own, so the numbers and the log always agree.

use std::ffi::OsStr;
use std::fmt::Display;
use std::path::Path;

use crate::event::Kind;
use crate::load::Applied;
use crate::names;
use crate::ops::metrics::{
    BROKER_MESSAGES, DB_ERRORS, DB_RETRIES, EVENTS_APPLIED, EVENTS_FORWARDED, EVENTS_REJECTED,
    EVENTS_STALE, FILES_MOVED, FORWARD_DUPLICATES, HTTP_ITEMS, HTTP_PAGES, PUBLISH_ERRORS,
    UNDECLARED_FILES,
};
use crate::rejection::Rejection;
use crate::stats::Stats;

/// A rejected file has reached `failed/` with its reason file: the one WARN line per rejection,
/// and its counts.
pub fn rejected(stats: &Stats, kind: &Kind, origin: &dyn Display, rejection: &Rejection) {
    refused(stats, kind.name(), origin, rejection);
    metrics::counter!(FILES_MOVED, "to" => "failed").increment(1);
}

/// A rejected broker message is in the dead-letter table and terminated in the stream: the same
/// WARN line and counts as a failed file. `type_name` is what its subject names, declared or not.
pub fn dead_lettered(stats: &Stats, type_name: &str, origin: &dyn Display, rejection: &Rejection) {
    refused(stats, type_name, origin, rejection);
    metrics::counter!(BROKER_MESSAGES, "outcome" => "dead_lettered").increment(1);
}

/// A rejected API item is in the dead-letter table: the same WARN line and counts as a failed
/// file, so its page's position may move on.
pub fn item_rejected(stats: &Stats, kind: &Kind, origin: &dyn Display, rejection: &Rejection) {
    refused(stats, kind.name(), origin, rejection);
}

/// A scan found an inbox folder that names no declared type, holding `files` files that are
/// left there unread. The first time it is seen (`first_seen`): one WARN line saying so and
/// what to do; every time: its count in `etl_undeclared_files{folder}`.
pub fn undeclared_folder(
    folder: &OsStr,
    path: &Path,
    files: usize,
    first_seen: bool,
    declared: &str,
) {
    let label = names::encode(folder);
    if first_seen {
        tracing::warn!(
            folder = %label,
            path = %names::encode_path(path),
            files,
            declared,
            "inbox folder names no declared type; its files stay there unread: declare the type (types/<folder>.toml, its schema and its table) and restart to load them, or move them into their type's folder"
        );
    }
    metrics::gauge!(UNDECLARED_FILES, "folder" => label.into_owned()).set(files as f64);
}

/// An inbox folder reported by [`undeclared_folder`] is gone (removed, or moved away): its
/// gauge drops to zero rather than keep its last count for ever.
pub fn undeclared_folder_gone(folder: &OsStr) {
    metrics::gauge!(UNDECLARED_FILES, "folder" => names::encode(folder).into_owned()).set(0.0);
}

/// `n` items of an API page committed.
pub fn items_committed(stats: &Stats, n: u64) {
    Stats::add(&stats.done, n);
}

/// An API source received a page of `items` items.
pub fn page_received(source: &str, items: u64) {
    metrics::counter!(HTTP_PAGES, "source" => source.to_owned()).increment(1);
    metrics::counter!(HTTP_ITEMS, "source" => source.to_owned()).increment(items);
}

fn refused(stats: &Stats, type_name: &str, origin: &dyn Display, rejection: &Rejection) {
    // Text fields, not `%` ones: a `%` field is formatted into a new string per line, which
    // cost more than the rest of a rejection (callgrind).
    let origin = origin.to_string();
    tracing::warn!(
        file = origin.as_str(),
        r#type = type_name,
        code = rejection.code.as_str(),
        reason = rejection.reason.as_str(),
        instance_path = rejection.instance_path.as_deref().unwrap_or(""),
        schema_location = rejection.schema_location.as_deref().unwrap_or(""),
        "rejected"
    );
    Stats::add(&stats.rejected, 1);
    stats.note_rejection(
        type_name,
        rejection.code.as_str(),
        &origin,
        &rejection.reason,
    );
    metrics::counter!(EVENTS_REJECTED, "type" => type_name.to_owned(), "reason" => rejection.code.as_str())
        .increment(1);
}

/// `n` broker messages acknowledged after their commit (the server confirmed).
pub fn acknowledged(stats: &Stats, n: u64) {
    Stats::add(&stats.done, n);
    metrics::counter!(BROKER_MESSAGES, "outcome" => "acknowledged").increment(n);
}

/// A broker message event: `received`, `redelivered`, `nacked` (to be delivered again later).
pub fn broker_message(outcome: &'static str) {
    metrics::counter!(BROKER_MESSAGES, "outcome" => outcome).increment(1);
}

/// `n` events published by `etl forward` and acknowledged by the broker; `duplicates` of them
/// were dropped by its duplicate window (already published before a restart).
pub fn forwarded(n: u64, duplicates: u64) {
    metrics::counter!(EVENTS_FORWARDED).increment(n);
    metrics::counter!(FORWARD_DUPLICATES).increment(duplicates);
}

/// A publish the broker did not acknowledge (it is retried).
pub fn publish_error() {
    metrics::counter!(PUBLISH_ERRORS).increment(1);
}

/// `n` committed records have reached their final place (for the inbox: `done/`).
pub fn done(stats: &Stats, n: u64) {
    Stats::add(&stats.done, n);
    metrics::counter!(FILES_MOVED, "to" => "done").increment(n);
}

/// A batch committed: how many of its events changed a row, per type, and how many were stale.
pub fn applied(stats: &Stats, applied: &Applied) {
    for part in &applied.types {
        let changed = part.changed.min(part.events);
        let stale = part.events - changed;
        Stats::add(&stats.applied, changed);
        Stats::add(&stats.stale, stale);
        let name = part.kind.name().to_owned();
        metrics::counter!(EVENTS_APPLIED, "type" => name.clone()).increment(changed);
        metrics::counter!(EVENTS_STALE, "type" => name).increment(stale);
    }
}

/// An attempt to apply a batch failed (it is retried or split).
pub fn db_error(stats: &Stats) {
    Stats::add(&stats.db_errors, 1);
    metrics::counter!(DB_ERRORS).increment(1);
}

/// A batch is tried again after a database error.
pub fn db_retry() {
    metrics::counter!(DB_RETRIES).increment(1);
}
