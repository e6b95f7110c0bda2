//! Reads one candidate file without trusting it: no symlinks followed, no FIFO opened, no
//! unbounded read, and a possibly half-written file is retried instead of rejected.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::decode::{decode, refuse_future};
use super::schema::Schemas;
use super::{RejectCode, Rejection};
use crate::event::{Event, Kind};

/// What became of a file handed to [`intake`].
#[derive(Debug)]
pub enum Intake {
    /// A valid event, ready for the warehouse.
    Event(Box<Event>),
    /// Invalid for good: it goes to `failed/` with this reason.
    Rejected(Rejection),
    /// Looks half-written and changed recently: look again after the settle window.
    Unsettled,
    /// Gone before we got to it (another daemon took it, or it was removed). Not an error.
    Gone,
    /// Not ours to touch (symlink, FIFO, socket, directory…): left exactly where it is.
    Ignored(&'static str),
}

/// The limits [`intake`] applies.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub settle: Duration,
    /// How far ahead of the daemon's clock a version may be (see `decode::refuse_future`).
    pub max_future_skew: Duration,
}

/// Reads, parses and validates one file of the `kind` inbox.
pub fn intake(path: &Path, kind: Kind, limits: Limits, schemas: &Schemas) -> io::Result<Intake> {
    // lstat first: a FIFO or socket must not even be opened (opening a FIFO can block).
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Intake::Gone),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_file() {
        return Ok(Intake::Ignored("not a regular file"));
    }
    let file = match open_untrusted(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Intake::Gone),
        // ELOOP: it was swapped for a symlink between the lstat and the open.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Intake::Ignored("became a symlink"))
        }
        Err(e) => return Err(e),
    };
    // fstat the opened file: the path may have been swapped since the lstat.
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(Intake::Ignored("not a regular file"));
    }
    if meta.len() > limits.max_file_bytes {
        return Ok(Intake::Rejected(too_large(meta.len(), limits)));
    }

    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte more than allowed tells us the file grew past the limit while we read it.
    file.take(limits.max_file_bytes + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Ok(Intake::Rejected(too_large(bytes.len() as u64, limits)));
    }

    match decode(kind, &bytes, path.to_path_buf(), schemas) {
        Ok(event) => {
            let now = chrono::Utc::now().naive_utc();
            match refuse_future(&event, now, limits.max_future_skew) {
                Ok(()) => Ok(Intake::Event(Box::new(event))),
                Err(rejection) => Ok(Intake::Rejected(rejection)),
            }
        }
        Err(rejection) if rejection.may_be_incomplete() && changed_recently(&meta, limits) => {
            Ok(Intake::Unsettled)
        }
        Err(rejection) => Ok(Intake::Rejected(rejection)),
    }
}

/// O_NOFOLLOW: never read through a symlink. O_NONBLOCK: if a FIFO slips in anyway, the open
/// returns at once instead of waiting for a writer.
fn open_untrusted(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

fn too_large(len: u64, limits: Limits) -> Rejection {
    Rejection::new(
        RejectCode::TooLarge,
        format!(
            "the file is {len} bytes, over the limit of {} bytes (max_file_bytes)",
            limits.max_file_bytes
        ),
    )
}

/// A modification time in the future (clock skew) counts as recent only within the window,
/// so a hostile timestamp cannot keep a file unsettled for ever.
fn changed_recently(meta: &std::fs::Metadata, limits: Limits) -> bool {
    let Ok(modified) = meta.modified() else {
        return false;
    };
    match SystemTime::now().duration_since(modified) {
        Ok(age) => age < limits.settle,
        Err(ahead) => ahead.duration() < limits.settle,
    }
}
