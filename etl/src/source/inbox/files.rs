//! The inbox's file bookkeeping: the folder layout, and moving each file to `done/` or
//! `failed/` (with its reason file) once its fate is durable.
//!
//! Finished files go into day folders, `done/<type>/<YYYY-MM-DD>/` and
//! `failed/<type>/<YYYY-MM-DD>/` (the UTC date of the move): no folder grows past a day of files,
//! and retention ([`crate::folder_retention`]) removes whole days without listing their files.
//!
//! A file stays in the inbox until then, so the inbox itself is the queue: a crash at any point
//! leaves every unfinished file where a restart will find it, and reprocessing a file whose
//! transaction did commit changes nothing (the warehouse upsert is idempotent).

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::NaiveDate;

use serde::Serialize;

use crate::catalog::{Catalog, Kind};
use crate::config::Config;
use crate::extract::Rejection;

/// Creates `events/{inbox,done,failed}/<type>/` and `logs/` if missing (day folders are made
/// when their first file arrives).
pub fn ensure_layout(config: &Config, catalog: &Catalog) -> io::Result<()> {
    for kind in catalog.iter() {
        std::fs::create_dir_all(config.inbox(kind.name()))?;
        std::fs::create_dir_all(config.done(kind.name()))?;
        std::fs::create_dir_all(config.failed(kind.name()))?;
    }
    std::fs::create_dir_all(config.logs_dir())
}

/// The day a folder's name says (`2026-11-23`), if it is a day folder.
pub fn day_of(name: &std::ffi::OsStr) -> Option<NaiveDate> {
    let name = name.to_str()?;
    (name.len() == 10)
        .then(|| NaiveDate::parse_from_str(name, crate::config::DAY_FORMAT).ok())
        .flatten()
}

/// The day folders of a `done/` or `failed/` type folder, oldest first. Reads the type folder
/// only (a few dozen day folders, plus any flat files an older version left there), never a
/// day folder's files.
pub fn day_folders(type_folder: &Path) -> io::Result<Vec<(NaiveDate, PathBuf)>> {
    let mut days = Vec::new();
    for entry in std::fs::read_dir(type_folder)? {
        let entry = entry?;
        if let Some(day) = day_of(&entry.file_name()) {
            if entry.file_type()?.is_dir() {
                days.push((day, entry.path()));
            }
        }
    }
    days.sort();
    Ok(days)
}

/// The outcome of moving one file.
#[derive(Debug, PartialEq, Eq)]
pub enum Moved {
    Yes,
    /// Someone else moved it first (another daemon on the same folder). Not an error.
    AlreadyGone,
}

/// Today's day folder of each `done/` and `failed/` type folder, made the first time a file
/// goes there today: the hot path does not call `create_dir_all` per file.
#[derive(Default)]
pub struct DayFolders {
    /// Type folder → (the day, its day folder), as last made.
    made: Mutex<std::collections::HashMap<PathBuf, (NaiveDate, PathBuf)>>,
}

impl DayFolders {
    /// Today's (UTC) day folder of `type_folder`, created if this is its first use today.
    fn today(&self, type_folder: &Path) -> io::Result<PathBuf> {
        let today = chrono::Utc::now().date_naive();
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((day, folder)) = made.get(type_folder) {
            if *day == today {
                return Ok(folder.clone());
            }
        }
        let folder = Config::day_folder(type_folder, today);
        std::fs::create_dir_all(&folder)?;
        made.insert(type_folder.to_path_buf(), (today, folder.clone()));
        Ok(folder)
    }

    /// Runs `op` on today's day folder of `type_folder`. A day folder removed since it was made
    /// (an operator, or the retention of a replica whose clock is ahead) makes `op` fail with
    /// `NotFound`: the folder is made again and `op` tried once more.
    fn within<T>(&self, type_folder: &Path, op: impl Fn(&Path) -> io::Result<T>) -> io::Result<T> {
        fault_point!(Move);
        let day = self.today(type_folder)?;
        match op(&day) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && !day.is_dir() => {
                std::fs::create_dir_all(&day)?;
                op(&day)
            }
            other => other,
        }
    }

    /// Moves a file whose event is committed into today's `done/<type>/<date>/`.
    pub fn move_to_done(&self, config: &Config, kind: &Kind, path: &Path) -> io::Result<Moved> {
        let moved = self.within(&config.done(kind.name()), |day| rename_into(path, day));
        gone_is_not_an_error(moved)
    }

    /// Moves a rejected file to today's `failed/<type>/<date>/` with its reason file beside it.
    /// The reason file is written first: if we crash in between, the file is still in the inbox
    /// and is simply rejected again.
    pub fn reject(
        &self,
        config: &Config,
        kind: &Kind,
        path: &Path,
        rejection: &Rejection,
    ) -> io::Result<Moved> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
        let record = RejectionRecord {
            // The name's lossless text form: two names differing only in a byte that is not
            // UTF-8 stay two names here (the reason file itself is named with the real bytes).
            file: crate::names::encode(name).into_owned(),
            kind: kind.name(),
            rejection,
            rejected_at: chrono::Utc::now(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
        let sidecar = sidecar_name(name);
        let moved = self.within(&config.failed(kind.name()), |day| {
            write_atomically(&day.join(&sidecar), &json)?;
            rename_into(path, day)
        });
        gone_is_not_an_error(moved)
    }
}

/// The file was gone (another daemon on the same folder moved it first): not an error.
fn gone_is_not_an_error(moved: io::Result<()>) -> io::Result<Moved> {
    match moved {
        Ok(()) => Ok(Moved::Yes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Moved::AlreadyGone),
        Err(e) => Err(e),
    }
}

/// The reason file written beside a rejected file in `failed/<type>/<date>/`.
#[derive(Debug, Serialize)]
pub struct RejectionRecord<'a> {
    /// The file's name as [`crate::names::encode`] writes it.
    pub file: String,
    /// The type's name.
    #[serde(rename = "type")]
    pub kind: &'a str,
    #[serde(flatten)]
    pub rejection: &'a Rejection,
    pub rejected_at: chrono::DateTime<chrono::Utc>,
}

const SIDECAR_SUFFIX: &str = ".error.json";

/// An event file (as the inbox sees one) that is not a reason file: what `done/` and `failed/`
/// hold besides reasons.
pub fn is_event_file(name: &std::ffi::OsStr) -> bool {
    super::discover::is_candidate(name)
        && !name.as_encoded_bytes().ends_with(SIDECAR_SUFFIX.as_bytes())
}

/// The name of the reason file of a failed file: `<name>.error.json`, made of the real bytes of
/// the file's name (not a lossy text copy of them), so each failed file has its own reason file
/// and `etl replay` finds it again from the file's name alone.
///
/// A name too long for the suffix to fit in `NAME_MAX` is shortened and made unique again with
/// a hash of the whole name: otherwise the reason file could not be written, the file could not
/// be rejected, and it would stay in the inbox for ever. (The record's `file` field keeps the
/// full name.)
pub fn sidecar_name(file_name: impl AsRef<OsStr>) -> OsString {
    let name = file_name.as_ref().as_bytes();
    let suffix = SIDECAR_SUFFIX.as_bytes();
    if name.len() + suffix.len() <= NAME_MAX {
        return OsString::from_vec([name, suffix].concat());
    }
    // Room for `~` and 16 hex digits.
    let mut cut = NAME_MAX - suffix.len() - 17;
    // Never cut a UTF-8 character in two, so a name that is text keeps a text reason file: step
    // back over continuation bytes (0b10xx_xxxx; at most three in a valid character). Bytes
    // that are not UTF-8 may be cut anywhere.
    for _ in 0..3 {
        if name[cut] & 0xC0 != 0x80 {
            break;
        }
        cut -= 1;
    }
    let tail = format!("~{:016x}{SIDECAR_SUFFIX}", fnv1a(name));
    OsString::from_vec([&name[..cut], tail.as_bytes()].concat())
}

/// The longest file name Linux file systems accept, in bytes.
const NAME_MAX: usize = 255;

/// FNV-1a: a hash that, unlike std's `DefaultHasher`, is specified, so a shortened reason file
/// name stays the same across Rust releases (`etl replay` recomputes it). Over the name's bytes,
/// which for a UTF-8 name are its text's: reason files of earlier versions keep their names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// rename(2) into `folder` under the very same name (bytes, not a lossy UTF-8 copy of them):
/// atomic, and a no-op report if the file is already gone.
pub fn move_into(path: &Path, folder: &Path) -> io::Result<Moved> {
    gone_is_not_an_error(rename_into(path, folder))
}

/// rename(2) into `folder` under the same name; `NotFound` if the file or the folder is gone.
fn rename_into(path: &Path, folder: &Path) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let target: PathBuf = folder.join(name);
    std::fs::rename(path, target)
}

/// Writes a dotfile then renames it, so a reader never sees half a file. The dotfile's name is
/// short whatever the target's (a target name near `NAME_MAX` leaves no room for a prefix) and
/// unique to this process and call.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".etl-{}-{n}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_file_is_named_after_its_file() {
        assert_eq!(sidecar_name("a.json"), "a.json.error.json");
    }

    #[test]
    fn a_reason_file_name_always_fits_and_stays_distinct() {
        let long = |c: &str| format!("{}.json", c.repeat(250 / c.len()));
        let (a, b, accents) = (long("a"), long("b"), long("é"));
        for name in [&a, &b, &accents] {
            let sidecar = sidecar_name(name);
            assert!(sidecar.len() <= NAME_MAX, "{sidecar:?}");
            let text = sidecar
                .to_str()
                .expect("a text name keeps a text reason file");
            assert!(text.ends_with(".error.json"));
            assert_eq!(sidecar, sidecar_name(name), "deterministic");
        }
        assert_ne!(sidecar_name(&a), sidecar_name(format!("{a}x")));
    }

    #[test]
    fn names_that_differ_only_in_a_byte_that_is_not_utf8_have_their_own_reason_files() {
        let ff = OsStr::from_bytes(b"bad\xff.json");
        let fe = OsStr::from_bytes(b"bad\xfe.json");
        assert_eq!(sidecar_name(ff).as_bytes(), b"bad\xff.json.error.json");
        assert_ne!(sidecar_name(ff), sidecar_name(fe));
        let long = |byte: u8| {
            let mut name = vec![b'x'; 240];
            name.push(byte);
            name.extend_from_slice(b".json");
            OsString::from_vec(name)
        };
        let (long_ff, long_fe) = (long(0xff), long(0xfe));
        assert!(sidecar_name(&long_ff).len() <= NAME_MAX);
        assert_ne!(sidecar_name(&long_ff), sidecar_name(&long_fe));
    }
}
