//! Finding work: the startup scan and periodic rescans of the inbox, and the file watcher.
//! Both go through the [`Tracker`], so a file is in the pipeline at most once at a time.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::tracker::Tracker;
use crate::catalog::{Catalog, Kind};
use crate::config::Config;

/// One file to look at.
#[derive(Clone, Debug)]
pub struct Job {
    pub kind: Kind,
    pub path: PathBuf,
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
    catalog: &Catalog,
    tracker: &Tracker,
    jobs: &flume::Sender<Job>,
    cancel: &CancellationToken,
    retry_stuck: bool,
) -> std::io::Result<usize> {
    let mut seen = 0;
    for kind in catalog.iter() {
        for entry in std::fs::read_dir(config.inbox(kind.name()))? {
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
            let job = Job {
                kind: kind.clone(),
                path,
            };
            if tracker.claim(&job.path) && jobs.send(job).is_err() {
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
    catalog: &Catalog,
    tracker: Arc<Tracker>,
    jobs: flume::Sender<Job>,
    rescan: Arc<Notify>,
) -> notify::Result<RecommendedWatcher> {
    let types = catalog.clone();
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
            let Some(kind) = kind_of(&types, &path) else {
                continue;
            };
            let named_ok = path.file_name().is_some_and(is_candidate);
            if named_ok && tracker.claim(&path) && jobs.send(Job { kind, path }).is_err() {
                return;
            }
        }
    })?;
    for kind in catalog.iter() {
        watcher.watch(&config.inbox(kind.name()), RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

/// The type of a file: the name of the inbox folder it is in.
fn kind_of(catalog: &Catalog, path: &Path) -> Option<Kind> {
    let folder = path.parent()?.file_name()?.to_str()?;
    catalog.get(folder).cloned()
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

    #[test]
    fn a_scan_queues_each_untracked_candidate_once_and_leaves_the_rest_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let catalog = Catalog::builtin().expect("built-in types");
        super::super::files::ensure_layout(&config, &catalog).expect("layout");
        let users = config.inbox("users");
        for name in ["a.json", "b.json", ".tmp.json", "notes.txt", "stuck.json"] {
            std::fs::write(users.join(name), "{}").expect("write");
        }
        std::os::unix::fs::symlink(users.join("a.json"), users.join("link.json")).expect("link");
        std::fs::write(config.inbox("cards").join("c.json"), "{}").expect("write");

        let tracker = Tracker::default();
        tracker.claim(&users.join("b.json")); // already in flight (the watcher found it)
        tracker.claim(&users.join("stuck.json"));
        tracker.give_up(&users.join("stuck.json"));
        let (jobs, queued) = flume::unbounded();
        let seen = scan(
            &config,
            &catalog,
            &tracker,
            &jobs,
            &CancellationToken::new(),
            false,
        )
        .expect("scan");
        let mut names: Vec<String> = queued
            .try_iter()
            .map(|job| {
                format!(
                    "{}/{}",
                    job.kind,
                    job.path.file_name().unwrap_or_default().to_string_lossy()
                )
            })
            .collect();
        names.sort();
        assert_eq!(names, ["cards/c.json", "users/a.json"]);
        assert_eq!(seen, 3, "b.json is seen (in flight) but not queued again");

        // A following daemon retries what it gave up on at its next rescan.
        scan(
            &config,
            &catalog,
            &tracker,
            &jobs,
            &CancellationToken::new(),
            true,
        )
        .expect("scan");
        let again: Vec<_> = queued.try_iter().map(|job| job.path).collect();
        assert_eq!(again, [users.join("stuck.json")]);
    }
}
