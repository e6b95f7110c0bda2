//! Finding work: the startup scan and periodic rescans of the inbox, and the file watcher.
//! Both go through the [`Tracker`], so a file is in the pipeline at most once at a time.
//!
//! They also find what is *not* work: an inbox folder that names no declared type
//! ([`undeclared`]). Its files are never read nor moved (the type may be declared later, and a
//! restart then loads them), but they must not sit there unseen: the inbox reports each such
//! folder once with a WARN line and keeps its file count in a metric, and `etl status` and
//! `etl check` say the same.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::tracker::Tracker;
use crate::catalog::{Catalog, Kind};
use crate::config::Config;
use crate::layout::is_candidate;

/// One file to look at.
#[derive(Clone, Debug)]
pub struct Job {
    pub kind: Kind,
    pub path: PathBuf,
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
        let folder = config.inbox(kind.name());
        for entry in std::fs::read_dir(&folder)? {
            if cancel.is_cancelled() {
                return Ok(seen);
            }
            let Ok(entry) = entry else { continue };
            // d_type from the directory listing: no extra stat, and symlinks are not followed.
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if !is_file || !is_candidate(&entry.file_name()) {
                continue;
            }
            let path = joined(&folder, &entry.file_name());
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

/// `folder/name`, built in one allocation of the right size (`DirEntry::path` and
/// `Path::join` grow theirs, and cost more than the rest of finding a file).
fn joined(folder: &Path, name: &std::ffi::OsStr) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let folder = folder.as_os_str().as_bytes();
    let mut path = Vec::with_capacity(folder.len() + 1 + name.len());
    path.extend_from_slice(folder);
    if !folder.is_empty() && !folder.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name.as_bytes());
    PathBuf::from(std::ffi::OsString::from_vec(path))
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
    let root = config.inbox_root();
    let watched_root = root.clone();
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
        // A folder made (or moved) into the inbox root while running: if it names no declared
        // type, the scan that this asks for reports it at once rather than at the next rescan.
        let appeared = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_))
        );
        if appeared
            && event.paths.iter().any(|path| {
                path.parent() == Some(root.as_path())
                    && kind_of_folder(&types, path).is_none()
                    && path.is_dir()
            })
        {
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
    // The root too (not recursively: the type folders are watched above), for new folders.
    watcher.watch(&watched_root, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// The type of a file: the name of the inbox folder it is in.
fn kind_of(catalog: &Catalog, path: &Path) -> Option<Kind> {
    kind_of_folder(catalog, path.parent()?)
}

/// The type an inbox folder is named after, if one is declared.
fn kind_of_folder(catalog: &Catalog, folder: &Path) -> Option<Kind> {
    catalog.get(folder.file_name()?.to_str()?).cloned()
}

/// A folder of the inbox root that names no declared type, and how many files in it the
/// daemon would load if it did (regular `*.json` files that are not dotfiles).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undeclared {
    /// The folder's name, as it is on disk (shown through [`crate::names::encode`]).
    pub folder: OsString,
    pub files: usize,
}

/// Every folder of `events/inbox/` that names no declared type, by name. Dot folders are left
/// out, like dotfiles: they belong to whoever is writing them. Only these folders are listed
/// (never the declared ones, which may hold a million files); nothing in them is touched. A
/// missing inbox root has none.
pub fn undeclared(config: &Config, catalog: &Catalog) -> std::io::Result<Vec<Undeclared>> {
    let entries = match std::fs::read_dir(config.inbox_root()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let folder = entry.file_name();
        let declared = folder
            .to_str()
            .is_some_and(|name| catalog.get(name).is_some());
        // d_type: a symlink to a folder is not followed, as everywhere in the inbox.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if declared || !is_dir || folder.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let files = match std::fs::read_dir(entry.path()) {
            Ok(listing) => listing
                .filter_map(Result::ok)
                .filter(|e| {
                    is_candidate(&e.file_name()) && e.file_type().is_ok_and(|t| t.is_file())
                })
                .count(),
            // Removed since the root was listed: it is not there any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        found.push(Undeclared { folder, files });
    }
    found.sort_by(|a, b| a.folder.cmp(&b.folder));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joined_path_is_the_standard_join() {
        for (folder, name) in [
            ("/a/b", "c.json"),
            ("/a/b/", "c.json"),
            ("", "c.json"),
            ("/", "x"),
        ] {
            let name = std::ffi::OsStr::new(name);
            assert_eq!(
                joined(Path::new(folder), name),
                Path::new(folder).join(name)
            );
        }
    }
    use std::ffi::OsStr;

    #[test]
    fn only_visible_json_files_are_candidates() {
        assert!(is_candidate(OsStr::new("0d133695.json")));
        assert!(!is_candidate(OsStr::new("__id_counter")));
        assert!(!is_candidate(OsStr::new(".0d133695.json")));
        assert!(!is_candidate(OsStr::new(".0d133695.json.tmp")));
        assert!(!is_candidate(OsStr::new("notes.txt")));
    }

    #[test]
    fn folders_that_name_no_declared_type_are_found_with_their_candidates_only() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let catalog = Catalog::builtin().expect("built-in types");
        assert_eq!(undeclared(&config, &catalog).expect("no inbox yet"), []);
        super::super::files::ensure_layout(&config, &catalog).expect("layout");
        let root = config.inbox_root();
        let widgets = root.join("widgets");
        std::fs::create_dir(&widgets).expect("mkdir");
        for name in ["a.json", "b.json", ".c.json", "notes.txt"] {
            std::fs::write(widgets.join(name), "{}").expect("write");
        }
        std::fs::create_dir(widgets.join("sub.json")).expect("a folder is not a file");
        let odd = OsStr::from_bytes(b"gad\xffgets");
        std::fs::create_dir(root.join(odd)).expect("mkdir");
        std::fs::create_dir(root.join(".staging")).expect("mkdir");
        std::fs::write(root.join("stray.json"), "{}").expect("a file, not a folder");
        std::fs::write(config.inbox("users").join("u.json"), "{}").expect("declared");

        let found = undeclared(&config, &catalog).expect("listed");
        let want = [
            Undeclared {
                folder: odd.to_owned(),
                files: 0,
            },
            Undeclared {
                folder: "widgets".into(),
                files: 2,
            },
        ];
        assert_eq!(found, want);
        assert!(widgets.join("a.json").exists(), "nothing is touched");
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
