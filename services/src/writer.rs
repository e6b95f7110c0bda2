//! Putting event files into the inbox, either atomically or the way the reference producers do.
//!
//! A reader that watches the inbox must never parse a half-written file, so the default is
//! [`WriteMode::Atomic`]: write a dotfile next to the final name and rename it into place (a rename
//! within one directory is atomic on POSIX file systems; readers skip dotfiles).
//! [`WriteMode::InPlace`] reproduces the reference producers (open, write, close the final name) so
//! the reader's handling of partial files can be exercised.
//!
//! Nothing is fsynced: the producers only need readers to see whole files, not durability across a
//! power loss, and an fsync per event would dominate the cost of a large backlog.

use crate::event::Event;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How a file reaches its final name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Write `.<name>.tmp`, then rename it to `<name>`: readers see the whole file or nothing.
    #[default]
    Atomic,
    /// Create `<name>` and write it in two chunks with a flush between, like the reference
    /// producers, so a concurrent reader can observe a half-written file.
    InPlace,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}")]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Writes events to `<inbox>/<kind dir>/<event_id>.json`.
#[derive(Debug, Clone)]
pub struct EventWriter {
    inbox: PathBuf,
    mode: WriteMode,
}

impl EventWriter {
    /// `inbox` is the directory holding `users/` and `cards/`; they are created on first use.
    pub fn new(inbox: impl Into<PathBuf>, mode: WriteMode) -> Self {
        Self {
            inbox: inbox.into(),
            mode,
        }
    }

    /// Directory that receives events of kind `E`.
    pub fn dir_for<E: Event>(&self) -> PathBuf {
        self.inbox.join(E::KIND.dir_name())
    }

    /// Writes one event and returns its final path.
    pub fn write<E: Event>(&self, event: &E) -> Result<PathBuf, WriteError> {
        let dir = self.dir_for::<E>();
        let name = event.file_name();
        let bytes = event.to_json();
        let path = dir.join(&name);
        let result = match self.write_file(&dir, &name, &bytes) {
            // Creating the directory lazily (instead of once up front) also survives someone
            // removing it while a service runs, at no cost on the common path.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir).and_then(|()| self.write_file(&dir, &name, &bytes))
            }
            other => other,
        };
        result
            .map(|()| path.clone())
            .map_err(|source| WriteError { path, source })
    }

    fn write_file(&self, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
        match self.mode {
            WriteMode::Atomic => write_atomically(dir, name, bytes),
            WriteMode::InPlace => write_in_two_chunks(&dir.join(name), bytes),
        }
    }
}

/// Writes `dir/.<name>.tmp` and renames it to `dir/<name>`; removes the dotfile if anything fails.
/// Shared by the event writer and the id counter, which must never be seen half-written either.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, dir.join(name)));
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_in_two_chunks(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (first, second) = bytes.split_at(bytes.len() / 2);
    let mut file = File::create(path)?;
    file.write_all(first)?;
    // `File` is unbuffered, so each `write_all` is already a write(2) the reader can observe; the
    // flush marks the boundary and keeps it one if this ever becomes a buffered writer.
    file.flush()?;
    file.write_all(second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::UserGenerator;
    use chrono::NaiveDateTime;

    fn sample_event() -> crate::event::UserEvent {
        UserGenerator::new(1).event(0, NaiveDateTime::default())
    }

    #[test]
    fn both_modes_write_the_same_bytes_under_the_event_id() {
        for mode in [WriteMode::Atomic, WriteMode::InPlace] {
            let inbox = tempfile::tempdir().expect("temp dir");
            let event = sample_event();
            let path = EventWriter::new(inbox.path(), mode)
                .write(&event)
                .expect("write");
            assert_eq!(
                path,
                inbox
                    .path()
                    .join("users")
                    .join(format!("{}.json", event.metadata.event_id))
            );
            assert_eq!(fs::read(&path).expect("read back"), event.to_json());
            let names: Vec<_> = fs::read_dir(inbox.path().join("users"))
                .expect("list")
                .map(|entry| entry.expect("entry").file_name())
                .collect();
            assert_eq!(names.len(), 1, "{mode:?} left extra files: {names:?}");
        }
    }

    #[test]
    fn failed_write_reports_the_path() {
        let inbox = tempfile::tempdir().expect("temp dir");
        // A regular file where the users/ directory should be.
        fs::write(inbox.path().join("users"), b"").expect("blocker");
        let err = EventWriter::new(inbox.path(), WriteMode::Atomic)
            .write(&sample_event())
            .expect_err("users/ is a file");
        assert!(err.path.starts_with(inbox.path().join("users")), "{err}");
    }
}
