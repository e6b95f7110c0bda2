//! Finding work: the startup scan and periodic rescans of the inbox, the file watcher, and the
//! tracker that makes sure a file is in the pipeline at most once at a time.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::event::Kind;

/// One file to look at.
#[derive(Clone, Debug)]
pub struct Job {
    pub kind: Kind,
    pub path: PathBuf,
}

/// The files currently somewhere between discovery and their final folder. The scan, the
/// watcher and retries all find the same files; the tracker lets only the first one through,
/// and tells a draining daemon when everything it started is finished.
#[derive(Default)]
pub struct Tracker {
    paths: Mutex<HashSet<PathBuf>>,
    /// Files this run could not finish (unreadable, or a move that failed): a drain does not
    /// wait for them, so one bad file cannot keep it looping for ever.
    stuck: Mutex<HashSet<PathBuf>>,
    idle: Notify,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        // A panic while holding this lock cannot leave the set inconsistent (single insert or
        // remove), so a poisoned lock is still usable.
        self.paths.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True if the file was not yet in the pipeline and now is.
    pub fn claim(&self, path: &Path) -> bool {
        self.lock().insert(path.to_path_buf())
    }

    /// The file has reached its final place; it may be found again.
    pub fn release(&self, path: &Path) {
        self.lock_stuck().remove(path);
        self.remove(path);
    }

    /// The file could not be finished (the error is logged where it happened). It stays in the
    /// inbox; a following daemon retries it at its next rescan, a draining one leaves it.
    pub fn give_up(&self, path: &Path) {
        self.lock_stuck().insert(path.to_path_buf());
        self.remove(path);
    }

    pub fn is_stuck(&self, path: &Path) -> bool {
        self.lock_stuck().contains(path)
    }

    /// How many files this run gave up on.
    pub fn stuck(&self) -> usize {
        self.lock_stuck().len()
    }

    fn lock_stuck(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        self.stuck.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove(&self, path: &Path) {
        let mut paths = self.lock();
        paths.remove(path);
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

/// Regular `*.json` files that are not dotfiles. Everything else in an inbox (the producer's
/// `__id_counter`, temp dotfiles of atomic writers) belongs to someone else.
pub fn is_candidate(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    !bytes.starts_with(b".") && bytes.ends_with(b".json")
}

/// Lists every inbox once, sending each untracked candidate to `jobs`. Streams the directory,
/// so a million-file backlog costs no more memory than the bounded channel. Files the run gave
/// up on are retried only if `retry_stuck`. Returns how many candidates it saw and did not skip
/// (tracked or not): zero means nothing is left to do.
pub fn scan(
    config: &Config,
    tracker: &Tracker,
    jobs: &flume::Sender<Job>,
    cancel: &CancellationToken,
    retry_stuck: bool,
) -> std::io::Result<usize> {
    let mut seen = 0;
    for kind in Kind::ALL {
        for entry in std::fs::read_dir(config.inbox(kind))? {
            if cancel.is_cancelled() {
                return Ok(seen);
            }
            let Ok(entry) = entry else { continue };
            // d_type from the directory listing: no extra stat, and symlinks are not followed.
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if !is_file || !is_candidate(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            if !retry_stuck && tracker.is_stuck(&path) {
                continue;
            }
            seen += 1;
            if tracker.claim(&path) && jobs.send(Job { kind, path }).is_err() {
                return Ok(seen); // the pipeline is shutting down
            }
        }
    }
    Ok(seen)
}

/// Watches every inbox for files finished in place (close-after-write) or moved in. Anything
/// the watcher cannot vouch for (queue overflow, watcher error) asks for a rescan instead.
pub fn watch(
    config: &Config,
    tracker: Arc<Tracker>,
    jobs: flume::Sender<Job>,
    rescan: Arc<Notify>,
) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let event = match result {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "file watcher error; rescanning the inbox");
                rescan.notify_one();
                return;
            }
        };
        if event.need_rescan() {
            tracing::warn!("file watcher lost events (queue overflow); rescanning the inbox");
            rescan.notify_one();
            return;
        }
        let finished = matches!(
            event.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(RenameMode::To))
        );
        if !finished {
            return;
        }
        for path in event.paths {
            let Some(kind) = kind_of(&path) else { continue };
            let named_ok = path.file_name().is_some_and(is_candidate);
            if named_ok && tracker.claim(&path) && jobs.send(Job { kind, path }).is_err() {
                return;
            }
        }
    })?;
    for kind in Kind::ALL {
        watcher.watch(&config.inbox(kind), RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

/// The kind of a file from the name of the inbox folder it is in.
fn kind_of(path: &Path) -> Option<Kind> {
    let folder = path.parent()?.file_name()?.to_str()?;
    Kind::from_folder(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_json_files_are_candidates() {
        assert!(is_candidate(OsStr::new("0d133695.json")));
        assert!(!is_candidate(OsStr::new("__id_counter")));
        assert!(!is_candidate(OsStr::new(".0d133695.json")));
        assert!(!is_candidate(OsStr::new(".0d133695.json.tmp")));
        assert!(!is_candidate(OsStr::new("notes.txt")));
    }
}
