//! The watchdog that cleans up after a test process that died: servers the tests start (and
//! the directories they keep their data in) must not outlive it, even when it aborted, was
//! killed, or kept the server in a `static`, whose destructor never runs.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// A small `sh` process, in its own process group (so that a Ctrl-C of the test run does not
/// kill it before it has done its job), that polls the test process's pid and, once it is
/// gone, runs a cleanup script.
///
/// Dropping it kills it (the test process cleans up itself then).
#[derive(Debug)]
pub struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts a watchdog that runs `cleanup` (a `sh` script) once this process is gone. In
    /// `cleanup`, `$2`, `$3`, … are `args`; `$1` is this process's pid. `name` is the
    /// watchdog's `$0`, as `ps` shows it.
    pub fn spawn(name: &str, cleanup: &str, args: &[&OsStr]) -> Result<Watchdog> {
        let script = format!("while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; {cleanup}");
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(name)
            .arg(std::process::id().to_string())
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning the {name} (sh)"))?;
        Ok(Watchdog { child })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Kill its whole process group (`sh` and its `sleep`), which is the watchdog's own: it
        // was spawned with `process_group(0)`.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: plain syscall; the group only holds our watchdog.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}
