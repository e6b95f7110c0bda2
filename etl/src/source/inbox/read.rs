//! Reads one candidate file without trusting it: no symlinks followed, no FIFO opened, no
//! unbounded read. Whether the bytes are a valid event is the decoder's business, not this one's.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::rejection::{RejectCode, Rejection};

/// What reading a file gave.
#[derive(Debug)]
pub enum Contents {
    /// The whole file, and when it last changed (to tell a half-written file from a bad one).
    Bytes {
        bytes: Vec<u8>,
        modified: Option<SystemTime>,
    },
    /// Over `max_file_bytes`: rejected without being read (further).
    TooLarge(Rejection),
    /// Gone before we got to it (another daemon took it, or it was removed). Not an error.
    Gone,
    /// Not ours to touch (symlink, FIFO, socket, directory…): left exactly where it is.
    Ignored(&'static str),
}

/// Reads one file of an inbox, at most `max_file_bytes` of it.
pub fn read_untrusted(path: &Path, max_file_bytes: u64) -> io::Result<Contents> {
    // lstat first: a FIFO or socket must not even be opened (opening a FIFO can block).
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::Gone),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_file() {
        return Ok(Contents::Ignored("not a regular file"));
    }
    let file = match open_untrusted(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::Gone),
        // ELOOP: it was swapped for a symlink between the lstat and the open.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Contents::Ignored("became a symlink"))
        }
        Err(e) => return Err(e),
    };
    // fstat the opened file: the path may have been swapped since the lstat.
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(Contents::Ignored("not a regular file"));
    }
    if meta.len() > max_file_bytes {
        return Ok(Contents::TooLarge(too_large(meta.len(), max_file_bytes)));
    }

    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte more than allowed tells us the file grew past the limit while we read it.
    file.take(max_file_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_file_bytes {
        return Ok(Contents::TooLarge(too_large(
            bytes.len() as u64,
            max_file_bytes,
        )));
    }
    Ok(Contents::Bytes {
        bytes,
        modified: meta.modified().ok(),
    })
}

/// O_NOFOLLOW: never read through a symlink. O_NONBLOCK: if a FIFO slips in anyway, the open
/// returns at once instead of waiting for a writer.
fn open_untrusted(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

fn too_large(len: u64, max_file_bytes: u64) -> Rejection {
    Rejection::new(
        RejectCode::TooLarge,
        format!(
            "the file is {len} bytes, over the limit of {max_file_bytes} bytes (max_file_bytes)"
        ),
    )
}

/// True if a file that failed to decode may still be being written: the failure looks like a
/// cut-off document and the file changed within the `settle` window. A modification time in
/// the future (clock skew) counts as recent only within the window, so a hostile timestamp
/// cannot keep a file unsettled for ever.
pub fn unsettled(rejection: &Rejection, modified: Option<SystemTime>, settle: Duration) -> bool {
    if !rejection.may_be_incomplete() {
        return false;
    }
    let Some(modified) = modified else {
        return false;
    };
    match SystemTime::now().duration_since(modified) {
        Ok(age) => age < settle,
        Err(ahead) => ahead.duration() < settle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_regular_file_is_read_whole_with_its_modification_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.json");
        std::fs::write(&path, b"{}").expect("write");
        match read_untrusted(&path, 10).expect("read") {
            Contents::Bytes { bytes, modified } => {
                assert_eq!(bytes, b"{}");
                assert!(modified.is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_over_the_limit_is_refused_unread_and_a_missing_one_is_gone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big.json");
        std::fs::write(&path, [b' '; 11]).expect("write");
        match read_untrusted(&path, 10).expect("read") {
            Contents::TooLarge(r) => assert_eq!(r.code, RejectCode::TooLarge),
            other => panic!("{other:?}"),
        }
        let missing = read_untrusted(&dir.path().join("none.json"), 10).expect("read");
        assert!(matches!(missing, Contents::Gone), "{missing:?}");
    }

    #[test]
    fn symlinks_and_fifos_are_left_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("target.json");
        std::fs::write(&target, b"{}").expect("write");
        let link = dir.path().join("link.json");
        symlink(&target, &link).expect("symlink");
        let read = read_untrusted(&link, 10).expect("read");
        assert!(matches!(read, Contents::Ignored(_)), "{read:?}");

        let fifo = dir.path().join("fifo.json");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a plain syscall with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let read = read_untrusted(&fifo, 10).expect("read");
        assert!(matches!(read, Contents::Ignored(_)), "{read:?}");
    }

    #[test]
    fn only_a_cut_off_document_changed_within_the_window_is_unsettled() {
        let settle = Duration::from_secs(2);
        let now = Some(SystemTime::now());
        let old = Some(SystemTime::now() - Duration::from_secs(60));
        let cut_off = Rejection::new(RejectCode::InvalidJson, "eof");
        let schema = Rejection::new(RejectCode::Schema, "bad");
        assert!(unsettled(&cut_off, now, settle));
        assert!(!unsettled(&cut_off, old, settle));
        assert!(!unsettled(&schema, now, settle));
        assert!(!unsettled(&cut_off, None, settle));
        let far_future = Some(SystemTime::now() + Duration::from_secs(3600));
        assert!(!unsettled(&cut_off, far_future, settle), "a hostile mtime");
    }
}
