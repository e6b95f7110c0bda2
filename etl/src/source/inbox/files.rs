//! The inbox's file bookkeeping: the folder layout, and moving each file to `done/` or
//! `failed/` (with its reason file) once its fate is durable.
//!
//! Finished files go into day folders, `done/<type>/<YYYY-MM-DD>/` and
//! `failed/<type>/<YYYY-MM-DD>/` (the UTC date of the move): no folder grows past a day of files,
//! and retention ([`crate::housekeeping::folders`]) removes whole days without listing their files.
//!
//! A file stays in the inbox until then, so the inbox itself is the queue: a crash at any point
//! leaves every unfinished file where a restart will find it, and reprocessing a file whose
//! transaction did commit changes nothing (the warehouse upsert is idempotent).

use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::NaiveDate;
use serde::Serialize;

use crate::catalog::{Catalog, Kind};
use crate::config::Config;
use crate::layout::{day_of, sidecar_name};
use crate::rejection::Rejection;

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

/// Where a finished file goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Done,
    Failed,
}

/// Today's day folder of each `done/` and `failed/` type folder, made the first time a file
/// goes there today: the hot path does not call `create_dir_all` per file, nor build the type
/// folder's path again.
#[derive(Default)]
pub struct DayFolders {
    /// (stage, type) → (the day, its day folder), as last made: a short list (two entries per
    /// declared type), searched by comparing handles, which costs less than hashing a path.
    made: Mutex<Vec<(Stage, Kind, NaiveDate, PathBuf)>>,
}

impl DayFolders {
    /// Today's (UTC) day folder of `kind`'s `stage` folder, created if this is its first use
    /// today.
    fn today(&self, config: &Config, stage: Stage, kind: &Kind) -> io::Result<PathBuf> {
        let today = chrono::Utc::now().date_naive();
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        let known = made
            .iter()
            .position(|(s, k, _, _)| *s == stage && k == kind);
        if let Some(i) = known {
            if made[i].2 == today {
                return Ok(made[i].3.clone());
            }
        }
        let folder = Config::day_folder(&stage_folder(config, stage, kind), today);
        std::fs::create_dir_all(&folder)?;
        let entry = (stage, kind.clone(), today, folder.clone());
        match known {
            Some(i) => made[i] = entry,
            None => made.push(entry),
        }
        Ok(folder)
    }

    /// Runs `op` on today's day folder of `kind`'s `stage` folder. A day folder removed since
    /// it was made (an operator, or the retention of a replica whose clock is ahead) makes `op`
    /// fail with `NotFound`: the folder is made again and `op` tried once more.
    fn within<T>(
        &self,
        config: &Config,
        stage: Stage,
        kind: &Kind,
        op: impl Fn(&Path) -> io::Result<T>,
    ) -> io::Result<T> {
        fault_point!(Move);
        let day = self.today(config, stage, kind)?;
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
        let moved = self.within(config, Stage::Done, kind, |day| rename_into(path, day));
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
        let name = crate::layout::file_name(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
        let record = RejectionRecord {
            // The name's lossless text form: two names differing only in a byte that is not
            // UTF-8 stay two names here (the reason file itself is named with the real bytes).
            file: crate::names::encode(name).into_owned(),
            kind: kind.name(),
            rejection,
            rejected_at: chrono::Utc::now(),
        };
        // Room for a typical reason file, so the buffer is not grown while it is written.
        let mut json = Vec::with_capacity(512);
        serde_json::to_writer_pretty(&mut json, &record).map_err(io::Error::other)?;
        let sidecar = sidecar_name(name);
        let moved = self.within(config, Stage::Failed, kind, |day| {
            write_atomically(&day.join(&sidecar), &json)?;
            rename_into(path, day)
        });
        gone_is_not_an_error(moved)
    }
}

/// `done/<type>/` or `failed/<type>/`.
fn stage_folder(config: &Config, stage: Stage, kind: &Kind) -> PathBuf {
    match stage {
        Stage::Done => config.done(kind.name()),
        Stage::Failed => config.failed(kind.name()),
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

/// The reason file written beside a rejected file in `failed/<type>/<date>/`: `file`, `type`,
/// the rejection's fields (its refusal's inline) and `rejected_at`.
#[derive(Debug)]
pub struct RejectionRecord<'a> {
    /// The file's name as [`crate::names::encode`] writes it.
    pub file: String,
    /// The type's name.
    pub kind: &'a str,
    pub rejection: &'a Rejection,
    pub rejected_at: chrono::DateTime<chrono::Utc>,
}

// By hand rather than with `#[serde(flatten)]`, which buffers every field through a map and
// cost more than the rest of writing the file; the keys and their order are the same.
impl Serialize for RejectionRecord<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let r = self.rejection;
        let mut out = serializer.serialize_struct("RejectionRecord", 12)?;
        out.serialize_field("file", &self.file)?;
        out.serialize_field("type", self.kind)?;
        out.serialize_field("code", &r.code)?;
        out.serialize_field("reason", &r.reason)?;
        out.serialize_field("instance_path", &r.instance_path)?;
        out.serialize_field("schema_location", &r.schema_location)?;
        if let Some(refusal) = &r.refusal {
            out.serialize_field("sqlstate", &refusal.sqlstate)?;
            for (key, value) in [
                ("table", &refusal.table),
                ("constraint", &refusal.constraint),
                ("column", &refusal.column),
            ] {
                if let Some(value) = value {
                    out.serialize_field(key, value)?;
                }
            }
            out.serialize_field("message", &refusal.message)?;
        }
        // Formatted once, as chrono's own serialization formats it: serde_json would otherwise
        // receive (and escape) it a few characters at a time.
        let at = self
            .rejected_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        out.serialize_field("rejected_at", &at)?;
        out.end()
    }
}

/// rename(2) into `folder` under the very same name (bytes, not a lossy UTF-8 copy of them):
/// atomic, and a no-op report if the file is already gone.
pub fn move_into(path: &Path, folder: &Path) -> io::Result<Moved> {
    gone_is_not_an_error(rename_into(path, folder))
}

/// rename(2) into `folder` under the same name; `NotFound` if the file or the folder is gone.
fn rename_into(path: &Path, folder: &Path) -> io::Result<()> {
    let name = crate::layout::file_name(path)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let target: PathBuf = folder.join(name);
    std::fs::rename(path, target)
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Writes a dotfile then renames it, so a reader never sees half a file. The dotfile's name is
/// short whatever the target's (a target name near `NAME_MAX` leaves no room for a prefix) and
/// unique to this process and call.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // `<folder>/.etl-<pid>-<n>.tmp`, assembled from bytes: `with_file_name` and `format!` cost
    // more than the rest of writing a reason file.
    let target = path.as_os_str().as_bytes();
    let folder = target.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
    let mut tmp = Vec::with_capacity(folder + 40);
    tmp.extend_from_slice(&target[..folder]);
    tmp.extend_from_slice(b".etl-");
    push_decimal(&mut tmp, u64::from(std::process::id()));
    tmp.push(b'-');
    push_decimal(&mut tmp, n);
    tmp.extend_from_slice(b".tmp");
    let tmp = PathBuf::from(std::ffi::OsString::from_vec(tmp));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::{Refusal, RejectCode};

    /// The reason file as `#[serde(flatten)]` wrote it before.
    #[derive(Serialize)]
    struct Flattened<'a> {
        file: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(flatten)]
        rejection: &'a Rejection,
        rejected_at: chrono::DateTime<chrono::Utc>,
    }

    #[test]
    fn a_dotfile_is_named_in_the_target_folder() {
        let dir = tempfile::tempdir().expect("a folder");
        let target = dir.path().join("x.json.error.json");
        write_atomically(&target, b"{}").expect("written");
        assert_eq!(std::fs::read(&target).expect("there"), b"{}");
        // Nothing else is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).expect("listed").count(), 1);
        for n in [0u64, 7, 10, 1234567890123, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn the_reason_file_reads_as_it_always_has() {
        let refusal = Refusal {
            sqlstate: "23514".into(),
            table: Some("cards".into()),
            constraint: Some("cards_id_check".into()),
            column: None,
            message: "new row violates check constraint \"cards_id_check\"".into(),
        };
        let at = chrono::Utc::now();
        for rejection in [
            Rejection::new(RejectCode::Schema, "\"x\" is not of type \"integer\"")
                .at("/payload/id"),
            Rejection::new(RejectCode::InvalidJson, "not valid JSON: expected `:`"),
            Rejection::refused(refusal.clone()),
        ] {
            let ours = RejectionRecord {
                file: "a b.json".into(),
                kind: "cards",
                rejection: &rejection,
                rejected_at: at,
            };
            let before = Flattened {
                file: "a b.json",
                kind: "cards",
                rejection: &rejection,
                rejected_at: at,
            };
            assert_eq!(
                String::from_utf8(serde_json::to_vec_pretty(&ours).expect("serializes")),
                String::from_utf8(serde_json::to_vec_pretty(&before).expect("serializes")),
            );
        }
    }
}
