//! The tracker: which files are somewhere between discovery and their final folder, so that
//! the scan, the watcher and retries never put one file in the pipeline twice, and which ones
//! this run gave up on (a drain exits 1 if any).

use std::ffi::OsString;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use foldhash::HashSet;

use tokio::sync::Notify;

/// The files currently somewhere between discovery and their final folder. The scan, the
/// watcher and retries all find the same files; the tracker lets only the first one through,
/// and tells a draining daemon when everything it started is finished.
///
/// Paths are kept as their bytes (`OsString`) and hashed with foldhash: a `PathBuf` hashes
/// component by component through SipHash, which cost 10 % of a drain's instructions. Byte
/// equality is path equality here because the scan and the watcher both build a file's path
/// by joining names onto the same inbox root; and were one file ever let through twice, its
/// second load would change nothing (the upsert is idempotent, a second move finds it gone).
#[derive(Default)]
pub struct Tracker {
    paths: Mutex<HashSet<OsString>>,
    /// Files this run could not finish (unreadable, or a move that failed): a drain does not
    /// wait for them, so one bad file cannot keep it looping for ever.
    stuck: Mutex<HashSet<OsString>>,
    idle: Notify,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, HashSet<OsString>> {
        // A panic while holding this lock cannot leave the set inconsistent (single insert or
        // remove), so a poisoned lock is still usable.
        self.paths.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True if the file was not yet in the pipeline and now is.
    pub fn claim(&self, path: &Path) -> bool {
        self.lock().insert(path.as_os_str().to_owned())
    }

    /// The file has reached its final place; it may be found again.
    pub fn release(&self, path: &Path) {
        let mut stuck = self.lock_stuck();
        if !stuck.is_empty() {
            stuck.remove(path.as_os_str());
        }
        drop(stuck);
        self.remove(path);
    }

    /// The file could not be finished (the error is logged where it happened). It stays in the
    /// inbox; a following daemon retries it at its next rescan, a draining one leaves it.
    pub fn give_up(&self, path: &Path) {
        self.lock_stuck().insert(path.as_os_str().to_owned());
        self.remove(path);
    }

    pub fn is_stuck(&self, path: &Path) -> bool {
        self.lock_stuck().contains(path.as_os_str())
    }

    /// How many files this run gave up on.
    pub fn stuck(&self) -> usize {
        self.lock_stuck().len()
    }

    fn lock_stuck(&self) -> MutexGuard<'_, HashSet<OsString>> {
        self.stuck.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove(&self, path: &Path) {
        let mut paths = self.lock();
        paths.remove(path.as_os_str());
        if paths.is_empty() {
            self.idle.notify_waiters();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until no file is in the pipeline.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_claimed_once_until_it_is_released() {
        let tracker = Tracker::default();
        let path = Path::new("inbox/users/a.json");
        assert!(tracker.claim(path));
        assert!(!tracker.claim(path), "the watcher finding it again");
        assert_eq!(tracker.len(), 1);
        tracker.release(path);
        assert!(tracker.is_empty());
        assert!(tracker.claim(path), "found again after it left");
    }

    #[test]
    fn a_file_given_up_on_counts_as_stuck_until_it_is_finished() {
        let tracker = Tracker::default();
        let path = Path::new("inbox/users/a.json");
        tracker.claim(path);
        tracker.give_up(path);
        assert!(tracker.is_empty(), "a drain does not wait for it");
        assert!(tracker.is_stuck(path));
        assert_eq!(tracker.stuck(), 1);
        tracker.claim(path);
        tracker.release(path);
        assert_eq!(tracker.stuck(), 0, "a later success clears it");
    }

    #[tokio::test]
    async fn waiting_for_idle_ends_when_the_last_file_is_released() {
        let tracker = std::sync::Arc::new(Tracker::default());
        let path = Path::new("a.json");
        tracker.claim(path);
        let waiter = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.wait_idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        tracker.release(path);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("idle noticed")
            .expect("task");
    }
}
