//! The inbox's file bookkeeping: the folder layout, and moving each file to `done/` or
//! `failed/` (with its reason file) once its fate is durable.
//!
//! A file stays in the inbox until then, so the inbox itself is the queue: a crash at any point
//! leaves every unfinished file where a restart will find it, and reprocessing a file whose
//! transaction did commit changes nothing (the warehouse upsert is idempotent).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::catalog::{Catalog, Kind};
use crate::config::Config;
use crate::extract::Rejection;

/// Creates `events/{inbox,done,failed}/<type>/` and `logs/` if missing.
pub fn ensure_layout(config: &Config, catalog: &Catalog) -> io::Result<()> {
    for kind in catalog.iter() {
        std::fs::create_dir_all(config.inbox(kind.name()))?;
        std::fs::create_dir_all(config.done(kind.name()))?;
        std::fs::create_dir_all(config.failed(kind.name()))?;
    }
    std::fs::create_dir_all(config.logs_dir())
}

/// The outcome of moving one file.
#[derive(Debug, PartialEq, Eq)]
pub enum Moved {
    Yes,
    /// Someone else moved it first (another daemon on the same folder). Not an error.
    AlreadyGone,
}

/// Moves a file whose event is committed into `done/<type>/`.
pub fn move_to_done(config: &Config, kind: &Kind, path: &Path) -> io::Result<Moved> {
    move_into(path, &config.done(kind.name()))
}

/// The reason file written beside a rejected file in `failed/<type>/`.
#[derive(Debug, Serialize)]
pub struct RejectionRecord<'a> {
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

/// The name of the reason file of a failed file.
///
/// A name too long for the suffix to fit in `NAME_MAX` is shortened and made unique again with
/// a hash of the whole name: otherwise the reason file could not be written, the file could not
/// be rejected, and it would stay in the inbox for ever. (The record's `file` field keeps the
/// full name.)
pub fn sidecar_name(file_name: &str) -> String {
    const SUFFIX: &str = SIDECAR_SUFFIX;
    if file_name.len() + SUFFIX.len() <= NAME_MAX {
        return format!("{file_name}{SUFFIX}");
    }
    // Room for `~` and 16 hex digits.
    let mut cut = NAME_MAX - SUFFIX.len() - 17;
    while !file_name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{:016x}{SUFFIX}", &file_name[..cut], fnv1a(file_name))
}

/// The longest file name Linux file systems accept, in bytes.
const NAME_MAX: usize = 255;

/// FNV-1a: a hash that, unlike std's `DefaultHasher`, is specified, so a shortened reason file
/// name stays the same across Rust releases (`etl replay` recomputes it).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Moves a rejected file to `failed/<type>/` with its reason file. The reason file is written
/// first: if we crash in between, the file is still in the inbox and is simply rejected again.
pub fn reject(
    config: &Config,
    kind: &Kind,
    path: &Path,
    rejection: &Rejection,
) -> io::Result<Moved> {
    let failed = config.failed(kind.name());
    let name = file_name(path)?;
    let record = RejectionRecord {
        file: name.clone(),
        kind: kind.name(),
        rejection,
        rejected_at: chrono::Utc::now(),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
    write_atomically(&failed.join(sidecar_name(&name)), &json)?;
    move_into(path, &failed)
}

fn file_name(path: &Path) -> io::Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))
}

/// rename(2) into `folder` under the very same name (bytes, not a lossy UTF-8 copy of them):
/// atomic, and a no-op report if the file is already gone.
pub fn move_into(path: &Path, folder: &Path) -> io::Result<Moved> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let target: PathBuf = folder.join(name);
    match std::fs::rename(path, target) {
        Ok(()) => Ok(Moved::Yes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Moved::AlreadyGone),
        Err(e) => Err(e),
    }
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
            assert!(sidecar.len() <= NAME_MAX, "{sidecar}");
            assert!(sidecar.ends_with(".error.json"));
            assert_eq!(sidecar, sidecar_name(name), "deterministic");
        }
        assert_ne!(sidecar_name(&a), sidecar_name(&format!("{a}x")));
    }
}
