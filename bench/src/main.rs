//! `cargo run --release -p bench`: how fast the etl drains a backlog compared with the machine's
//! floor for the same work, how much memory it needs, and how quickly it commits a steady stream.
//!
//! One run, one table: generate a backlog; measure the floor (read + COPY/merge + rename) and
//! drain the same backlog with the real `etl run --drain` binary, on the same PostgreSQL server
//! with the same fresh schema (`--runs` times, back to back); then stream into a following
//! `etl run` and measure each file's latency to commit. `--json PATH` writes the same numbers.

mod cpu;
mod etl;
mod floor;
mod report;
mod server;
mod stream;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use crate::etl::{Etl, Project};
use crate::report::{median, Backlog, Measured, Report, Run, Target};
use crate::server::{fingerprint, Server};

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
    let stream = if bench.cli.stream_secs > 0.0 {
        Some(bench.stream()?)
    } else {
        None
    };

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
        targets: targets(&runs, stream.as_ref(), bench.cli.events),
        backlog,
        runs,
        stream,
    };
    println!("{}", report.table());
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
        }
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
        Ok(Run::new(floor, etl, exited.peak_rss_kib, events, tables))
    }

    /// A steady stream into a following daemon with its own database and data folder.
    fn stream(&self) -> anyhow::Result<stream::Stream> {
        let (rate, secs) = (self.cli.stream_rate, self.cli.stream_secs);
        eprintln!("bench: streaming {rate} events/s for {secs} s into a following etl…");
        let db = self.server.fresh_database("stream")?;
        let root = self.scratch.path().join("stream");
        std::fs::create_dir_all(&root)?;
        let etl = self.etl(&db.url, &root.join("data"));
        etl.migrate()?;
        let staging = root.join("staging");
        stream::run(
            &etl,
            &staging,
            rate,
            secs,
            self.cli.users,
            // Transactions in the backlog's proportion.
            self.cli.transactions as f64 / self.cli.events as f64,
            self.cli.seed + 1,
        )
    }
}

/// The targets, judged on this run's numbers.
fn targets(runs: &[Run], stream: Option<&stream::Stream>, events: usize) -> Vec<Target> {
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
    targets
}
