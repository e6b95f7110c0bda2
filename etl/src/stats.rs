//! Counters of what the pipeline did, for the drain summary, progress lines and tests.
//! (The Prometheus metrics are emitted beside them through the `metrics` facade.)

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    /// Events that changed a row of an entity table.
    pub applied: AtomicU64,
    /// Valid events that changed nothing: older than the stored version, or already applied.
    pub stale: AtomicU64,
    /// Files moved to `failed/`.
    pub rejected: AtomicU64,
    /// Files moved to `done/`.
    pub done: AtomicU64,
    /// Failed attempts to apply a batch (each one retried).
    pub db_errors: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub applied: u64,
    pub stale: u64,
    pub rejected: u64,
    pub done: u64,
    pub db_errors: u64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            applied: self.applied.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            db_errors: self.db_errors.load(Ordering::Relaxed),
        }
    }
}

impl Snapshot {
    /// Files finished either way.
    pub fn finished(&self) -> u64 {
        self.done + self.rejected
    }
}
