//! The broker topology (`--broker`): `etl forward` publishes the inbox to NATS JetStream, two
//! `etl run --source jetstream` replicas load the stream into PostgreSQL. All of it on this
//! machine: the broker, the forwarder, the replicas and PostgreSQL share its cores.
//!
//! - [`drain`]: the backlog the direct drain just loaded, restored into the forwarder's inbox,
//!   end to end: from starting the three processes until the warehouse holds every valid event
//!   and the consumer has nothing left (pending or unacknowledged).
//! - [`stream`]: the steady stream, written into the forwarder's inbox. A file in `done/` only
//!   means that the broker has stored it, so commit time is bracketed from the warehouse's side:
//!   the first poll that sees the row (upper bound) and `events.ingested_at` (lower bound).
//!
//! Each phase gets a private `nats-server` of its own (`testkit::nats`, JetStream file
//! store in a temporary directory), hence a fresh stream and consumer.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use uuid::Uuid;

use crate::etl::{Etl, Exited, Running};
use crate::stream::{self, Arrivals, File, Percentiles};

/// The stream and the durable consumer the daemon creates (its defaults).
const STREAM: &str = "EVENTS";
const CONSUMER: &str = "etl";

/// How often the stream phase asks the warehouse which of the written events it holds.
const VISIBLE_POLL: Duration = Duration::from_millis(5);

/// A private nats-server with JetStream.
pub struct Broker {
    server: testkit::nats::Server,
    /// Its process, for its CPU time (read from the pid file the harness configures).
    pid: Option<i32>,
}

impl Broker {
    pub fn start() -> anyhow::Result<Broker> {
        // The harness panics when the server cannot start (its message has the server's log).
        let server = std::panic::catch_unwind(testkit::nats::Server::start)
            .map_err(|_| anyhow::anyhow!("cannot start a private nats-server (see above)"))?;
        // The harness writes `nats-server.pid` next to the store directory.
        let pid = server
            .store_dir()
            .parent()
            .and_then(|dir| std::fs::read_to_string(dir.join("nats-server.pid")).ok())
            .and_then(|pid| pid.trim().parse().ok());
        Ok(Broker { server, pid })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// CPU time the server has used so far.
    pub fn cpu(&self) -> Option<Duration> {
        crate::cpu::process(self.pid?)
    }

    /// `nats-server vX.Y.Z`, from the binary the server runs.
    pub fn version(&self) -> Option<String> {
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid?)).ok()?;
        let out = std::process::Command::new(exe)
            .arg("--version")
            .output()
            .ok()?;
        // "nats-server: v2.9.10"
        let version = String::from_utf8_lossy(&out.stdout)
            .trim()
            .replacen(": ", " ", 1);
        (!version.is_empty()).then_some(version)
    }

    /// The consumer has delivered everything in the stream and every delivery is acknowledged.
    fn settled(&self) -> bool {
        self.server
            .consumer(STREAM, CONSUMER)
            .is_some_and(|c| c.num_pending == 0 && c.num_ack_pending == 0)
    }
}

/// A forwarder and its replicas, each with its own data folder and log.
pub struct Topology {
    pub forwarder: Etl,
    pub replicas: Vec<Etl>,
}

/// The running processes of a [`Topology`].
struct Started {
    forwarder: Option<Running>,
    replicas: Vec<Running>,
}

impl Topology {
    /// Starts the replicas and the forwarder (`--drain`: it exits once its inbox is empty).
    fn start(&self, drain: bool) -> anyhow::Result<Started> {
        let mut replicas = Vec::new();
        for replica in &self.replicas {
            replicas.push(replica.spawn_with(&["run", "--source", "jetstream"])?);
        }
        let args: &[&str] = if drain {
            &["forward", "--drain"]
        } else {
            &["forward"]
        };
        Ok(Started {
            forwarder: Some(self.forwarder.spawn_with(args)?),
            replicas,
        })
    }

    /// The end of every process's log, for a failure message.
    fn logs(&self) -> String {
        let mut logs = format!("--- forwarder ---\n{}", self.forwarder.log_tail());
        for (i, replica) in self.replicas.iter().enumerate() {
            logs.push_str(&format!(
                "\n--- replica {} ---\n{}",
                i + 1,
                replica.log_tail()
            ));
        }
        logs
    }
}

impl Started {
    /// SIGTERM to every process still running, then waits for each.
    fn stop(mut self) -> anyhow::Result<(Option<Exited>, Vec<Exited>)> {
        // The peak memory of each while it still runs (a process that exits fast on SIGTERM is
        // a zombie, without a VmHWM, by the time it is waited for).
        for running in self.forwarder.iter_mut().chain(&mut self.replicas) {
            running.sample();
        }
        for running in self.forwarder.iter().chain(&self.replicas) {
            running.terminate();
        }
        let limit = Duration::from_secs(60);
        let forwarder = self.forwarder.take().map(|f| f.wait(limit)).transpose()?;
        let replicas = self
            .replicas
            .into_iter()
            .map(|r| r.wait(limit))
            .collect::<anyhow::Result<_>>()?;
        Ok((forwarder, replicas))
    }

    /// Fails if a replica has exited (they only stop when told to).
    fn check_replicas(&mut self, topology: &Topology) -> anyhow::Result<()> {
        for (i, replica) in self.replicas.iter_mut().enumerate() {
            if let Some(exited) = replica.try_wait()? {
                bail!(
                    "replica {} exited on its own (success: {}):\n{}",
                    i + 1,
                    exited.success,
                    topology.logs()
                );
            }
        }
        Ok(())
    }
}

/// One backlog through forwarder → JetStream → replicas.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BrokerRun {
    pub replicas: usize,
    /// From starting the forwarder and the replicas until the warehouse holds every valid event
    /// and the consumer has nothing pending or unacknowledged.
    pub wall_s: f64,
    /// Until the forwarder had every file published and moved (it exits then).
    pub forwarder_s: f64,
    /// Backlog files / wall: the same measure as the direct drain's events/s.
    pub events_per_s: f64,
    /// broker events/s / direct events/s of the same run (direct wall / broker wall).
    pub ratio_to_direct: f64,
    /// CPU of the forwarder and the replicas (wait4).
    pub etl_cpu_s: f64,
    /// CPU of the PostgreSQL backends (as for the direct drain).
    pub postgres_cpu_s: Option<f64>,
    /// CPU of the nats-server process.
    pub nats_cpu_s: Option<f64>,
    /// All of it: etl + PostgreSQL + nats-server.
    pub cpu_s: Option<f64>,
    /// direct drain CPU / broker CPU (both sides of every socket).
    pub cpu_ratio_to_direct: Option<f64>,
    pub forwarder_peak_rss_mib: f64,
    /// The larger of the replicas' peaks.
    pub replica_peak_rss_mib: f64,
    /// Files the forwarder moved to `done/` (published) and to `failed/` (invalid).
    pub published: usize,
    pub failed: usize,
    /// The warehouse is the direct drain's, `events.source_file` aside (see
    /// [`crate::server::content_fingerprint`]).
    pub tables_match_direct: bool,
    pub tables: crate::server::Fingerprint,
}

/// What [`drain`] needs from the run it belongs to.
pub struct DrainSpec<'a> {
    /// Where the backlog's inbox, `done/` and `failed/` are: the forwarder's data folder.
    pub events_dir: &'a Path,
    pub database_url: &'a str,
    pub events: usize,
    /// Seconds before giving up.
    pub limit: Duration,
}

/// What [`drain`] measured, before it is compared with the direct drain.
pub struct Drained {
    pub wall: Duration,
    pub forwarder: Exited,
    pub replicas: Vec<Exited>,
    pub published: usize,
    pub failed: usize,
}

/// Drains the backlog in `spec.events_dir`'s inbox through `topology` on `broker`: the end is
/// the first moment the forwarder has exited and the consumer is settled (nothing pending,
/// nothing unacknowledged). Stops the replicas then, and checks that the warehouse holds every
/// published event.
pub fn drain(topology: &Topology, broker: &Broker, spec: &DrainSpec) -> anyhow::Result<Drained> {
    let t0 = Instant::now();
    let mut started = topology.start(true)?;
    let mut forwarded: Option<(Exited, usize, usize)> = None;
    let wall = loop {
        if t0.elapsed() > spec.limit {
            let _ = started.stop();
            bail!(
                "the broker drain did not finish within {:?}:\n{}",
                spec.limit,
                topology.logs()
            );
        }
        started.check_replicas(topology)?;
        if forwarded.is_none() {
            if let Some(exited) = started.forwarder.as_mut().map(Running::try_wait) {
                if let Some(exited) = exited? {
                    if !exited.success {
                        bail!("etl forward --drain failed:\n{}", topology.logs());
                    }
                    let published = count_files(&spec.events_dir.join("done"), false)?;
                    let failed = count_files(&spec.events_dir.join("failed"), true)?;
                    if published + failed != spec.events {
                        bail!(
                            "the forwarder left {published} files in done/ and {failed} in failed/, for {} files:\n{}",
                            spec.events,
                            topology.logs()
                        );
                    }
                    started.forwarder = None;
                    forwarded = Some((exited, published, failed));
                    continue;
                }
            }
        } else if broker.settled() {
            // Everything is in the stream (the forwarder has exited), every message was delivered
            // and acknowledged, and a replica acknowledges only after the commit: the work is
            // over, as it is when the direct drain exits. (Asked of the broker's monitoring port:
            // polling the warehouse would take CPU from the replicas.)
            break t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (_, replicas) = started.stop()?;
    if replicas.iter().any(|r| !r.success) {
        bail!("a replica failed to stop cleanly:\n{}", topology.logs());
    }
    let (forwarder, published, failed) = forwarded.expect("the loop ends after the forwarder");
    // A message also leaves the consumer when it is dead-lettered: every one must have loaded.
    let loaded: usize =
        testkit::pg::psql(spec.database_url, "SELECT count(*) FROM events")?.parse()?;
    let dead: usize =
        testkit::pg::psql(spec.database_url, "SELECT count(*) FROM rejected_events")?.parse()?;
    if loaded != published || dead != 0 {
        bail!(
            "the forwarder published {published} events; the warehouse holds {loaded}, and {dead} were dead-lettered:\n{}",
            topology.logs()
        );
    }
    Ok(Drained {
        wall,
        forwarder,
        replicas,
        published,
        failed,
    })
}

/// Event files in the type folders of `dir`, day folders included (reason files aside when
/// `failed`).
fn count_files(dir: &Path, failed: bool) -> anyhow::Result<usize> {
    let mut n = 0;
    for folder in ["users", "cards", "transactions"] {
        for (_, name) in crate::floor::finished_files(&dir.join(folder))? {
            let reason = failed && name.to_string_lossy().ends_with(".error.json");
            if !reason {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// A steady stream through the broker.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BrokerStream {
    pub replicas: usize,
    pub rate_per_s: f64,
    pub secs: f64,
    pub sent: usize,
    /// Events the warehouse held before the bench gave up waiting.
    pub committed: usize,
    pub achieved_rate_per_s: f64,
    /// File renamed into the inbox → file in `done/`: the broker has stored it (not a commit).
    pub broker_ack_p50_ms: f64,
    pub broker_ack_p99_ms: f64,
    pub broker_ack_max_ms: f64,
    /// File renamed into the inbox → the first poll of the warehouse that sees its row: an upper
    /// bound of its commit (the headline number). Polls every `poll_ms`.
    pub visible_p50_ms: f64,
    pub visible_p99_ms: f64,
    pub visible_max_ms: f64,
    pub poll_ms: f64,
    /// File renamed into the inbox → start of the transaction that inserted it (lower bound).
    pub tx_start_p50_ms: f64,
    pub tx_start_p99_ms: f64,
    pub tx_start_max_ms: f64,
    /// CPU the forwarder, the replicas together and the nats-server used, warm-up and stop
    /// included.
    pub forwarder_cpu_s: f64,
    pub replicas_cpu_s: f64,
    pub nats_cpu_s: Option<f64>,
    pub forwarder_peak_rss_mib: f64,
    pub replica_peak_rss_mib: f64,
}

/// Starts `topology` in follow mode on `broker`, writes `files` into the forwarder's inbox paced
/// at `rate`, and measures each file's latency to its commit.
pub fn stream(
    topology: &Topology,
    broker: &Broker,
    files: &[File],
    rate: f64,
    secs: f64,
) -> anyhow::Result<BrokerStream> {
    let folders = stream::folders(files);
    let events = topology.forwarder.data_dir.join("events");
    stream::create_folders(&events, folders)?;
    let database_url = &topology.forwarder.database_url;
    // Warm-up, as for the direct stream: the first file is committed before the clock starts,
    // so the forwarder, the replicas, the stream and the consumer are all up.
    let (first, rest) = files.split_first().context("empty stream")?;
    let acked = Arrivals::watch(&events.join("done"), folders)?;
    let visible = Visible::start(database_url)?;
    stream::write_atomically(&events, first)?;
    visible.expect(first.event_id);
    let nats_before = broker.cpu();
    let started = topology.start(false)?;
    let warm_up = Instant::now();
    while !visible.contains(first.event_id) {
        if warm_up.elapsed() > Duration::from_secs(60) {
            let _ = started.stop();
            bail!(
                "the broker topology did not commit a file within 60 s:\n{}",
                topology.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    let (written, writing) =
        stream::pace(&events, rest, rate, |file| visible.expect(file.event_id))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while visible.len() < files.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let nats_cpu = broker
        .cpu()
        .zip(nats_before)
        .map(|(after, before)| after.saturating_sub(before).as_secs_f64());
    let (forwarder, replicas) = started.stop()?;
    let arrived = acked.finish()?;
    let seen = visible.finish()?;
    let mut acked_ms = stream::arrival_latencies(rest, &written, &arrived);
    let mut visible_ms: Vec<f64> = rest
        .iter()
        .zip(&written)
        .filter_map(|(f, w)| {
            let at = seen.get(&f.event_id)?;
            let written_s = w.wall.duration_since(SystemTime::UNIX_EPOCH).ok()?;
            Some((at - written_s.as_secs_f64()) * 1e3)
        })
        .collect();
    let mut tx_ms = stream::tx_start_latencies(database_url, rest, &written)?;
    let acked = Percentiles::of(&mut acked_ms);
    let vis = Percentiles::of(&mut visible_ms);
    let tx = Percentiles::of(&mut tx_ms);
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(BrokerStream {
        replicas: topology.replicas.len(),
        rate_per_s: rate,
        secs,
        sent: rest.len(),
        committed: visible_ms.len(),
        achieved_rate_per_s: rest.len() as f64 / writing.as_secs_f64(),
        broker_ack_p50_ms: acked.p50,
        broker_ack_p99_ms: acked.p99,
        broker_ack_max_ms: acked.max,
        visible_p50_ms: vis.p50,
        visible_p99_ms: vis.p99,
        visible_max_ms: vis.max,
        poll_ms: VISIBLE_POLL.as_secs_f64() * 1e3,
        tx_start_p50_ms: tx.p50,
        tx_start_p99_ms: tx.p99,
        tx_start_max_ms: tx.max,
        forwarder_cpu_s: forwarder.map_or(0.0, |f| f.cpu.as_secs_f64()),
        replicas_cpu_s: replicas.iter().map(|r| r.cpu.as_secs_f64()).sum(),
        nats_cpu_s: nats_cpu,
        forwarder_peak_rss_mib: forwarder.map_or(0.0, |f| mib(f.peak_rss_kib)),
        replica_peak_rss_mib: replicas
            .iter()
            .map(|r| mib(r.peak_rss_kib))
            .fold(0.0, f64::max),
    })
}

/// When each expected event first became visible in the warehouse, as seen by a thread that
/// polls for the events written and not yet seen, every [`VISIBLE_POLL`], on a connection of
/// its own: `SELECT … WHERE event_id = ANY(…)` on the primary key, stamped with the server's
/// `clock_timestamp()`, which is read after the statement's snapshot was taken. A row in that
/// snapshot was committed before it, so the stamp is an upper bound of the commit, late by at
/// most one poll interval plus the query.
struct Visible {
    expected: mpsc::Sender<Uuid>,
    /// Event id → seconds since the epoch (the server's clock, which is this machine's).
    seen: Arc<Mutex<HashMap<Uuid, f64>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Visible {
    fn start(url: &str) -> anyhow::Result<Visible> {
        let (expected, ids) = mpsc::channel::<Uuid>();
        let (ready_tx, ready) = mpsc::channel::<anyhow::Result<()>>();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let url = url.to_owned();
        let thread = std::thread::Builder::new()
            .name("bench-visible-poller".into())
            .spawn({
                let (seen, stop) = (seen.clone(), stop.clone());
                move || {
                    let runtime = crate::floor::runtime()?;
                    runtime.block_on(async {
                        let connected = tokio_postgres::connect(&url, tokio_postgres::NoTls).await;
                        let client = match connected {
                            Ok((client, connection)) => {
                                tokio::spawn(connection);
                                let _ = ready_tx.send(Ok(()));
                                client
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.into()));
                                return Ok(());
                            }
                        };
                        let query = client
                            .prepare(
                                "SELECT event_id, extract(epoch FROM clock_timestamp())::float8
                                 FROM events WHERE event_id = ANY($1)",
                            )
                            .await?;
                        let mut pending: Vec<Uuid> = Vec::new();
                        loop {
                            // Once told to stop, one last look for what is still expected.
                            let last = stop.load(Ordering::Relaxed);
                            pending.extend(ids.try_iter());
                            if !pending.is_empty() {
                                let rows = client.query(&query, &[&pending]).await?;
                                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                                for row in rows {
                                    seen.entry(row.get(0)).or_insert(row.get(1));
                                }
                                pending.retain(|id| !seen.contains_key(id));
                            }
                            if last {
                                return Ok(());
                            }
                            tokio::time::sleep(VISIBLE_POLL).await;
                        }
                    })
                }
            })?;
        ready
            .recv()
            .context("the warehouse poller ended before connecting")??;
        Ok(Visible {
            expected,
            seen,
            stop,
            thread,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, f64>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Look for this event from now on.
    fn expect(&self, id: Uuid) {
        let _ = self.expected.send(id);
    }

    fn contains(&self, id: Uuid) -> bool {
        self.lock().contains_key(&id)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn finish(self) -> anyhow::Result<HashMap<Uuid, f64>> {
        let Visible {
            seen, stop, thread, ..
        } = self;
        stop.store(true, Ordering::Relaxed);
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the warehouse poller panicked"))??;
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        Ok(std::mem::take(&mut *seen))
    }
}

#[cfg(test)]
mod tests {
    use super::count_files;

    #[test]
    fn counts_event_files_but_not_reason_files_nor_dotfiles() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (folder, names) in [
            ("users", &["a.json", ".b.json.tmp"][..]),
            ("cards", &["c.json", "c.json.error.json"][..]),
            ("cards/2026-11-23", &["d.json"][..]),
        ] {
            std::fs::create_dir_all(dir.path().join(folder)).expect("mkdir");
            for name in names {
                std::fs::write(dir.path().join(folder).join(name), "{}").expect("write");
            }
        }
        assert_eq!(count_files(dir.path(), true).expect("count"), 3);
        // In done/ there are no reason files: a name ending so is an event file.
        assert_eq!(count_files(dir.path(), false).expect("count"), 4);
    }
}
