//! Whether the data folder can be written: the inbox's moves to `done/` and `failed/` report
//! here, so one cause of failure (a read-only or full file system, lost permissions) is said
//! once when it starts, then as a count at most every [`REPORT_EVERY`], and once when it ends,
//! and `/readyz` names the folder meanwhile.
//!
//! Without it a file system that turned read-only for ten seconds mid-drain wrote one ERROR
//! line per file (18,599 seen) while `/readyz` still answered 200. Nothing is lost either way:
//! a file whose move failed stays in the inbox and is moved at a later rescan.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a failure that goes on is counted in the log.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The data folder's write health, shared by the mover and `/readyz`.
#[derive(Default)]
pub struct FolderHealth {
    /// Set while a failure is current: the mover's success path reads only this.
    failing: AtomicBool,
    current: Mutex<Option<Failing>>,
}

/// One episode of failure: its cause, and its counts.
struct Failing {
    /// The first folder a move into failed, named in every line of the episode.
    folder: PathBuf,
    kind: io::ErrorKind,
    error: String,
    since: Instant,
    last_report: Instant,
    failures: u64,
    unreported: u64,
}

impl FolderHealth {
    /// A move into `folder` failed with `error`.
    pub fn failed(&self, folder: &Path, error: &io::Error) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match current.as_mut() {
            // One cause whichever type folder meets it: a read-only file system fails the
            // moves into `done/users` and `done/cards` alike, and is one episode.
            Some(failing) if failing.kind == error.kind() => {
                failing.failures += 1;
                failing.unreported += 1;
                if now.duration_since(failing.last_report) >= REPORT_EVERY {
                    tracing::error!(
                        folder = %crate::names::encode_path(&failing.folder),
                        error = %failing.error,
                        failures = failing.unreported,
                        total = failing.failures,
                        for_secs = failing.since.elapsed().as_secs(),
                        "still cannot move files into the data folder; they stay in the inbox"
                    );
                    failing.last_report = now;
                    failing.unreported = 0;
                }
            }
            _ => {
                // A new cause (or the first): one line now, whatever came before.
                tracing::error!(
                    folder = %crate::names::encode_path(folder),
                    %error,
                    "cannot move files into the data folder; they stay in the inbox and are \
                     moved once it can be written (repeats are counted, not logged one by one)"
                );
                *current = Some(Failing {
                    folder: folder.to_path_buf(),
                    kind: error.kind(),
                    error: error.to_string(),
                    since: now,
                    last_report: now,
                    failures: 1,
                    unreported: 0,
                });
                self.failing.store(true, Ordering::Release);
            }
        }
    }

    /// A move succeeded: a failure, if one was current, is over.
    pub fn succeeded(&self) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(failing) = current.take() {
            tracing::warn!(
                folder = %crate::names::encode_path(&failing.folder),
                failures = failing.failures,
                for_secs = failing.since.elapsed().as_secs(),
                "the data folder can be written again; the files that stayed in the inbox are \
                 moved at the next rescan"
            );
        }
        self.failing.store(false, Ordering::Release);
    }

    /// Why files cannot be moved right now, if they cannot (for `/readyz`).
    pub fn trouble(&self) -> Option<String> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map(|f| {
            format!(
                "cannot write {}: {} ({} failed moves in {} s)",
                crate::names::encode_path(&f.folder),
                f.error,
                f.failures,
                f.since.elapsed().as_secs()
            )
        })
    }
}
