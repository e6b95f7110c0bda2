//! Throwaway PostgreSQL clusters and fresh databases for the tests and the benchmark.
//!
//! Integration tests and benchmarks in this workspace need a real server: the
//! code under test relies on PostgreSQL semantics (upserts, constraints,
//! `LISTEN`/`NOTIFY`, ...) that a mock cannot reproduce. This module provides:
//!
//! * [`fresh_db`]: a new, uniquely named, empty database on a shared server,
//!   dropped again when the returned [`TestDb`] goes out of scope. Tests get
//!   isolation without paying for a server per test.
//! * [`Cluster`]: a private server the test fully controls, e.g. to stop it
//!   and simulate an outage, then start it again on the same port and data dir.
//! * [`Cluster::start_with`]: the same with TLS (a certificate from [`TestCa`])
//!   and/or roles that must log in with a password, to test what a trusting
//!   server cannot show (wrong password, certificate checks).
//! * [`psql`]: run SQL through the `psql` client, for setup and assertions.
//!
//! # Which server?
//!
//! If `DATABASE_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/postgres`)
//! the shared server is that one; it must let that role create and drop
//! databases, and be PostgreSQL 13+ (for `DROP DATABASE ... WITH (FORCE)`).
//! Otherwise the first call to [`fresh_db`] or [`server_url`] in a process
//! starts a throwaway [`Cluster`] that lives as long as the process.
//! [`Cluster::start`] always starts a private server, whatever `DATABASE_URL`
//! says, so it needs the server binaries in both cases.
//!
//! Binaries are found by looking for `initdb` on `PATH`, then in the highest
//! version of `/usr/lib/postgresql/*/bin` (Debian/Ubuntu do not put `initdb`
//! on `PATH`).
//!
//! # Why `psql` and not a Rust client?
//!
//! [`fresh_db`] must be synchronous and yet callable from inside
//! `#[tokio::test]`: the sync `postgres` crate and `block_on` both panic when
//! run inside a Tokio runtime. Shelling out to `psql` (always installed with
//! PostgreSQL) is blocking but runtime-agnostic, and keeps the kit's
//! dependencies minimal.
//!
//! # Cleanup
//!
//! Every cluster gets a small watchdog process (a `sh` loop in its own
//! process group, so a Ctrl-C of the test run does not kill it) that stops
//! the server and deletes its directory once the test process is gone, even if
//! it aborted or was killed. This matters for the shared cluster in particular:
//! it lives in a `static`, whose destructor never runs.
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root. When the tests run as root (e.g. in a
//! container), the cluster directory is created under `/tmp`, handed to the
//! `postgres` user, and every server command runs as `runuser -u postgres --`.
//!
//! # Example
//!
//! ```no_run
//! let db = testkit::pg::fresh_db();
//! testkit::pg::psql(&db.url, "CREATE TABLE t (id int)").unwrap();
//! assert_eq!(testkit::pg::psql(&db.url, "SELECT count(*) FROM t").unwrap(), "0");
//! // `db` is dropped here, and with it the database.
//! ```

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::ports::free_port;
use crate::process::Watchdog;

pub mod tls;
pub use tls::{ServerCert, TestCa};

/// Settings appended to `postgresql.conf`. Durability is pointless for a
/// throwaway cluster, so it is traded for speed; connections are raised
/// because tests run in parallel, each with its own pool.
const SETTINGS: &str = "
# added by pgtest
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
";

/// How a private cluster is started (see [`Cluster::start_with`]); the default is what
/// [`Cluster::start`] does: no TLS, every local connection trusted.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Serve TLS (`ssl = on`) with this certificate and key (see [`tls::TestCa`]).
    pub tls: Option<ServerCert>,
    /// Every role but `postgres` must log in over TCP with its password (scram-sha-256), and
    /// over TLS when `tls` is set (`hostssl`). `postgres` stays trusted so that the harness and
    /// the test can still administer the cluster without a password.
    pub password_auth: bool,
}

/// How long to wait for the server to start or stop.
const SERVER_TIMEOUT_SECS: u64 = 60;

/// The shared server behind [`fresh_db`] when `DATABASE_URL` is unset. Holds
/// the error message instead if starting failed, so every test reports the
/// same cause instead of each trying (and failing) to start its own server.
static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// A database created by [`fresh_db`]; dropped (forcefully, disconnecting any
/// remaining sessions) when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// Connection URL of this database.
    pub url: String,
    /// Name of the database (`t_<uuid>`).
    pub name: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Errors are ignored: a leftover database is harmless, it goes away
        // with the throwaway cluster, and panicking in drop would abort.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = psql(&server_url(), &sql);
    }
}

/// Creates a new, empty, uniquely named database on the shared server.
///
/// Synchronous and safe to call from async tests (see the module docs).
///
/// # Panics
///
/// If the shared server cannot be started or the database cannot be created;
/// this is a test harness, a clear panic is the most useful report.
pub fn fresh_db() -> TestDb {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = server_url();
    if let Err(e) = psql(&admin, &format!("CREATE DATABASE \"{name}\"")) {
        panic!("testkit::pg: could not create test database {name} on {admin}: {e:#}");
    }
    TestDb {
        url: url_for_db(&name),
        name,
    }
}

/// Admin URL (database `postgres`, or whatever `DATABASE_URL` names) of the
/// shared server, starting it on first use if `DATABASE_URL` is not set.
///
/// # Panics
///
/// If the shared server cannot be started; the message includes the reason
/// (and the server log, if the server itself failed).
pub fn server_url() -> String {
    if let Some(url) = database_url() {
        return url;
    }
    match SHARED.get_or_init(|| Cluster::start().map_err(|e| format!("{e:#}"))) {
        Ok(cluster) => cluster.url(),
        Err(e) => panic!("testkit::pg: could not start the shared PostgreSQL test cluster: {e}"),
    }
}

/// URL of database `name` on the shared server: [`server_url`] with the
/// database replaced. `name` is inserted verbatim, so it must not need
/// percent-encoding (names from [`fresh_db`] never do).
pub fn url_for_db(name: &str) -> String {
    with_dbname(&server_url(), name)
}

/// Runs `sql` with `psql` against `url` and returns its output, unaligned and
/// without headers (`-At`), with the final newline removed: a single value
/// comes back as e.g. `"1"`, rows as lines with `|`-separated columns.
///
/// Fails (with psql's error message) on connection or SQL errors; several
/// `;`-separated statements stop at the first error (`ON_ERROR_STOP`).
pub fn psql(url: &str, sql: &str) -> Result<String> {
    let mut cmd = Command::new(psql_path());
    cmd.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]);
    cmd.arg("-d").arg(url).arg("-c").arg(sql);
    let out = run(&mut cmd, "psql")?;
    let mut stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if stdout.ends_with('\n') {
        stdout.pop();
    }
    Ok(stdout)
}

/// A private PostgreSQL cluster in its own temporary directory, listening on
/// `127.0.0.1` on a port chosen when it is created, with trust authentication
/// for user `postgres`.
///
/// Dropping it stops the server (`-m immediate`) and deletes the directory;
/// a watchdog process does the same if the test process dies first.
#[derive(Debug)]
pub struct Cluster {
    /// Temp dir holding `data/` (the cluster), the sockets and `server.log`.
    dir: PathBuf,
    /// Directory of `initdb`, `pg_ctl` and `pg_isready`.
    bin: PathBuf,
    port: u16,
    /// Whether server commands must run as the `postgres` user (we are root).
    as_postgres: bool,
    watchdog: Option<Watchdog>,
}

impl Cluster {
    /// Creates (`initdb`) and starts a new cluster on a free port, and waits
    /// until it accepts connections.
    pub fn start() -> Result<Cluster> {
        Cluster::start_with(&Options::default())
    }

    /// [`Cluster::start`] with TLS and/or password authentication (see [`Options`]).
    pub fn start_with(options: &Options) -> Result<Cluster> {
        let bin = bin_dir()?;
        let as_postgres = is_root();
        // Under /tmp rather than $TMPDIR: the `postgres` user must be able to
        // reach it, and socket paths are limited to ~100 bytes.
        let dir = PathBuf::from(format!("/tmp/pgtest-{}", uuid::Uuid::new_v4().simple()));
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        // From here on, dropping `cluster` (e.g. on an error) cleans up.
        let mut cluster = Cluster {
            dir,
            bin,
            port: 0,
            as_postgres,
            watchdog: None,
        };
        // The umask may have removed bits that `postgres` needs.
        fs::set_permissions(&cluster.dir, fs::Permissions::from_mode(0o755))?;
        if as_postgres {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(&cluster.dir, Some(uid), Some(gid))
                .with_context(|| format!("chown postgres {}", cluster.dir.display()))?;
        }
        cluster.watchdog = Some(cluster.spawn_watchdog()?);

        let data = cluster.data_dir();
        let mut initdb = cluster.server_cmd("initdb");
        // --no-locale/UTF8: independent of the caller's (possibly missing)
        // locale; -N: skip fsync of the new files, we don't need durability.
        initdb.arg("-D").arg(&data);
        initdb.args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "-N",
        ]);
        run(&mut initdb, "initdb")?;

        let socket_dir = cluster.dir.display().to_string().replace('\'', "''");
        let mut settings = format!("{SETTINGS}unix_socket_directories = '{socket_dir}'\n");
        if let Some(cert) = &options.tls {
            // Relative paths are relative to the data dir; the key must be private to the server.
            cluster.write_server_file("server.crt", &cert.cert_pem, 0o644)?;
            cluster.write_server_file("server.key", &cert.key_pem, 0o600)?;
            settings
                .push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        if options.password_auth {
            let host = if options.tls.is_some() {
                "hostssl"
            } else {
                "host"
            };
            let hba = format!(
                "# written by pgtest: postgres is trusted, every other role needs its password\n\
                 local all all trust\n\
                 host all postgres 127.0.0.1/32 trust\n\
                 host all postgres ::1/128 trust\n\
                 {host} all all 127.0.0.1/32 scram-sha-256\n\
                 {host} all all ::1/128 scram-sha-256\n"
            );
            cluster.write_server_file("pg_hba.conf", &hba, 0o600)?;
            settings.push_str("password_encryption = 'scram-sha-256'\n");
        }
        append(&data.join("postgresql.conf"), &settings)?;

        // The free port may be taken by someone else before the server binds
        // it; in that case, try another one.
        // (A later `port` line in postgresql.conf overrides earlier ones.)
        let mut attempts = 0;
        loop {
            attempts += 1;
            cluster.port = free_port();
            append(
                &data.join("postgresql.conf"),
                &format!("port = {}\n", cluster.port),
            )?;
            let _ = fs::remove_file(cluster.log_path());
            match cluster.start_again() {
                Ok(()) => return Ok(cluster),
                Err(_) if attempts < 5 && cluster.log().contains("already in use") => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// URL of the `postgres` database, as user `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// TCP port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server with a fast shutdown (disconnects clients, aborts
    /// their transactions, writes a checkpoint) and waits until it is down.
    /// Use it to simulate an outage.
    pub fn stop(&self) -> Result<()> {
        let mut cmd = self.pg_ctl("stop");
        cmd.args(["-m", "fast"]);
        run(&mut cmd, "pg_ctl stop").map(drop)
    }

    /// Starts the (stopped) server again with the same data dir and port, and
    /// waits until it accepts connections.
    pub fn start_again(&self) -> Result<()> {
        let mut cmd = self.pg_ctl("start");
        cmd.arg("-l").arg(self.log_path());
        // Own process group: a Ctrl-C of the test run must not reach the
        // server; the watchdog shuts it down in an orderly way.
        cmd.process_group(0);
        run(&mut cmd, "pg_ctl start").map_err(|e| self.with_log(e))?;
        self.wait_ready().map_err(|e| self.with_log(e))
    }

    /// Writes `name` into the data dir with `mode`, owned by the server's user.
    fn write_server_file(&self, name: &str, text: &str, mode: u32) -> Result<()> {
        let path = self.data_dir().join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        if self.as_postgres {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .with_context(|| format!("chown postgres {}", path.display()))?;
        }
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The end of the server log, for error messages.
    fn log(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn with_log(&self, e: anyhow::Error) -> anyhow::Error {
        anyhow!(
            "{e:#}\n--- server log ({}) ---\n{}",
            self.log_path().display(),
            self.log()
        )
    }

    /// A command running server binary `prog`, as `postgres` if needed.
    fn server_cmd(&self, prog: &str) -> Command {
        let exe = self.bin.join(prog);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new(runuser_path());
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        };
        // `postgres` may not be allowed into the caller's working directory.
        cmd.current_dir(&self.dir);
        cmd
    }

    fn pg_ctl(&self, action: &str) -> Command {
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.arg("-D").arg(self.data_dir());
        cmd.args(["-w", "-t", &SERVER_TIMEOUT_SECS.to_string(), "-s", action]);
        cmd
    }

    /// `pg_ctl -w` already waits for the postmaster to report ready; this
    /// double-checks over TCP, which is how the tests will connect.
    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(SERVER_TIMEOUT_SECS);
        let port = self.port.to_string();
        loop {
            let status = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                ])
                .stdin(Stdio::null())
                .status()
                .context("running pg_isready")?;
            if status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("server on port {port} not ready after {SERVER_TIMEOUT_SECS}s");
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Spawns the process that cleans up after us if we die without running
    /// `Drop`: it stops the server and deletes the dir.
    fn spawn_watchdog(&self) -> Result<Watchdog> {
        let as_user = if self.as_postgres {
            format!("'{}' -u postgres -- ", runuser_path().display())
        } else {
            String::new()
        };
        let cleanup = format!(
            "{as_user}\"$2\" -D \"$3\" -s stop -m immediate >/dev/null 2>&1; rm -rf \"$4\""
        );
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let args = [pg_ctl.as_os_str(), data.as_os_str(), self.dir.as_os_str()];
        Watchdog::spawn("pgtest-watchdog", &cleanup, &args)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = self.pg_ctl("stop");
        stop.args(["-m", "immediate"]);
        // Errors ignored: the server may be stopped already, or never started.
        let _ = run(&mut stop, "pg_ctl stop");
        let _ = fs::remove_dir_all(&self.dir);
        // The server is gone: the watchdog has nothing left to do.
        drop(self.watchdog.take());
    }
}

/// `DATABASE_URL`, if set and non-empty.
fn database_url() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// Replaces the database of a `postgres://` URL (keeping any `?params`), or
/// appends `dbname=` to a `key=value` connection string.
fn with_dbname(base: &str, name: &str) -> String {
    let Some(scheme_end) = base.find("://") else {
        return format!("{base} dbname={name}");
    };
    let (head, query) = base.split_at(base.find('?').unwrap_or(base.len()));
    let authority = scheme_end + 3;
    let path = head[authority..]
        .find('/')
        .map_or(head.len(), |i| authority + i);
    format!("{}/{name}{query}", &head[..path])
}

/// Runs `cmd` (stdin from /dev/null) and fails with its output if it fails.
fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {what}: {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            String::from_utf8_lossy(&out.stdout).trim_end(),
        );
    }
    Ok(out)
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("appending to {}", path.display()))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// uid and gid of the `postgres` user.
fn postgres_ids() -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = run(Command::new("id").args([flag, "postgres"]), "id postgres")
            .context("running as root needs a `postgres` user to run the server as")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .with_context(|| format!("unexpected output of `id {flag} postgres`: {text:?}"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// The first executable `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Directory holding the server binaries: that of `initdb` on `PATH`
/// (following symlinks, to find its `pg_ctl` next to it), else the highest
/// `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> Result<PathBuf> {
    if let Some(initdb) = which("initdb") {
        let initdb = fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = initdb.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    let version =
        |name: &str| -> Vec<u32> { name.split('.').map_while(|p| p.parse().ok()).collect() };
    fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| (version(&entry.file_name().to_string_lossy()), entry.path().join("bin")))
        .filter(|(v, bin)| !v.is_empty() && bin.join("initdb").is_file())
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(|| {
            anyhow!("PostgreSQL server binaries not found: no initdb on PATH or in /usr/lib/postgresql/*/bin")
        })
}

/// `psql`, preferably next to the server binaries (a native binary of the
/// matching version, where `/usr/bin/psql` on Debian is a Perl wrapper).
fn psql_path() -> &'static Path {
    static PSQL: OnceLock<PathBuf> = OnceLock::new();
    PSQL.get_or_init(|| {
        bin_dir()
            .ok()
            .map(|dir| dir.join("psql"))
            .filter(|p| p.is_file())
            .or_else(|| which("psql"))
            .unwrap_or_else(|| "psql".into())
    })
}

/// `runuser` is in `/usr/sbin`, which may not be on a test's `PATH`.
fn runuser_path() -> PathBuf {
    which("runuser").unwrap_or_else(|| "/usr/sbin/runuser".into())
}

#[cfg(test)]
mod tests {
    use super::with_dbname;

    #[test]
    fn replaces_database_in_urls() {
        let cases = [
            ("postgres://u@h:1/postgres", "postgres://u@h:1/x"),
            ("postgres://u@h:1", "postgres://u@h:1/x"),
            ("postgres://u@h:1/", "postgres://u@h:1/x"),
            (
                "postgresql://u:p@h/db?sslmode=disable",
                "postgresql://u:p@h/x?sslmode=disable",
            ),
            (
                "postgres://u@h?sslmode=disable",
                "postgres://u@h/x?sslmode=disable",
            ),
            ("host=h user=u", "host=h user=u dbname=x"),
        ];
        for (base, want) in cases {
            assert_eq!(with_dbname(base, "x"), want, "base: {base}");
        }
    }
}
