//! The folders on disk, and the names in them: `events/{inbox,done,failed}/<type>/`, the
//! `done|failed/<type>/<YYYY-MM-DD>/` day folders, which files are events, and the reason
//! file beside each failed one. Every part of the daemon that reads or writes these folders
//! (the inbox, replay, retention, `etl status`, `etl check`) asks here.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::config::Config;

/// How a day folder is named (`2026-11-23`): sorts as the days do.
pub const DAY_FORMAT: &str = "%Y-%m-%d";

impl Config {
    /// `events/inbox/`: the folder holding one folder per declared type.
    pub fn inbox_root(&self) -> PathBuf {
        self.events_dir().join("inbox")
    }

    pub fn events_dir(&self) -> PathBuf {
        self.data_dir.join("events")
    }

    pub fn inbox(&self, type_name: &str) -> PathBuf {
        self.events_dir().join("inbox").join(type_name)
    }

    pub fn done(&self, type_name: &str) -> PathBuf {
        self.events_dir().join("done").join(type_name)
    }

    pub fn failed(&self, type_name: &str) -> PathBuf {
        self.events_dir().join("failed").join(type_name)
    }

    /// The day folder of a `done/` or `failed/` type folder: `<folder>/<YYYY-MM-DD>` (the UTC
    /// date files were moved there), so no folder holds more than a day of files.
    pub fn day_folder(type_folder: &Path, day: chrono::NaiveDate) -> PathBuf {
        type_folder.join(day.format(DAY_FORMAT).to_string())
    }

    /// The HTTP sources' landing zone: `<landing>/<source>/<yyyy>/<mm>/<dd>/…ndjson`.
    pub fn landing_dir(&self) -> PathBuf {
        self.data_dir.join("lake").join("raw")
    }

    pub fn lake_dir(&self) -> PathBuf {
        self.lake
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("lake").join("parquet"))
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
}

/// The last component of `path`, as [`Path::file_name`] gives it, found from the end: the
/// standard one parses every component and cost more than the rest of moving a file. Paths
/// the daemon builds (a folder joined with a name it read there) end in a plain name; any
/// other ending (`/`, `.`, `..`) is left to the standard one.
pub fn file_name(path: &Path) -> Option<&OsStr> {
    let bytes = path.as_os_str().as_bytes();
    let start = bytes.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
    match &bytes[start..] {
        b"" | b"." | b".." => path.file_name(),
        name => Some(OsStr::from_bytes(name)),
    }
}

/// The day a folder's name says (`2026-11-23`), if it is a day folder.
pub fn day_of(name: &std::ffi::OsStr) -> Option<NaiveDate> {
    let name = name.to_str()?;
    (name.len() == 10)
        .then(|| NaiveDate::parse_from_str(name, DAY_FORMAT).ok())
        .flatten()
}

/// Regular `*.json` files that are not dotfiles. Everything else in an inbox (the producer's
/// `__id_counter`, temp dotfiles of atomic writers) belongs to someone else.
pub fn is_candidate(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    !bytes.starts_with(b".") && bytes.ends_with(b".json")
}

const SIDECAR_SUFFIX: &str = ".error.json";

/// An event file (as the inbox sees one) that is not a reason file: what `done/` and `failed/`
/// hold besides reasons.
pub fn is_event_file(name: &std::ffi::OsStr) -> bool {
    is_candidate(name) && !name.as_encoded_bytes().ends_with(SIDECAR_SUFFIX.as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_is_found_from_the_end_as_the_standard_library_finds_it() {
        for path in [
            "/a/b/c.json",
            "c.json",
            "/c.json",
            "/a/b/",
            "/a/b/.",
            "/a/b/..",
            "/",
            "",
            ".",
            "a//b",
            "/a/b/c.json/",
            "/a/\u{e9}t\u{e9}.json",
        ] {
            let path = Path::new(path);
            assert_eq!(file_name(path), path.file_name(), "{path:?}");
        }
    }

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
