//! Counters of what the pipeline did, for the drain summary, progress lines and tests.
//! (The Prometheus metrics are emitted beside them through the `metrics` facade.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Rejections since the last summary (the alert webhook's rate-limited report).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejections {
    /// (type, code) → how many.
    pub by: BTreeMap<(String, String), u64>,
    /// The first few: (origin, reason).
    pub examples: Vec<(String, String)>,
}

/// Examples kept per summary.
const EXAMPLES: usize = 5;

#[derive(Debug, Default)]
pub struct Stats {
    /// Rejections not yet summarised.
    pub recent_rejections: Mutex<Rejections>,
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

    /// Notes one rejection for the next summary.
    pub fn note_rejection(&self, type_name: &str, code: &str, origin: &str, reason: &str) {
        if let Ok(mut recent) = self.recent_rejections.lock() {
            // Found by a look along the few (type, code) pairs before any name is copied: a
            // rejection storm repeats the same few.
            let known = recent
                .by
                .iter_mut()
                .find(|((t, c), _)| t == type_name && c == code);
            match known {
                Some((_, count)) => *count += 1,
                None => {
                    recent.by.insert((type_name.to_owned(), code.to_owned()), 1);
                }
            }
            if recent.examples.len() < EXAMPLES {
                recent.examples.push((origin.to_owned(), reason.to_owned()));
            }
        }
    }

    /// The rejections noted since the last call, and a fresh start.
    pub fn take_rejections(&self) -> Rejections {
        self.recent_rejections
            .lock()
            .map(|mut recent| std::mem::take(&mut *recent))
            .unwrap_or_default()
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
