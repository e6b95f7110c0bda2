//! The cards service's persistent id counter, so card ids keep increasing across restarts.
//!
//! It lives in the state directory, not in the inbox like the reference producer's `__id_counter`:
//! the inbox is for events only, and a reader should not have to know which files to leave alone.
//! The file holds the next id to hand out as plain decimal text, and is replaced atomically.

use crate::writer::write_atomically;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Name of the counter file inside the state directory.
pub const COUNTER_FILE_NAME: &str = "cards_id_counter";

#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("cannot access card id counter {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Refused rather than reset: starting over from 0 would hand out ids that already exist.
    #[error("card id counter {path} does not hold a number: {content:?}")]
    Corrupt { path: PathBuf, content: String },
}

/// The persisted "next card id".
#[derive(Debug)]
pub struct IdCounter {
    path: PathBuf,
    next: u64,
}

impl IdCounter {
    /// Reads `<state_dir>/cards_id_counter` (creating `state_dir`); a missing file means 0.
    pub fn open(state_dir: &Path) -> Result<Self, CounterError> {
        let path = state_dir.join(COUNTER_FILE_NAME);
        let io_error = |source| CounterError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(state_dir).map_err(io_error)?;
        let next = match fs::read_to_string(&path) {
            Ok(content) => content.trim().parse().map_err(|_| CounterError::Corrupt {
                path: path.clone(),
                content: content.clone(),
            })?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => 0,
            Err(err) => return Err(io_error(err)),
        };
        Ok(Self { path, next })
    }

    /// The next id to hand out, as last stored.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Persists `next`; does nothing if it is already stored (modifications do not consume ids).
    pub fn store(&mut self, next: u64) -> Result<(), CounterError> {
        if next == self.next {
            return Ok(());
        }
        let dir = self
            .path
            .parent()
            .expect("counter path is state_dir joined with a file name");
        write_atomically(dir, COUNTER_FILE_NAME, next.to_string().as_bytes()).map_err(
            |source| CounterError::Io {
                path: self.path.clone(),
                source,
            },
        )?;
        self.next = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_zero_and_survives_reopening() {
        let state = tempfile::tempdir().expect("temp dir");
        let dir = state.path().join("nested/state");
        let mut counter = IdCounter::open(&dir).expect("open fresh");
        assert_eq!(counter.next(), 0);
        counter.store(57).expect("store");
        assert_eq!(
            fs::read_to_string(dir.join(COUNTER_FILE_NAME)).expect("read"),
            "57"
        );
        assert_eq!(IdCounter::open(&dir).expect("reopen").next(), 57);
        assert_eq!(
            fs::read_dir(&dir).expect("list").count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_reset() {
        let state = tempfile::tempdir().expect("temp dir");
        fs::write(state.path().join(COUNTER_FILE_NAME), "fifty").expect("write");
        assert!(matches!(
            IdCounter::open(state.path()),
            Err(CounterError::Corrupt { .. })
        ));
    }
}
