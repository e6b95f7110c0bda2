//! CPU time, the measure that survives a shared machine: wall time stretches with whatever else
//! runs, the CPU seconds a piece of work needs do not (much).
//!
//! The work of a phase is counted on both sides of the socket: the bench's or the etl's own CPU,
//! plus the PostgreSQL backends' CPU, read from the postmaster, which collects the CPU time of
//! every backend it reaps (`cutime`/`cstime` in `/proc/<pid>/stat`).

use std::path::Path;
use std::time::Duration;

/// CPU time (user + system) this process has used so far.
pub fn own() -> Duration {
    // SAFETY: an all-zero rusage is valid for getrusage to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer; RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    total(&usage)
}

/// User + system time of a rusage.
pub fn total(usage: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The postmaster of a server on this machine.
pub struct Postgres {
    postmaster: i32,
}

impl Postgres {
    /// Finds the postmaster behind `url` from the `postmaster.pid` file in its data directory;
    /// `None` if the server is not on this machine (or that file is out of reach).
    pub fn locate(url: &str) -> Option<Postgres> {
        let data_dir = testkit::pg::psql(url, "SHOW data_directory").ok()?;
        let pid_file = std::fs::read_to_string(Path::new(&data_dir).join("postmaster.pid")).ok()?;
        let postmaster = pid_file.lines().next()?.trim().parse().ok()?;
        // The file must describe a running postgres of this machine.
        let comm = std::fs::read_to_string(format!("/proc/{postmaster}/comm")).ok()?;
        (comm.trim() == "postgres").then_some(Postgres { postmaster })
    }

    /// CPU time of the postmaster and of every backend it has reaped so far. A backend's time
    /// counts once it has exited: call this after the phase's connections are closed (see
    /// [`Postgres::settle`]).
    pub fn cpu(&self) -> Duration {
        let Some(fields) = stat_fields(self.postmaster) else {
            return Duration::ZERO;
        };
        // utime, stime, cutime, cstime: fields 14-17 of stat(5), 11-14 after the state field.
        let ticks: u64 = fields[11..15]
            .iter()
            .filter_map(|f| f.parse::<u64>().ok())
            .sum();
        ticks_to_duration(ticks)
    }

    /// Waits until no backend is connected to database `name` any more (so their CPU time has
    /// been collected), at most a few seconds.
    pub fn settle(&self, admin_url: &str, name: &str) {
        let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'");
        for _ in 0..100 {
            if testkit::pg::psql(admin_url, &sql).is_ok_and(|n| n == "0") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Gone from pg_stat_activity a moment before the postmaster reaps the process.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// CPU time (user + system) process `pid` has used so far, its reaped children aside; `None` if
/// it cannot be read.
pub fn process(pid: i32) -> Option<Duration> {
    let fields = stat_fields(pid)?;
    // utime, stime: fields 14-15 of stat(5), 11-12 after the state field.
    let ticks: u64 = fields
        .get(11..13)?
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Some(ticks_to_duration(ticks))
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// The fields of `/proc/<pid>/stat` after the command name, from the state (field 3) on.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}
