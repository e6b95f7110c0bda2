//! Named fault points, so a test fails or kills the daemon at an exact step of its work instead
//! of hoping a sleep lands there. Compiled only with the `failpoints` cargo feature, which the
//! test build turns on (the crate's dev-dependency on itself) and release builds and the Docker
//! images leave off: without it the module does not exist and every `fault_point!` or
//! `crash_point!` (the macros in `lib.rs` that mark the points in the code) expands to nothing.
//!
//! The environment arms them at start-up, `FAULT_POINTS=point:action[:N]`, comma-separated:
//!
//! - `move:erofs:100` makes every move into `done/` or `failed/` fail with "read-only file
//!   system" from the 100th on (also `enospc`, `eacces`), until the file named by
//!   `FAULT_POINTS_RELEASE` exists;
//! - `lake.retire:kill:2` makes the process SIGKILL itself at the 2nd time it reaches that point:
//!   the same death as an operator's `kill -9` or the OOM killer, but at a known step, so a crash
//!   test asserts the state that step leaves instead of whatever a timer happened to hit.
//!
//! Hand-written rather than the `fail` crate: the tests drive the real binary from outside, and
//! need to release an error fault while it runs, and a death that is a real SIGKILL (no
//! unwinding, no destructors, no flush) rather than a panic the runtime could catch.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The points a fault can be injected at. Each is named for the step it sits after (or at).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Moving a finished file into its day folder (`done/` or `failed/`), before the move.
    Move,
    /// A batch's warehouse transaction has committed; its records are not acknowledged yet (no
    /// file moved, no broker message acknowledged).
    LoadCommitted,
    /// The schema migrations are applied inside their transaction, not committed yet.
    Migrated,
    /// `etl forward`: the broker has acknowledged a publish; the event's file is not moved yet.
    ForwardPublished,
    /// An HTTP pull has stored its position after a settled page (its events committed).
    HttpPageSaved,
    /// A raw lake export has written rows into a temporary (dot-named) Parquet file.
    LakeExportWritten,
    /// A raw lake export has published a Parquet file (renamed into place) and not yet moved
    /// the watermark: the file is an orphan until the watermark covers it.
    LakeExportPublished,
    /// A retention pass is about to retire its next batch of raw rows (the first time: the
    /// export and its watermark are done, nothing retired yet).
    LakeRetire,
}

/// Every point, with the name `FAULT_POINTS` uses for it.
const POINTS: [(Point, &str); 8] = [
    (Point::Move, "move"),
    (Point::LoadCommitted, "load.committed"),
    (Point::Migrated, "migrated"),
    (Point::ForwardPublished, "forward.published"),
    (Point::HttpPageSaved, "http.page.saved"),
    (Point::LakeExportWritten, "lake.export.written"),
    (Point::LakeExportPublished, "lake.export.published"),
    (Point::LakeRetire, "lake.retire"),
];

impl Point {
    pub fn name(self) -> &'static str {
        POINTS
            .iter()
            .find(|(p, _)| *p == self)
            .map_or("?", |(_, name)| name)
    }
}

/// What happens at an armed point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// The step fails with this OS error, from the Nth hit on, until released.
    Fail(i32),
    /// The process SIGKILLs itself at the Nth hit.
    Kill,
}

struct Fault {
    point: Point,
    action: Action,
    from: u64,
    hits: AtomicU64,
}

struct Faults {
    faults: Vec<Fault>,
    release: Option<PathBuf>,
}

fn faults() -> &'static Faults {
    static FAULTS: OnceLock<Faults> = OnceLock::new();
    FAULTS.get_or_init(|| Faults {
        faults: std::env::var("FAULT_POINTS")
            .map(|spec| parse(&spec))
            .unwrap_or_default(),
        release: std::env::var_os("FAULT_POINTS_RELEASE").map(PathBuf::from),
    })
}

/// `point:action[:from]` items, comma-separated; an item that does not parse is ignored (with a
/// line on stderr: this is a test hook, not configuration).
fn parse(spec: &str) -> Vec<Fault> {
    spec.split(',')
        .filter(|item| !item.trim().is_empty())
        .filter_map(|item| {
            let mut parts = item.trim().split(':');
            let name = parts.next()?;
            let Some(point) = POINTS.iter().find(|(_, n)| *n == name).map(|(p, _)| *p) else {
                let known: Vec<&str> = POINTS.iter().map(|(_, n)| *n).collect();
                eprintln!("FAULT_POINTS: unknown point {name:?} (known: {known:?})");
                return None;
            };
            let action = match parts.next()? {
                "erofs" => Action::Fail(libc::EROFS),
                "enospc" => Action::Fail(libc::ENOSPC),
                "eacces" => Action::Fail(libc::EACCES),
                "kill" => Action::Kill,
                other => {
                    eprintln!(
                        "FAULT_POINTS: unknown action {other:?} (known: erofs, enospc, eacces, kill)"
                    );
                    return None;
                }
            };
            if matches!(action, Action::Fail(_)) && point != Point::Move {
                eprintln!(
                    "FAULT_POINTS: {name} can only kill (errors are injected at: move)"
                );
                return None;
            }
            let from = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
            Some(Fault {
                point,
                action,
                from,
                hits: AtomicU64::new(0),
            })
        })
        .collect()
}

/// Fails, or kills the process, if a fault is armed at `point` and due now.
pub fn check(point: Point) -> io::Result<()> {
    let faults = faults();
    for fault in faults.faults.iter().filter(|f| f.point == point) {
        let hit = fault.hits.fetch_add(1, Ordering::Relaxed) + 1;
        match fault.action {
            Action::Kill if hit == fault.from => die(point, hit),
            Action::Kill => {}
            Action::Fail(errno) => {
                let released = faults.release.as_ref().is_some_and(|p| p.exists());
                if hit >= fault.from && !released {
                    return Err(io::Error::from_raw_os_error(errno));
                }
            }
        }
    }
    Ok(())
}

/// Kills the process if a kill is armed at `point` and due now (the points whose callers have
/// no I/O error to return: only kills can be armed there).
pub fn crash(point: Point) {
    // `parse` arms nothing but kills at these points, so this is never an error.
    let _ = check(point);
}

/// SIGKILL to itself: nothing after this point runs, as with `kill -9` from outside. The line
/// on stderr (unbuffered) is how a test tells this death from any other.
fn die(point: Point, hit: u64) -> ! {
    eprintln!("FAULT_POINTS: {} hit {hit}: kill", point.name());
    // SAFETY: plain syscalls on this very process; neither touches memory.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught or ignored, so the line above does not return; abort if it ever
    // did (a sandbox refusing the signal), which still ends the process at this point.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_parse_into_points_actions_and_counts() {
        let faults = parse("move:erofs:200, lake.retire:kill:2,load.committed:kill");
        let got: Vec<_> = faults.iter().map(|f| (f.point, f.action, f.from)).collect();
        assert_eq!(
            got,
            [
                (Point::Move, Action::Fail(libc::EROFS), 200),
                (Point::LakeRetire, Action::Kill, 2),
                (Point::LoadCommitted, Action::Kill, 1),
            ]
        );
    }

    #[test]
    fn unknown_points_and_errors_at_kill_only_points_are_ignored() {
        assert!(parse("nowhere:kill:1").is_empty());
        assert!(parse("move:explode").is_empty());
        assert!(parse("lake.retire:erofs:1").is_empty());
    }

    #[test]
    fn every_point_has_its_own_name() {
        for (point, name) in POINTS {
            assert_eq!(point.name(), name);
        }
    }
}
