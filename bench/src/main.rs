//! `cargo run --release -p bench`: how fast the etl drains a backlog compared with the machine's
//! floor for the same work, how much memory it needs, and how quickly it commits a steady stream.
//!
//! One run, one table: generate a backlog; measure the floor (read + COPY/merge + rename) and
//! drain the same backlog with the real `etl run --drain` binary, on the same PostgreSQL server
//! with the same fresh schema (`--runs` times, back to back); then stream into a following
//! `etl run` and measure each file's latency to commit. `--json PATH` writes the same numbers.
//! `--broker` adds the same backlog and the same stream through `etl forward` → NATS JetStream →
//! two `etl run --source jetstream` replicas. `--http` pulls the backlog's card events from a
//! loopback API with `etl pull` (the HTTP API source). `--serve` load-tests the read API
//! (`etl serve`) with `wrk` while the daemon ingests the steady stream. `--instructions` counts
//! the drain's instructions per event file with callgrind, all valid and half invalid.

mod api;
mod broker;
mod cpu;
mod etl;
mod floor;
mod instructions;
mod report;
mod serve;
mod server;
mod stream;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use crate::broker::{Broker, BrokerRun, BrokerStream, DrainSpec, Topology};
use crate::etl::{Etl, Project};
use crate::report::{median, Backlog, Cost, Measured, Report, Run, Target};
use crate::server::{content_fingerprint, fingerprint, Fingerprint, Server};

/// Replicas of `etl run --source jetstream` in the broker phases.
const REPLICAS: usize = 2;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks the etl daemon against the machine's floor for the same work")]
struct Cli {
    /// Events in the backlog (users + card events + transactions). 1000000 checks memory on a
    /// large backlog.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// User events among them (ids 0..N); the rest, past `--transactions`, are card events with
    /// the producers' mix.
    #[arg(long, default_value_t = 1_000)]
    users: usize,
    /// Transaction events among them (the transactions example, installed as data into a scratch
    /// copy of the repository's types, schemas and migrations); 0 runs the repository's types.
    #[arg(long, default_value_t = 0)]
    transactions: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Floor + drain measurements of the same backlog, back to back (ratios are per run).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Skip the floor (e.g. for a memory check on a huge backlog).
    #[arg(long)]
    no_floor: bool,
    /// Events per second of the steady stream.
    #[arg(long, default_value_t = 1000.0)]
    stream_rate: f64,
    /// Duration of the steady stream; 0 skips it.
    #[arg(long, default_value_t = 30.0)]
    stream_secs: f64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Use this etl binary instead of building `target/release/etl`.
    #[arg(long)]
    etl: Option<PathBuf>,
    /// Also run the backlog (each run, after the direct drain) and the stream through the
    /// broker: `etl forward` → a private nats-server (JetStream) → 2 replicas of
    /// `etl run --source jetstream`.
    #[arg(long)]
    broker: bool,
    /// Also pull the backlog's card events from a loopback HTTP API (cursor pages) with
    /// `etl pull`, on a fresh database.
    #[arg(long)]
    http: bool,
    /// Also export the drained warehouse to a Parquet lake with `etl export` (each run), and
    /// report its time and peak RSS (`--events 1000000 --no-floor` for the memory figure).
    #[arg(long)]
    export: bool,
    /// Also load-test the read API: `etl serve` on a drained backlog answers point lookups of
    /// random existing card ids from `wrk` while the stream (`--stream-rate`, `--stream-secs`)
    /// is ingested by a following daemon on the same database.
    #[arg(long)]
    serve: bool,
    /// Also count the drain's instructions per event file with callgrind (valgrind), for a
    /// 10,000-file backlog with no invalid file and one with half of them invalid.
    #[arg(long)]
    instructions: bool,
    /// wrk's connections for `--serve` (below `serve_max_in_flight`, 256 by default).
    #[arg(long, default_value_t = 32)]
    serve_connections: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.events == 0 || cli.runs == 0 || cli.stream_rate <= 0.0 {
        bail!("--events, --runs and --stream-rate must be positive");
    }
    let bench = Bench::new(cli)?;
    let backlog = bench.generate()?;
    let mut runs = Vec::new();
    for i in 1..=bench.cli.runs {
        runs.push(bench.run(i)?);
    }
    if bench.cli.serve && bench.cli.stream_secs < 6.0 {
        bail!("--serve runs during the stream: give it --stream-secs 6 or more");
    }
    let (stream, broker_stream, serve) = if bench.cli.stream_secs > 0.0 {
        let files = bench.stream_files()?;
        let stream = bench.stream(&files)?;
        let broker_stream = if bench.cli.broker {
            Some(bench.broker_stream(&files)?)
        } else {
            None
        };
        let serve = if bench.cli.serve {
            Some(bench.serve(&files)?)
        } else {
            None
        };
        (Some(stream), broker_stream, serve)
    } else {
        (None, None, None)
    };
    let http = if bench.cli.http {
        Some(bench.http()?)
    } else {
        None
    };
    let instructions = if bench.cli.instructions {
        bench.instructions()?
    } else {
        Vec::new()
    };
    let broker_ratios: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.broker.as_ref().map(|b| b.ratio_to_direct))
        .collect();

    let report = Report {
        cores: bench.cores,
        postgres: bench.server.description.clone(),
        etl_settings: std::env::vars()
            .filter(|(k, _)| k.starts_with("ETL_"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        median_wall_ratio: median(runs.iter().filter_map(|r| r.wall_ratio).collect()),
        median_cpu_ratio: median(runs.iter().filter_map(|r| r.cpu_ratio).collect()),
        median_events_per_s: median(runs.iter().map(|r| r.events_per_s).collect()),
        targets: targets(
            &runs,
            stream.as_ref(),
            broker_stream.as_ref(),
            serve.as_ref(),
            bench.cli.events,
        ),
        broker: bench.nats_version.get().map(|version| {
            format!(
                "private {version} (JetStream, file store), same machine; \
                 etl forward -> stream EVENTS -> {REPLICAS} x etl run --source jetstream"
            )
        }),
        median_broker_ratio: (!broker_ratios.is_empty()).then(|| median(broker_ratios)),
        backlog,
        runs,
        stream,
        broker_stream,
        http,
        serve,
        instructions,
    };
    println!("{}", report.table());
    if let Some(serve) = &report.serve {
        println!("{}", serve.table());
    }
    if !report.instructions.is_empty() {
        println!("{}", instructions::table(&report.instructions));
    }
    if let Some(http) = &report.http {
        println!("{}", http.table(report.median_events_per_s));
    }
    if let Some(path) = &bench.cli.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

/// Everything the phases share.
struct Bench {
    cli: Cli,
    binary: PathBuf,
    server: Server,
    cores: usize,
    /// Threads the floor reads with: as many as the etl has readers.
    readers: usize,
    /// Holds the backlog, the data folders and the daemon's output; removed at the end.
    scratch: tempfile::TempDir,
    /// The event types the daemon is given: the repository's, or a scratch copy of them with
    /// the transactions example installed (`--transactions`).
    project: Project,
    /// What the first private nats-server said it is (`--broker`).
    nats_version: std::cell::OnceCell<String>,
}

impl Bench {
    fn new(cli: Cli) -> anyhow::Result<Bench> {
        let users = cli.users.min(cli.events);
        if cli.transactions > cli.events - users {
            bail!(
                "--transactions {} does not fit in --events {} with {users} users",
                cli.transactions,
                cli.events
            );
        }
        let binary = etl::binary(cli.etl.as_deref())?;
        let scratch = tempfile::tempdir().context("cannot create a temp dir")?;
        let project = if cli.transactions > 0 {
            Project::with_transactions(&scratch.path().join("project"))?
        } else {
            Project::repository()
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let server = Server::start()?;
        eprintln!("bench: {}", server.description);
        let readers = std::env::var("ETL_READERS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(cores);
        Ok(Bench {
            cli,
            binary,
            server,
            cores,
            readers,
            scratch,
            project,
            nats_version: std::cell::OnceCell::new(),
        })
    }

    /// The backlog holds transactions, so the warehouse has a third table to compare.
    fn has_transactions(&self) -> bool {
        self.cli.transactions > 0
    }

    fn data_dir(&self) -> PathBuf {
        self.scratch.path().join("data")
    }

    fn events_dir(&self) -> PathBuf {
        self.data_dir().join("events")
    }

    /// The daemon on `url` and `data_dir`, its output in the scratch folder.
    fn etl(&self, url: &str, data_dir: &Path) -> Etl {
        Etl {
            binary: self.binary.clone(),
            database_url: url.to_owned(),
            data_dir: data_dir.to_path_buf(),
            project: self.project.clone(),
            log: self.scratch.path().join("etl.out"),
            nats_url: None,
        }
    }

    /// A private nats-server for one broker phase (a fresh stream and consumer each time).
    fn broker(&self) -> anyhow::Result<Broker> {
        let broker = Broker::start()?;
        if self.nats_version.get().is_none() {
            let version = broker.version().unwrap_or_else(|| "nats-server".into());
            let _ = self.nats_version.set(version);
        }
        Ok(broker)
    }

    /// A forwarder on `forward_data` (its inbox is where the files are) and [`REPLICAS`]
    /// replicas, each with a data folder of its own under `root` (for its logs), all on the
    /// warehouse at `url` and the broker at `nats_url`.
    fn topology(
        &self,
        url: &str,
        nats_url: &str,
        forward_data: &Path,
        root: &Path,
    ) -> anyhow::Result<Topology> {
        std::fs::create_dir_all(root)?;
        let with = |data_dir: &Path, log: &str| Etl {
            log: root.join(log),
            nats_url: Some(nats_url.to_owned()),
            ..self.etl(url, data_dir)
        };
        let mut replicas = Vec::new();
        for r in 1..=REPLICAS {
            let data = root.join(format!("replica-{r}")).join("data");
            std::fs::create_dir_all(&data)?;
            replicas.push(with(&data, &format!("replica-{r}.out")));
        }
        Ok(Topology {
            forwarder: with(forward_data, "forward.out"),
            replicas,
        })
    }

    /// `--http`: the backlog's card events served by a loopback API and pulled by `etl pull`.
    fn http(&self) -> anyhow::Result<api::HttpRun> {
        eprintln!("bench: etl pull from a loopback API…");
        let items = api::card_items(&self.events_dir().join("inbox").join("cards"))?;
        let api = api::serve(&items)?;
        let db = self.server.fresh_database("http")?;
        let data = self.scratch.path().join("http").join("data");
        std::fs::create_dir_all(&data)?;
        let etl = Etl {
            log: self.scratch.path().join("http.out"),
            ..self.etl(&db.url, &data)
        };
        api::pull(&etl, &api.url(), items.len())
    }

    /// Writes the backlog into the inbox, as the producers would have.
    fn generate(&self) -> anyhow::Result<Backlog> {
        let (events, users) = (self.cli.events, self.cli.users.min(self.cli.events));
        let transactions = self.cli.transactions;
        let card_events = events - users - transactions;
        eprintln!("bench: generating {events} events…");
        let started = Instant::now();
        let inbox = self.events_dir().join("inbox");
        services::generate_backlog_with(
            &inbox,
            &services::BacklogSpec {
                users,
                card_events,
                transaction_events: transactions,
                seed: self.cli.seed,
            },
        )?;
        let folders: &[&str] = if transactions > 0 {
            &["users", "cards", "transactions"]
        } else {
            &["users", "cards"]
        };
        for folder in folders {
            std::fs::create_dir_all(self.events_dir().join("done").join(folder))?;
        }
        Ok(Backlog {
            events,
            users,
            card_events,
            transaction_events: transactions,
            generate_s: started.elapsed().as_secs_f64(),
        })
    }

    /// `--instructions`: the counted drains, all valid then half invalid, each on a fresh
    /// database and a backlog of its own.
    fn instructions(&self) -> anyhow::Result<Vec<instructions::Count>> {
        let mut counts = Vec::new();
        for (label, spoil) in [("valid", false), ("half-invalid", true)] {
            eprintln!("bench: counting instructions ({label})…");
            let data = self.scratch.path().join(format!("instructions-{label}"));
            let events = data.join("events");
            services::generate_backlog_with(
                &events.join("inbox"),
                &services::BacklogSpec {
                    users: 100,
                    card_events: 9_900,
                    transaction_events: 0,
                    seed: 5,
                },
            )?;
            let spoiled = instructions::prepare(&events.join("inbox"), spoil)?;
            let db = self.server.fresh_database("instructions")?;
            let mut etl = self.etl(&db.url, &data);
            etl.project = crate::etl::Project::repository();
            etl.migrate()?;
            counts.push(instructions::count(&etl, &events, spoiled)?);
        }
        Ok(counts)
    }

    /// The floor, then a drain of the same backlog, each on a fresh database.
    fn run(&self, i: usize) -> anyhow::Result<Run> {
        let floor = if self.cli.no_floor {
            None
        } else {
            eprintln!("bench: run {i}: floor…");
            let db = self.server.fresh_database("floor")?;
            self.etl(&db.url, &self.data_dir()).migrate()?;
            let before = self.server.cpu();
            let floor = floor::measure(&self.events_dir(), &db.url, self.readers)?;
            let server_cpu = self.server.cpu_since(before, &db);
            floor::restore(&self.events_dir())?;
            Some((
                floor,
                server_cpu,
                fingerprint(&db.url, self.has_transactions())?,
            ))
        };

        eprintln!("bench: run {i}: etl run --drain…");
        let db = self.server.fresh_database("etl")?;
        let etl = self.etl(&db.url, &self.data_dir());
        etl.migrate()?;
        let before = self.server.cpu();
        let limit = Duration::from_secs(300 + self.cli.events as u64 / 500);
        let exited = etl.spawn(true)?.wait(limit)?;
        if !exited.success {
            bail!("etl run --drain failed:\n{}", etl.log_tail());
        }
        let server_cpu = self.server.cpu_since(before, &db);
        let tables = fingerprint(&db.url, self.has_transactions())?;
        if self.cli.export {
            self.export(i, &etl, tables.events.rows)?;
        }
        // What the broker drain must reproduce (it names its events' origin differently).
        let content = if self.cli.broker {
            Some(content_fingerprint(&db.url, self.has_transactions())?)
        } else {
            None
        };
        drop(db);
        let restored = floor::restore(&self.events_dir())?;
        let events = self.cli.events;
        // Every file is in done/ or (the producer's ownerless cards) in failed/, and done/ holds
        // exactly the committed events; that they are the floor's valid set is checked by
        // comparing the tables.
        if restored.done + restored.failed != events || tables.events.rows != restored.done as u64 {
            bail!(
                "the drain left {} files in done/, {} in failed/ and {} rows in events, for {events} files:\n{}",
                restored.done,
                restored.failed,
                tables.events.rows,
                etl.log_tail()
            );
        }
        let etl = Measured {
            wall: exited.elapsed,
            own_cpu: exited.cpu,
            server_cpu,
        };
        let mut run = Run::new(floor, etl, exited.peak_rss_kib, events, tables);
        if let Some(content) = content {
            run.broker = Some(self.broker_drain(i, &run.etl, &content, restored.failed)?);
        }
        Ok(run)
    }

    /// `etl export` of the warehouse the drain just loaded: every table's snapshot and the whole
    /// raw zone, into a scratch lake; prints its wall time, rate and peak RSS.
    fn export(&self, i: usize, etl: &Etl, raw_rows: u64) -> anyhow::Result<()> {
        let lake = self.scratch.path().join(format!("lake-run{i}"));
        let lake_arg = lake.to_string_lossy().into_owned();
        eprintln!("bench: run {i}: etl export --format parquet…");
        let exited = etl
            .spawn_with(&["export", "--format", "parquet", "--to", &lake_arg])?
            .wait(Duration::from_secs(600))?;
        if !exited.success {
            bail!("etl export failed:\n{}", etl.log_tail());
        }
        let secs = exited.elapsed.as_secs_f64();
        println!(
            "lake export (run {i}): {raw_rows} raw events + the current tables in {secs:.2} s \
             ({:.0} raw events/s), CPU {:.2} s, peak RSS {:.1} MiB",
            raw_rows as f64 / secs.max(1e-9),
            exited.cpu.as_secs_f64(),
            exited.peak_rss_kib as f64 / 1024.0
        );
        std::fs::remove_dir_all(&lake).ok();
        Ok(())
    }

    /// The backlog the direct drain just loaded, through forwarder → JetStream → replicas, on a
    /// fresh database and a fresh broker; compared with the direct drain (`direct`, its tables
    /// `direct_tables` and the `direct_failed` files it rejected).
    fn broker_drain(
        &self,
        i: usize,
        direct: &Cost,
        direct_tables: &Fingerprint,
        direct_failed: usize,
    ) -> anyhow::Result<BrokerRun> {
        eprintln!(
            "bench: run {i}: etl forward --drain -> JetStream -> {REPLICAS} x etl run --source jetstream…"
        );
        let broker = self.broker()?;
        let db = self.server.fresh_database("broker")?;
        let root = self.scratch.path().join(format!("broker-run{i}"));
        let topology = self.topology(&db.url, &broker.url(), &self.data_dir(), &root)?;
        topology.replicas[0].migrate()?;
        let (postgres_before, nats_before) = (self.server.cpu(), broker.cpu());
        let events = self.cli.events;
        let drained = broker::drain(
            &topology,
            &broker,
            &DrainSpec {
                events_dir: &self.events_dir(),
                database_url: &db.url,
                events,
                limit: Duration::from_secs(300 + events as u64 / 250),
            },
        )?;
        let nats_cpu = broker
            .cpu()
            .zip(nats_before)
            .map(|(after, before)| after.saturating_sub(before).as_secs_f64());
        let postgres_cpu = self
            .server
            .cpu_since(postgres_before, &db)
            .map(|d| d.as_secs_f64());
        let tables = content_fingerprint(&db.url, self.has_transactions())?;
        let restored = floor::restore(&self.events_dir())?;
        if restored.done != drained.published
            || restored.failed != drained.failed
            || drained.failed != direct_failed
        {
            bail!(
                "the broker drain left {} files in done/ and {} in failed/ (the forwarder counted {} and {}; the direct drain rejected {direct_failed})",
                restored.done,
                restored.failed,
                drained.published,
                drained.failed
            );
        }
        let etl_cpu =
            drained.forwarder.cpu + drained.replicas.iter().map(|r| r.cpu).sum::<Duration>();
        let etl_cpu_s = etl_cpu.as_secs_f64();
        let cpu_s = postgres_cpu.map(|pg| etl_cpu_s + pg + nats_cpu.unwrap_or(0.0));
        let wall_s = drained.wall.as_secs_f64();
        let mib = |kib: u64| kib as f64 / 1024.0;
        Ok(BrokerRun {
            replicas: REPLICAS,
            wall_s,
            forwarder_s: drained.forwarder.elapsed.as_secs_f64(),
            events_per_s: events as f64 / wall_s,
            ratio_to_direct: direct.wall_s / wall_s,
            etl_cpu_s,
            postgres_cpu_s: postgres_cpu,
            nats_cpu_s: nats_cpu,
            cpu_s,
            cpu_ratio_to_direct: direct.cpu_s.zip(cpu_s).map(|(d, b)| d / b),
            forwarder_peak_rss_mib: mib(drained.forwarder.peak_rss_kib),
            replica_peak_rss_mib: drained
                .replicas
                .iter()
                .map(|r| mib(r.peak_rss_kib))
                .fold(0.0, f64::max),
            published: drained.published,
            failed: drained.failed,
            tables_match_direct: tables == *direct_tables,
            tables,
        })
    }

    /// The stream's files (the same for the direct and the broker stream), in memory.
    fn stream_files(&self) -> anyhow::Result<Vec<stream::File>> {
        stream::files(
            &self.scratch.path().join("stream").join("staging"),
            self.cli.stream_rate,
            self.cli.stream_secs,
            self.cli.users,
            // Transactions in the backlog's proportion.
            self.cli.transactions as f64 / self.cli.events as f64,
            self.cli.seed + 1,
        )
    }

    /// A steady stream into a following daemon with its own database and data folder.
    fn stream(&self, files: &[stream::File]) -> anyhow::Result<stream::Stream> {
        let (rate, secs) = (self.cli.stream_rate, self.cli.stream_secs);
        eprintln!("bench: streaming {rate} events/s for {secs} s into a following etl…");
        let db = self.server.fresh_database("stream")?;
        let root = self.scratch.path().join("stream");
        std::fs::create_dir_all(&root)?;
        let etl = self.etl(&db.url, &root.join("data"));
        etl.migrate()?;
        stream::run(&etl, files, rate, secs)
    }

    /// `--serve`: the backlog drained into a fresh database, then `etl serve` on it under wrk
    /// while a following daemon ingests the stream into the same database.
    fn serve(&self, files: &[stream::File]) -> anyhow::Result<serve::ServeRun> {
        eprintln!(
            "bench: etl serve under wrk while streaming {} events/s…",
            self.cli.stream_rate
        );
        let db = self.server.fresh_database("serve")?;
        let etl = self.etl(&db.url, &self.data_dir());
        etl.migrate()?;
        let limit = Duration::from_secs(300 + self.cli.events as u64 / 500);
        if !etl.spawn(true)?.wait(limit)?.success {
            bail!("etl run --drain failed:\n{}", etl.log_tail());
        }
        floor::restore(&self.events_dir())?;
        let root = self.scratch.path().join("serve");
        std::fs::create_dir_all(root.join("data"))?;
        let follower = Etl {
            log: root.join("follow.out"),
            ..self.etl(&db.url, &root.join("data"))
        };
        let server = Etl {
            log: root.join("serve.out"),
            ..self.etl(&db.url, &root.join("data"))
        };
        serve::run(&serve::Spec {
            follower: &follower,
            server: &server,
            files,
            rate: self.cli.stream_rate,
            secs: self.cli.stream_secs,
            connections: self.cli.serve_connections,
            scratch: &root,
        })
    }

    /// The same stream into a following forwarder, through a fresh broker to following replicas,
    /// on a database of its own.
    fn broker_stream(&self, files: &[stream::File]) -> anyhow::Result<BrokerStream> {
        let (rate, secs) = (self.cli.stream_rate, self.cli.stream_secs);
        eprintln!(
            "bench: streaming {rate} events/s for {secs} s into etl forward -> JetStream -> {REPLICAS} x etl run --source jetstream…"
        );
        let broker = self.broker()?;
        let db = self.server.fresh_database("broker_stream")?;
        let root = self.scratch.path().join("broker-stream");
        let forward = root.join("forward");
        std::fs::create_dir_all(&forward)?;
        let topology = self.topology(&db.url, &broker.url(), &forward.join("data"), &root)?;
        topology.replicas[0].migrate()?;
        broker::stream(&topology, &broker, files, rate, secs)
    }
}

/// The targets, judged on this run's numbers.
fn targets(
    runs: &[Run],
    stream: Option<&stream::Stream>,
    broker_stream: Option<&BrokerStream>,
    serve: Option<&serve::ServeRun>,
    events: usize,
) -> Vec<Target> {
    let mut targets = Vec::new();
    let wall = median(runs.iter().filter_map(|r| r.wall_ratio).collect());
    let cpu = median(runs.iter().filter_map(|r| r.cpu_ratio).collect());
    if !wall.is_nan() {
        // Judged on the stricter of the two ratios.
        let worst = if cpu.is_nan() { wall } else { wall.min(cpu) };
        targets.push(Target {
            name: "drain vs floor (floor/etl)".into(),
            target: ">= 0.60".into(),
            measured: format!("wall {wall:.2}, cpu {cpu:.2}"),
            met: worst >= 0.6,
        });
    }
    let etl_s = median(runs.iter().map(|r| r.etl.wall_s).collect());
    if events == 100_000 {
        targets.push(Target {
            name: "100,000 events drained".into(),
            target: "<= 5 s".into(),
            measured: format!("{etl_s:.2} s (median)"),
            met: etl_s <= 5.0,
        });
    }
    let rss = runs.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
    targets.push(Target {
        name: format!("drain peak RSS ({events} files)"),
        target: "<= 64 MiB".into(),
        measured: format!("{rss:.1} MiB"),
        met: rss <= 64.0,
    });
    if runs.iter().any(|r| r.tables_match_floor.is_some()) {
        let same = runs.iter().all(|r| r.tables_match_floor != Some(false));
        targets.push(Target {
            name: "etl tables == floor tables".into(),
            target: "identical".into(),
            measured: if same { "identical" } else { "DIFFER" }.into(),
            met: same,
        });
    }
    if let Some(s) = stream {
        targets.push(Target {
            name: format!("stream {:.0}/s p99 file->commit", s.rate_per_s),
            target: "<= 50 ms".into(),
            measured: format!("{:.1} ms (done/ arrival)", s.done_p99_ms),
            met: s.done_p99_ms <= 50.0 && s.committed == s.sent,
        });
    }
    let broker: Vec<&BrokerRun> = runs.iter().filter_map(|r| r.broker.as_ref()).collect();
    if !broker.is_empty() {
        let ratio = median(broker.iter().map(|b| b.ratio_to_direct).collect());
        targets.push(Target {
            name: "broker drain / direct drain".into(),
            target: ">= 0.50".into(),
            measured: format!("{ratio:.2} (events/s)"),
            met: ratio >= 0.5,
        });
        let same = broker.iter().all(|b| b.tables_match_direct);
        targets.push(Target {
            name: "broker tables == direct tables".into(),
            target: "identical".into(),
            measured: if same { "identical" } else { "DIFFER" }.into(),
            met: same,
        });
    }
    if let Some(s) = broker_stream {
        targets.push(Target {
            name: format!("broker {:.0}/s p99 file->commit", s.rate_per_s),
            target: "<= 100 ms".into(),
            measured: format!("{:.1} ms (row visible)", s.visible_p99_ms),
            met: s.visible_p99_ms <= 100.0 && s.committed == s.sent,
        });
    }
    if let Some(s) = serve {
        targets.push(Target {
            name: "read API point lookups (200/s, p99)".into(),
            target: ">= 10000/s, <= 10 ms".into(),
            measured: format!(
                "{:.0}/s, p99 {:.1} ms ({} status >= 400, {} errors, {} timeouts)",
                s.ok_per_s, s.p99_ms, s.not_ok, s.socket_errors, s.timeouts
            ),
            met: s.ok_per_s >= 10_000.0 && s.p99_ms <= 10.0,
        });
        targets.push(Target {
            name: format!("stream {:.0}/s p99 during the lookups", s.stream_rate_per_s),
            target: "<= 50 ms".into(),
            measured: format!("{:.1} ms (done/ arrival)", s.stream_done_p99_ms),
            met: s.stream_done_p99_ms <= 50.0 && s.stream_committed == s.stream_sent,
        });
    }
    targets
}
