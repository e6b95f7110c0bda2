//! `etl replay`: after a schema or code fix, moves failed files back into the inbox.

use std::io;
use std::path::{Path, PathBuf};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::layout::{is_event_file, sidecar_name};
use crate::names;
use crate::source::inbox::files::{day_folders, move_into, Moved};

/// What to replay: all failed files, or those of one type and/or whose reason contains a text.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// A type's name.
    pub kind: Option<String>,
    pub reason: Option<String>,
}

/// Moves matching files from `failed/<type>/<date>/` (and, from older versions, `failed/<type>/`
/// itself) to `inbox/<type>/` and removes their reason files. The file moves first: a crash in
/// between leaves a stale reason file, never a lost event. Returns how many files were moved
/// back.
pub fn replay(config: &Config, catalog: &Catalog, filter: &Filter) -> io::Result<usize> {
    let mut moved = 0;
    for kind in catalog.iter() {
        if filter.kind.as_deref().is_some_and(|k| k != kind.name()) {
            continue;
        }
        let failed = config.failed(kind.name());
        let inbox = config.inbox(kind.name());
        let mut folders: Vec<PathBuf> = day_folders(&failed)?.into_iter().map(|(_, f)| f).collect();
        folders.push(failed);
        for folder in folders {
            moved += replay_folder(&folder, &inbox, filter)?;
        }
    }
    Ok(moved)
}

/// Replays the matching failed files directly in `folder`, each with its reason file beside it.
fn replay_folder(folder: &Path, inbox: &Path, filter: &Filter) -> io::Result<usize> {
    let mut moved = 0;
    let entries = match std::fs::read_dir(folder) {
        // The retention removed (or archived) this day folder after it was listed.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if !is_event_file(&name) || !entry.file_type()?.is_file() {
            continue;
        }
        // The reason file is named with the file's real bytes (a name that is not UTF-8
        // included), so each failed file is found with its own reason.
        let sidecar = folder.join(sidecar_name(&name));
        if !matches_reason(&sidecar, filter.reason.as_deref()) {
            continue;
        }
        let path = entry.path();
        let back = move_into(&path, inbox).map_err(|e| named(e, "cannot move", &path, inbox))?;
        if back == Moved::AlreadyGone {
            continue;
        }
        match std::fs::remove_file(&sidecar) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(named(
                    e,
                    "moved back, but cannot remove the reason file",
                    &sidecar,
                    folder,
                ))
            }
            _ => {}
        }
        moved += 1;
    }
    Ok(moved)
}

/// An I/O error that names the file (in the one text form of names, [`crate::names`]) and what
/// to do: the bare OS error would not say which of thousands of files it was.
fn named(error: io::Error, what: &str, path: &Path, folder: &Path) -> io::Error {
    io::Error::new(
        error.kind(),
        format!(
            "{what} {} ({error}): check the permissions of {} and run the replay again",
            names::encode_path(path),
            names::encode_path(folder),
        ),
    )
}

/// Case-insensitive match on the reason and code in the reason file.
fn matches_reason(sidecar: &Path, wanted: Option<&str>) -> bool {
    let Some(wanted) = wanted else { return true };
    let Ok(text) = std::fs::read_to_string(sidecar) else {
        return false;
    };
    let Ok(record) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    let wanted = wanted.to_lowercase();
    ["reason", "code"].iter().any(|field| {
        record[field]
            .as_str()
            .is_some_and(|v| v.to_lowercase().contains(&wanted))
    })
}
