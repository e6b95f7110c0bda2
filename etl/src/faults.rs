//! Named fault points, so a test injects a failure at a chosen point and count instead of
//! hoping a sleep lands it: `FAULT_POINTS=move:erofs:100` makes every move into `done/` or
//! `failed/` fail with "read-only file system" from the 100th on, until the file named by
//! `FAULT_POINTS_RELEASE` exists. Unset (always, outside tests) each point costs one load of an
//! initialised `OnceLock`.
//!
//! Hand-written rather than the `fail` crate: its points are configured in-process (or once,
//! from `FAILPOINTS`, at start-up), while these tests drive the real binary from outside and
//! must release a fault while it runs.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The points a fault can be injected at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Moving a finished file into its day folder (`done/` or `failed/`).
    Move,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::Move => "move",
        }
    }
}

struct Fault {
    point: &'static str,
    errno: i32,
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

/// `point:error:from` items, comma-separated; an item that does not parse is ignored (with a
/// line on stderr: this is a test hook, not configuration).
fn parse(spec: &str) -> Vec<Fault> {
    spec.split(',')
        .filter(|item| !item.trim().is_empty())
        .filter_map(|item| {
            let mut parts = item.trim().split(':');
            let point = match parts.next()? {
                "move" => Point::Move.name(),
                other => {
                    eprintln!("FAULT_POINTS: unknown point {other:?} (known: move)");
                    return None;
                }
            };
            let errno = match parts.next()? {
                "erofs" => libc::EROFS,
                "enospc" => libc::ENOSPC,
                "eacces" => libc::EACCES,
                other => {
                    eprintln!(
                        "FAULT_POINTS: unknown error {other:?} (known: erofs, enospc, eacces)"
                    );
                    return None;
                }
            };
            let from = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
            Some(Fault {
                point,
                errno,
                from,
                hits: AtomicU64::new(0),
            })
        })
        .collect()
}

/// Fails if a fault is injected at `point` and due now.
pub fn check(point: Point) -> io::Result<()> {
    let faults = faults();
    if faults.faults.is_empty() {
        return Ok(());
    }
    for fault in faults.faults.iter().filter(|f| f.point == point.name()) {
        let hit = fault.hits.fetch_add(1, Ordering::Relaxed) + 1;
        let released = faults.release.as_ref().is_some_and(|p| p.exists());
        if hit >= fault.from && !released {
            return Err(io::Error::from_raw_os_error(fault.errno));
        }
    }
    Ok(())
}
