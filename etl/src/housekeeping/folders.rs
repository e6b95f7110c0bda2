//! Retention of the file folders: whole day folders of `done/<type>/`, `failed/<type>/` and the
//! HTTP sources' landing zone (`lake/raw/<source>/<yyyy>/<mm>/<dd>/`) leave once older than
//! their retention — deleted, or moved under `archive_dir` when one is set. (The raw *table*'s
//! retention is [`crate::lake::retention`]: rows, not files.)
//!
//! A pass reads the type folders and the landing zone's date folders, never a day folder's
//! files: its cost grows with the number of days kept, not of files. It also files the flat
//! files older versions left directly in `done/<type>/` and `failed/<type>/` into day folders
//! (by modification time, at most [`LEGACY_PER_PASS`] per folder and pass), so they age out too.
//!
//! [`schedule`] runs a pass at start-up and then every `retention_interval_secs` inside
//! `etl run`, in one replica at a time (a PostgreSQL advisory lock of its own, so a long lake
//! export does not make it skip its turn).

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::housekeeping::lock;
use crate::layout::{day_of, is_event_file, sidecar_name};
use crate::load::connect;
use crate::ops::metrics::{RETENTION_LEGACY_FILED, RETENTION_REMOVED};
use crate::source::inbox::files::day_folders;

/// Most flat files of an older version filed into day folders per type folder and pass: a big
/// legacy `done/` is worked off over several passes instead of stalling one.
pub const LEGACY_PER_PASS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Db(#[from] crate::load::DbError),
    #[error("database error: {}", crate::load::error::causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("file folder error: {0}")]
    Io(#[from] io::Error),
    /// A configuration the retention cannot honour; the sentence says why.
    #[error("{0}")]
    Refused(String),
}

/// What `etl run`'s retention does, from the configuration.
#[derive(Clone, Debug)]
pub struct Plan {
    pub every: Duration,
    /// `events/`: its `done/` and `failed/` hold one folder per type.
    pub events_dir: PathBuf,
    /// The HTTP sources' landing zone.
    pub landing_dir: PathBuf,
    /// Days each area keeps (None: for ever).
    pub done: Option<u64>,
    pub failed: Option<u64>,
    pub landing: Option<u64>,
    /// Where old day folders go instead of being deleted.
    pub archive: Option<PathBuf>,
}

impl Plan {
    /// The plan `config` asks for (None when the interval is 0), after checking an archive
    /// folder can take day folders by rename: same file system as the data, and outside it.
    pub fn from_config(config: &Config) -> Result<Option<Plan>, RetentionError> {
        if config.retention.interval_secs == 0 {
            return Ok(None);
        }
        let days = |d: u64| (d > 0).then_some(d);
        let plan = Plan {
            every: Duration::from_secs(config.retention.interval_secs),
            events_dir: config.events_dir(),
            landing_dir: config.landing_dir(),
            done: days(config.retention.done_days),
            failed: days(config.retention.failed_days),
            landing: days(config.retention.landing_days),
            archive: config.retention.archive_dir.clone(),
        };
        if let Some(archive) = &plan.archive {
            check_archive(archive, &config.data_dir, &plan)?;
        }
        Ok(Some(plan))
    }
}

/// Day folders move to the archive by rename(2), which is atomic and costs nothing whatever
/// they hold — but only within one file system. A copy across file systems would read and
/// write a retention's worth of files every day, so it is refused at start-up instead.
fn check_archive(archive: &Path, data_dir: &Path, plan: &Plan) -> Result<(), RetentionError> {
    std::fs::create_dir_all(archive)?;
    std::fs::create_dir_all(data_dir)?;
    let archive = archive.canonicalize()?;
    let data = data_dir.canonicalize()?;
    for inside in [&plan.events_dir, &plan.landing_dir] {
        let inside = data.join(inside.strip_prefix(data_dir).unwrap_or(inside));
        if archive.starts_with(&inside) {
            return Err(RetentionError::Refused(format!(
                "archive_dir {} is inside {}, which the daemon reads and the retention empties; \
                 choose a folder outside it",
                archive.display(),
                inside.display()
            )));
        }
    }
    // `events/` or the landing zone may be mounts of their own (a volume at /data/events):
    // each must share the archive's file system, not only the data folder.
    let archive_dev = std::fs::metadata(&archive)?.dev();
    for area in [&plan.events_dir, &plan.landing_dir] {
        std::fs::create_dir_all(area)?;
        if std::fs::metadata(area)?.dev() != archive_dev {
            return Err(RetentionError::Refused(format!(
                "archive_dir {} is on another file system than {}: the retention moves day \
                 folders there by rename, which only works within one file system; choose a \
                 folder on the same file system (or unset archive_dir to delete them)",
                archive.display(),
                area.display()
            )));
        }
    }
    Ok(())
}

/// What one pass did: day folders removed (deleted or archived) per area, and flat files of an
/// older version filed into day folders.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub done: u64,
    pub failed: u64,
    pub landing: u64,
    pub legacy_filed: u64,
}

/// Inside `etl run`: a pass at start-up and then every `plan.every`, each holding the lock on
/// a connection of its own (a replica that finds it held skips its turn). A failed pass is
/// logged and tried again next time; it never stops ingestion.
pub async fn schedule(config: Config, plan: Plan, stop: CancellationToken) {
    loop {
        let started = Instant::now();
        match locked_pass(&config, &plan).await {
            Ok(Some(report)) => tracing::info!(
                done_days = report.done,
                failed_days = report.failed,
                landing_days = report.landing,
                legacy_filed = report.legacy_filed,
                archived_to = %plan.archive.as_deref().map_or("-".into(), |a| a.display().to_string()),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "file folders retention pass"
            ),
            Ok(None) => {
                tracing::debug!("file folders retention skipped: another replica holds the lock")
            }
            Err(error) => tracing::warn!(
                %error,
                "file folders retention pass failed; trying again at the next interval"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(plan.every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One pass under the lock; None if another process holds it. The file work runs on a
/// blocking thread while this task keeps the locked connection open.
pub async fn locked_pass(config: &Config, plan: &Plan) -> Result<Option<Report>, RetentionError> {
    let client = connect::session(config).await?;
    if !lock::take(&client, lock::FOLDERS).await? {
        return Ok(None);
    }
    let plan = plan.clone();
    let report = tokio::task::spawn_blocking(move || pass(&plan, Utc::now().date_naive()))
        .await
        .map_err(|e| RetentionError::Refused(format!("the retention pass panicked: {e}")))??;
    for (folder, n) in [
        ("done", report.done),
        ("failed", report.failed),
        ("landing", report.landing),
    ] {
        metrics::counter!(RETENTION_REMOVED, "folder" => folder).increment(n);
    }
    metrics::counter!(RETENTION_LEGACY_FILED).increment(report.legacy_filed);
    // The connection ends here, and the lock with it.
    drop(client);
    Ok(Some(report))
}

/// One pass over every area, as of `today` (UTC). Without the lock: the caller holds it.
pub fn pass(plan: &Plan, today: NaiveDate) -> io::Result<Report> {
    let mut report = Report::default();
    for (stage, keep) in [("done", plan.done), ("failed", plan.failed)] {
        let mut removed = 0;
        for type_folder in subfolders(&plan.events_dir.join(stage))? {
            // One folder the pass cannot handle (a file it may not delete, say) is one WARN
            // line and is tried again next pass; it never stops the others from being pruned.
            match file_legacy(&type_folder, stage == "failed", keep, today) {
                Ok(filed) => report.legacy_filed += filed,
                Err(error) => warn_skipped(&type_folder, &error),
            }
            let Some(days) = keep else { continue };
            for (day, folder) in day_folders(&type_folder)? {
                if expired(day, days, today) {
                    let archived = plan.archive.as_ref().map(|a| {
                        a.join(stage)
                            .join(type_folder.file_name().unwrap_or_default())
                            .join(folder.file_name().unwrap_or_default())
                    });
                    match remove(&folder, archived.as_deref()) {
                        Ok(gone) => removed += u64::from(gone),
                        Err(error) => warn_skipped(&folder, &error),
                    }
                }
            }
        }
        match stage {
            "done" => report.done = removed,
            _ => report.failed = removed,
        }
    }
    if let Some(days) = plan.landing {
        report.landing = landing(plan, days, today)?;
    }
    Ok(report)
}

/// A day's folder goes once the whole day is older than the retention: a file stays at least
/// `days` days and at most one more.
fn expired(day: NaiveDate, days: u64, today: NaiveDate) -> bool {
    today
        .checked_sub_days(chrono::Days::new(days))
        .is_some_and(|cutoff| day < cutoff)
}

/// The landing zone: `<source>/<yyyy>/<mm>/<dd>/`. Empty month and year folders wholly before
/// the cutoff go too (the writer only ever creates today's).
fn landing(plan: &Plan, days: u64, today: NaiveDate) -> io::Result<u64> {
    let Some(cutoff) = today.checked_sub_days(chrono::Days::new(days)) else {
        return Ok(0);
    };
    let mut removed = 0;
    for source in subfolders(&plan.landing_dir)? {
        for year in numbered(&source, 4)? {
            for month in numbered(&year.1, 2)? {
                for day in numbered(&month.1, 2)? {
                    let Some(date) = NaiveDate::from_ymd_opt(year.0, month.0, day.0) else {
                        continue;
                    };
                    if date < cutoff {
                        let archived = plan.archive.as_ref().map(|a| {
                            let relative = day.1.strip_prefix(&plan.landing_dir).unwrap_or(&day.1);
                            a.join("landing").join(relative)
                        });
                        match remove(&day.1, archived.as_deref()) {
                            Ok(gone) => removed += u64::from(gone),
                            Err(error) => warn_skipped(&day.1, &error),
                        }
                    }
                }
                if (year.0, month.0) < (cutoff.year(), cutoff.month()) {
                    let _ = std::fs::remove_dir(&month.1);
                }
            }
            if year.0 < cutoff.year() {
                let _ = std::fs::remove_dir(&year.1);
            }
        }
    }
    Ok(removed)
}

fn warn_skipped(folder: &Path, error: &io::Error) {
    tracing::warn!(
        folder = %folder.display(),
        %error,
        "file folders retention: this folder is skipped until the next pass"
    );
}

/// Deletes a day folder, or moves it to `archived` (merging into a folder of the same day
/// already there). False if it was already gone (another pass, an operator).
fn remove(folder: &Path, archived: Option<&Path>) -> io::Result<bool> {
    let result = match archived {
        None => std::fs::remove_dir_all(folder),
        Some(target) => archive(folder, target),
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn archive(folder: &Path, target: &Path) -> io::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::rename(folder, target) {
        // The archive already has this day (legacy files filed into it after it was archived):
        // move the files one by one, then the empty folder goes.
        Err(e)
            if e.kind() == io::ErrorKind::DirectoryNotEmpty
                || e.kind() == io::ErrorKind::AlreadyExists =>
        {
            for entry in std::fs::read_dir(folder)? {
                let entry = entry?;
                std::fs::rename(entry.path(), target.join(entry.file_name()))?;
            }
            std::fs::remove_dir(folder)
        }
        other => other,
    }
}

/// Files up to [`LEGACY_PER_PASS`] flat files of `type_folder` (left by an older version) into
/// the day folder of their modification time (UTC). In `failed/` a file takes its reason file
/// with it, and the day is the reason file's (the day it was rejected); reason files are only
/// moved with their event file. Dotfiles (writes in progress) are left alone. A day the area's
/// retention (`keep`) has already expired is replaced by `today`: the first pass after an
/// upgrade must not delete, within milliseconds, the failed files an operator kept flat for a
/// later replay, so every old file gets one full retention from the upgrade.
fn file_legacy(
    type_folder: &Path,
    failed: bool,
    keep: Option<u64>,
    today: NaiveDate,
) -> io::Result<u64> {
    let mut made = HashSet::new();
    let mut filed = 0;
    for entry in std::fs::read_dir(type_folder)? {
        if filed as usize >= LEGACY_PER_PASS {
            break;
        }
        let entry = entry?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".")
            || !is_event_file(&name)
            || !entry.file_type()?.is_file()
        {
            continue;
        }
        // Named with the file's real bytes, whatever they are (see `sidecar_name`).
        let sidecar = failed.then(|| type_folder.join(sidecar_name(&name)));
        let dated_by = match &sidecar {
            Some(s) if s.is_file() => s.clone(),
            _ => entry.path(),
        };
        let modified = match std::fs::metadata(&dated_by).and_then(|m| m.modified()) {
            Ok(time) => time,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let day = chrono::DateTime::<Utc>::from(modified).date_naive();
        let day = match keep {
            Some(days) if expired(day, days, today) => today,
            _ => day,
        };
        let folder = Config::day_folder(type_folder, day);
        if made.insert(day) {
            std::fs::create_dir_all(&folder)?;
        }
        match std::fs::rename(entry.path(), folder.join(&name)) {
            Ok(()) => filed += 1,
            // Moved meanwhile (`etl replay`, another pass): nothing to file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        if let Some(sidecar) = sidecar {
            match std::fs::rename(
                &sidecar,
                folder.join(sidecar.file_name().unwrap_or_default()),
            ) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(filed)
}

/// The folders directly in `dir` (none if it does not exist yet).
fn subfolders(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() && day_of(&entry.file_name()).is_none() {
            folders.push(entry.path());
        }
    }
    folders.sort();
    Ok(folders)
}

/// The folders in `dir` named by a number of `digits` digits (`2026`, `11`), with the number.
fn numbered<N: std::str::FromStr>(dir: &Path, digits: usize) -> io::Result<Vec<(N, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() != digits || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let (Ok(n), true) = (name.parse(), entry.file_type()?.is_dir()) {
            found.push((n, entry.path()));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a date")
    }

    #[test]
    fn a_day_goes_once_all_of_it_is_older_than_the_retention() {
        let today = day("2026-11-23");
        assert!(!expired(day("2026-11-23"), 1, today));
        assert!(!expired(day("2026-11-22"), 1, today), "yesterday stays");
        assert!(expired(day("2026-11-21"), 1, today));
        assert!(!expired(day("2026-11-16"), 7, today));
        assert!(expired(day("2026-11-15"), 7, today));
    }
}
