//! The real `etl` binary, as an operator runs it: built in release mode, configured through
//! `ETL_*` variables, run as a child process whose peak memory the kernel reports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The workspace root, for `cargo build` and the event types' folders.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// `explicit` if given; otherwise builds `etl` in release mode (a no-op when up to date) and
/// returns `target/release/etl`, next to this benchmark's own binary.
pub fn binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        // Absolute: the daemon runs in another working directory.
        return std::fs::canonicalize(path)
            .with_context(|| format!("no etl binary at {}", path.display()));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "etl", "--bin", "etl"])
        .current_dir(workspace_root())
        .status()
        .context("cannot run cargo to build etl")?;
    if !status.success() {
        bail!("cargo build --release -p etl failed");
    }
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .map(|dir| dir.join("etl"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| workspace_root().join("target/release/etl"));
    if !path.is_file() {
        bail!("built etl but cannot find it at {}", path.display());
    }
    Ok(path)
}

/// The folders the daemon reads its event types from, passed explicitly so that a run does not
/// depend on the working directory.
#[derive(Clone, Debug)]
pub struct Project {
    pub schemas: PathBuf,
    pub types: PathBuf,
    pub migrations: PathBuf,
}

impl Project {
    /// The repository's own folders: the types it ships (users, cards).
    pub fn repository() -> Project {
        let root = workspace_root();
        Project {
            schemas: root.join("schemas"),
            types: root.join("types"),
            migrations: root.join("db/migrations"),
        }
    }

    /// A copy of the repository's folders in `dir` with the transactions example installed, as
    /// its README tells an operator to: a third type added as data only.
    pub fn with_transactions(dir: &Path) -> anyhow::Result<Project> {
        let repository = Project::repository();
        let project = Project {
            schemas: dir.join("schemas"),
            types: dir.join("types"),
            migrations: dir.join("db/migrations"),
        };
        for (from, to) in [
            (&repository.schemas, &project.schemas),
            (&repository.types, &project.types),
            (&repository.migrations, &project.migrations),
        ] {
            copy_files(from, to)?;
        }
        let example = workspace_root().join("examples/transactions");
        for (file, to) in [
            ("transactions.schema.json", &project.schemas),
            ("transactions.toml", &project.types),
            ("migrations/1000_transactions.sql", &project.migrations),
        ] {
            let from = example.join(file);
            let name = from.file_name().context("example file without a name")?;
            std::fs::copy(&from, to.join(name))
                .with_context(|| format!("cannot install {}", from.display()))?;
        }
        Ok(project)
    }
}

/// Copies the plain files of `from` into `to` (created).
fn copy_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// How to run the daemon against one database and data folder.
pub struct Etl {
    pub binary: PathBuf,
    pub database_url: String,
    pub data_dir: PathBuf,
    /// Where its event types, schemas and migrations are.
    pub project: Project,
    /// Where its stdout/stderr go (shown if it fails).
    pub log: PathBuf,
    /// The broker (`ETL_NATS_URL`) for `etl forward` and `etl run --source jetstream`.
    pub nats_url: Option<String>,
}

impl Etl {
    fn command(&self, args: &[&str]) -> anyhow::Result<Command> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args);
        self.configure(cmd)
    }

    /// `etl <args>` run by `tool <tool_args>` (e.g. valgrind), configured as [`Etl::command`].
    pub fn command_via(
        &self,
        tool: &str,
        tool_args: &[&str],
        args: &[&str],
    ) -> anyhow::Result<Command> {
        let mut cmd = Command::new(tool);
        cmd.args(tool_args).arg(&self.binary).args(args);
        self.configure(cmd)
    }

    fn configure(&self, mut cmd: Command) -> anyhow::Result<Command> {
        let log = std::fs::File::create(&self.log)
            .with_context(|| format!("cannot create {}", self.log.display()))?;
        cmd.env("ETL_DATABASE_URL", &self.database_url)
            .env("ETL_DATA_DIR", &self.data_dir)
            .env("ETL_SCHEMAS_DIR", &self.project.schemas)
            .env("ETL_TYPES_DIR", &self.project.types)
            .env("ETL_MIGRATIONS_DIR", &self.project.migrations)
            .env("ETL_HTTP_ADDR", "")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            // No `etl.toml` from wherever the bench was started.
            .current_dir(self.data_dir.parent().unwrap_or(&self.data_dir))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(url) = &self.nats_url {
            cmd.env("ETL_NATS_URL", url);
        }
        Ok(cmd)
    }

    /// `etl migrate`: the fresh, empty schema both the floor and the etl start from.
    pub fn migrate(&self) -> anyhow::Result<()> {
        let status = self.command(&["migrate"])?.status()?;
        if !status.success() {
            bail!("etl migrate failed: {}", self.log_tail());
        }
        Ok(())
    }

    /// Starts `etl run` (`--drain` or follow mode).
    pub fn spawn(&self, drain: bool) -> anyhow::Result<Running> {
        let args: &[&str] = if drain { &["run", "--drain"] } else { &["run"] };
        self.spawn_with(args)
    }

    /// Starts `etl <args>` (e.g. `forward --drain`, `run --source jetstream`).
    pub fn spawn_with(&self, args: &[&str]) -> anyhow::Result<Running> {
        let child = self.command(args)?.spawn().context("cannot start etl")?;
        Ok(Running {
            child,
            binary: self.binary.clone(),
            started: Instant::now(),
            hwm_polled_kib: 0,
            reaped: false,
        })
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// A running etl process.
pub struct Running {
    child: Child,
    /// What the child runs once it has exec'd.
    binary: PathBuf,
    pub started: Instant,
    /// Highest `VmHWM` seen while polling `/proc/<pid>/status`.
    hwm_polled_kib: u64,
    /// Waited for: its pid may belong to another process now, so it must not be signalled.
    reaped: bool,
}

/// How the process ended.
#[derive(Clone, Copy, Debug)]
pub struct Exited {
    pub success: bool,
    pub elapsed: Duration,
    /// User + system CPU time of the process (wait4's rusage).
    pub cpu: Duration,
    /// Peak resident set size: the highest `VmHWM` (the kernel's own high-water mark of the
    /// process's memory) read while polling every 10 ms. Not wait4's `ru_maxrss`: Linux folds
    /// the high-water mark of the memory the child had before its exec, the bench's (vfork),
    /// into it.
    pub peak_rss_kib: u64,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Asks the daemon to finish what is in flight and stop (as an operator's Ctrl-C would).
    pub fn terminate(&self) {
        if !self.reaped {
            // SAFETY: plain syscall on our own child's pid, which is not reaped yet.
            unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        }
    }

    /// Polls until the process exits (sampling `VmHWM` meanwhile), or kills it after `limit`.
    pub fn wait(mut self, limit: Duration) -> anyhow::Result<Exited> {
        loop {
            if let Some(exited) = self.try_wait()? {
                return Ok(exited);
            }
            if self.started.elapsed() > limit {
                self.kill();
                bail!("etl did not finish within {limit:?}; killed");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Reads the process's `VmHWM` now, while it runs (a zombie has none): before a SIGTERM,
    /// for a process not polled while it ran.
    pub fn sample(&mut self) {
        if self.reaped {
            return;
        }
        if let Some(kib) = vm_hwm_kib(self.pid(), &self.binary) {
            self.hwm_polled_kib = self.hwm_polled_kib.max(kib);
        }
    }

    /// Samples `VmHWM`, then reaps the process if it has exited (at most once: `None` ever
    /// after, as while it runs).
    pub fn try_wait(&mut self) -> anyhow::Result<Option<Exited>> {
        if self.reaped {
            return Ok(None);
        }
        self.sample();
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our unreaped child; both pointers are valid for writes.
        let reaped = unsafe { libc::wait4(self.pid(), &mut status, libc::WNOHANG, &mut usage) };
        if reaped == self.pid() {
            self.reaped = true;
            return Ok(Some(Exited {
                success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                elapsed: self.started.elapsed(),
                cpu: crate::cpu::total(&usage),
                peak_rss_kib: self.hwm_polled_kib,
            }));
        }
        if reaped < 0 {
            bail!("wait4 failed: {}", std::io::Error::last_os_error());
        }
        Ok(None)
    }

    /// SIGKILL, and reap it.
    fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

/// A daemon the bench gave up on (an error on the way) is not left running.
impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The process's peak resident set so far, from `/proc/<pid>/status`; `None` until it runs
/// `binary`. Until its exec, a spawned child still shares the *bench's* memory (vfork), whose
/// high-water mark it would report.
fn vm_hwm_kib(pid: i32, binary: &Path) -> Option<u64> {
    // The kernel names a process after the first 15 bytes of the file it executes.
    let name = binary.file_name()?.as_encoded_bytes();
    let comm = std::fs::read(format!("/proc/{pid}/comm")).ok()?;
    if comm.strip_suffix(b"\n")? != &name[..name.len().min(15)] {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
