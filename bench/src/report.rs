//! The benchmark's result: one table on stdout, the same data as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::broker::{BrokerRun, BrokerStream};
use crate::floor::Floor;
use crate::server::Fingerprint;
use crate::stream::Stream;

#[derive(Debug, Serialize)]
pub struct Report {
    pub cores: usize,
    pub postgres: String,
    /// `ETL_*` variables passed through to the daemon (its defaults otherwise).
    pub etl_settings: Vec<String>,
    pub backlog: Backlog,
    pub runs: Vec<Run>,
    /// Medians of the runs' ratios (each ratio is floor and etl from the same run).
    pub median_wall_ratio: f64,
    pub median_cpu_ratio: f64,
    pub median_events_per_s: f64,
    pub stream: Option<Stream>,
    /// The broker phases (`--broker`): what the broker is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// Median of the runs' broker/direct events/s ratios.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_broker_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_stream: Option<BrokerStream>,
    /// The backlog's cards pulled from a loopback API (`--http`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::api::HttpRun>,
    /// The read API under load while the stream is ingested (`--serve`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serve: Option<crate::serve::ServeRun>,
    /// Instructions per event file, all valid and half invalid (`--instructions`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instructions: Vec<crate::instructions::Count>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Serialize)]
pub struct Backlog {
    pub events: usize,
    pub users: usize,
    pub card_events: usize,
    /// Transaction events (the transactions example, `--transactions`); 0 by default.
    pub transaction_events: usize,
    pub generate_s: f64,
}

/// Wall and CPU time of one piece of work.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub wall: Duration,
    /// CPU of the process doing it (the bench for the floor, the etl for the drain).
    pub own_cpu: Duration,
    /// CPU of the PostgreSQL backends serving it; `None` if the server is not on this machine.
    pub server_cpu: Option<Duration>,
}

/// The same, for the report.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Cost {
    pub wall_s: f64,
    pub own_cpu_s: f64,
    pub server_cpu_s: Option<f64>,
    /// own + server: the CPU the work took on this machine.
    pub cpu_s: Option<f64>,
}

impl From<Measured> for Cost {
    fn from(m: Measured) -> Cost {
        let server = m.server_cpu.map(|d| d.as_secs_f64());
        Cost {
            wall_s: m.wall.as_secs_f64(),
            own_cpu_s: m.own_cpu.as_secs_f64(),
            server_cpu_s: server,
            cpu_s: server.map(|s| s + m.own_cpu.as_secs_f64()),
        }
    }
}

/// One floor measurement and one drain of the same backlog, back to back.
#[derive(Debug, Serialize)]
pub struct Run {
    /// The floor's steps (wall time of each, back to back).
    pub floor_steps: Option<Floor>,
    pub floor: Option<Cost>,
    pub etl: Cost,
    pub events_per_s: f64,
    /// floor wall time / etl wall time: 1.0 means the etl is as fast as the floor.
    pub wall_ratio: Option<f64>,
    /// floor CPU / etl CPU (both sides of the socket): robust to a busy machine.
    pub cpu_ratio: Option<f64>,
    pub peak_rss_mib: f64,
    /// The etl's tables are identical to the floor's (same rows, same winners).
    pub tables_match_floor: Option<bool>,
    pub etl_tables: Fingerprint,
    pub floor_tables: Option<Fingerprint>,
    /// The same backlog through forwarder → JetStream → replicas (`--broker`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerRun>,
}

impl Run {
    pub fn new(
        floor: Option<(Floor, Option<Duration>, Fingerprint)>,
        etl: Measured,
        peak_rss_kib: u64,
        events: usize,
        tables: Fingerprint,
    ) -> Run {
        let etl = Cost::from(etl);
        let floor_cost = floor.as_ref().map(|(f, server, _)| {
            Cost::from(Measured {
                wall: Duration::from_secs_f64(f.total_s),
                own_cpu: Duration::from_secs_f64(f.own_cpu_s),
                server_cpu: *server,
            })
        });
        Run {
            wall_ratio: floor_cost.map(|f| f.wall_s / etl.wall_s),
            cpu_ratio: floor_cost.and_then(|f| Some(f.cpu_s? / etl.cpu_s?)),
            tables_match_floor: floor.as_ref().map(|(_, _, fp)| *fp == tables),
            floor_tables: floor.as_ref().map(|(_, _, fp)| fp.clone()),
            floor_steps: floor.map(|(f, _, _)| f),
            floor: floor_cost,
            events_per_s: events as f64 / etl.wall_s,
            etl,
            peak_rss_mib: peak_rss_kib as f64 / 1024.0,
            etl_tables: tables,
            broker: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

impl Report {
    pub fn table(&self) -> String {
        let mut t = String::new();
        let b = &self.backlog;
        let _ = writeln!(t, "\n== etl benchmark ({} cores) ==", self.cores);
        let _ = writeln!(t, "PostgreSQL : {}", self.postgres);
        let settings = if self.etl_settings.is_empty() {
            "defaults".to_owned()
        } else {
            self.etl_settings.join(" ")
        };
        let _ = writeln!(t, "etl config : {settings}");
        // Transactions only when there are any: the default line reads as it always did.
        let transactions = if b.transaction_events > 0 {
            format!(", {} transaction events", b.transaction_events)
        } else {
            String::new()
        };
        let _ = writeln!(
            t,
            "backlog    : {} events ({} users, {} card events{transactions}), generated in {:.1} s\n",
            b.events, b.users, b.card_events, b.generate_s
        );
        let _ = writeln!(
            t,
            "{:<4} {:>26} | {:>7} {:>7} | {:>8} {:>8} | {:>9} {:>9} | {:>9} {:>6}",
            "run",
            "floor read+copy+rename s",
            "floor s",
            "cpu s",
            "etl s",
            "cpu s",
            "events/s",
            "ratio w/c",
            "peak RSS",
            "tables"
        );
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
        for (i, run) in self.runs.iter().enumerate() {
            let steps = run.floor_steps.map_or("-".to_owned(), |f| {
                format!("{:.2}+{:.2}+{:.2}", f.read_s, f.copy_merge_s, f.rename_s)
            });
            let _ = writeln!(
                t,
                "{:<4} {:>26} | {:>7} {:>7} | {:>8.2} {:>8} | {:>9.0} {:>9} | {:>5.1} MiB {:>6}",
                i + 1,
                steps,
                opt(run.floor.map(|f| f.wall_s), 2),
                opt(run.floor.and_then(|f| f.cpu_s), 2),
                run.etl.wall_s,
                opt(run.etl.cpu_s, 2),
                run.events_per_s,
                format!("{}/{}", opt(run.wall_ratio, 2), opt(run.cpu_ratio, 2)),
                run.peak_rss_mib,
                match run.tables_match_floor {
                    Some(true) => "same",
                    Some(false) => "DIFFER",
                    None => "-",
                }
            );
        }
        let _ = writeln!(
            t,
            "median: ratio wall {:.2}, cpu {:.2}; {:.0} events/s",
            self.median_wall_ratio, self.median_cpu_ratio, self.median_events_per_s
        );
        let _ = writeln!(
            t,
            "(cpu = the process's user+sys CPU plus the PostgreSQL backends' CPU for the same work;\n \
             the floor's steps run back to back, the etl overlaps them on all cores)"
        );
        if let Some(broker) = &self.broker {
            self.broker_runs(&mut t, broker);
        }
        if let Some(s) = &self.stream {
            let _ = writeln!(
                t,
                "\nstream     : {:.0} events/s for {:.0} s (written at {:.0}/s), {}/{} committed, follow-mode peak RSS {:.1} MiB",
                s.rate_per_s, s.secs, s.achieved_rate_per_s, s.committed, s.sent, s.peak_rss_mib
            );
            let _ = writeln!(
                t,
                "  file in inbox -> file in done/ (after commit) : p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
                s.done_p50_ms, s.done_p99_ms, s.done_max_ms
            );
            let _ = writeln!(
                t,
                "  file in inbox -> its transaction's start      : p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
                s.tx_start_p50_ms, s.tx_start_p99_ms, s.tx_start_max_ms
            );
        }
        if let Some(s) = &self.broker_stream {
            let _ = writeln!(
                t,
                "\nbroker stream: {:.0} events/s for {:.0} s (written at {:.0}/s) into etl forward -> {} replicas, {}/{} committed, peak RSS forwarder {:.1} MiB, replica {:.1} MiB",
                s.rate_per_s,
                s.secs,
                s.achieved_rate_per_s,
                s.replicas,
                s.committed,
                s.sent,
                s.forwarder_peak_rss_mib,
                s.replica_peak_rss_mib
            );
            let _ = writeln!(
                t,
                "  cpu over the stream: forwarder {:.2} s, replicas {:.2} s, nats-server {} s",
                s.forwarder_cpu_s,
                s.replicas_cpu_s,
                s.nats_cpu_s.map_or("-".to_owned(), |c| format!("{c:.2}"))
            );
            let _ = writeln!(
                t,
                "  file in inbox -> file in done/ (broker ack)   : p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
                s.broker_ack_p50_ms, s.broker_ack_p99_ms, s.broker_ack_max_ms
            );
            let _ = writeln!(
                t,
                "  file in inbox -> row visible (after commit)   : p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
                s.visible_p50_ms, s.visible_p99_ms, s.visible_max_ms
            );
            let _ = writeln!(
                t,
                "  file in inbox -> its transaction's start      : p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
                s.tx_start_p50_ms, s.tx_start_p99_ms, s.tx_start_max_ms
            );
            let _ = writeln!(
                t,
                "  (row visible: the first poll of the warehouse, every {:.0} ms, whose snapshot holds the row;\n   \
                 the commit lies between the transaction's start and it. done/ here means the broker stored it)",
                s.poll_ms
            );
        }
        let _ = writeln!(
            t,
            "\n{:<34} {:<16} {:<22} met",
            "target", "goal", "measured"
        );
        for target in &self.targets {
            let _ = writeln!(
                t,
                "{:<34} {:<16} {:<22} {}",
                target.name,
                target.target,
                target.measured,
                if target.met { "yes" } else { "NO" }
            );
        }
        t
    }
}

impl Report {
    /// The broker drain of each run, next to that run's direct drain.
    fn broker_runs(&self, t: &mut String, broker: &str) {
        let _ = writeln!(t, "\nbroker     : {broker}");
        let _ = writeln!(
            t,
            "{:<4} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>9} {:>10} | {:>9} {:>11} {:>6}",
            "run",
            "broker s",
            "fwd s",
            "etl cpu",
            "pg cpu",
            "nats cpu",
            "cpu s",
            "events/s",
            "vs direct",
            "fwd RSS",
            "replica RSS",
            "tables"
        );
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
        for (i, run) in self.runs.iter().enumerate() {
            let Some(b) = &run.broker else { continue };
            let _ = writeln!(
                t,
                "{:<4} {:>8.2} {:>8.2} | {:>8.2} {:>8} {:>8} {:>8} | {:>9.0} {:>10} | {:>5.1} MiB {:>7.1} MiB {:>6}",
                i + 1,
                b.wall_s,
                b.forwarder_s,
                b.etl_cpu_s,
                opt(b.postgres_cpu_s, 2),
                opt(b.nats_cpu_s, 2),
                opt(b.cpu_s, 2),
                b.events_per_s,
                format!(
                    "{:.2}/{}",
                    b.ratio_to_direct,
                    opt(b.cpu_ratio_to_direct, 2)
                ),
                b.forwarder_peak_rss_mib,
                b.replica_peak_rss_mib,
                if b.tables_match_direct {
                    "same"
                } else {
                    "DIFFER"
                }
            );
        }
        if let Some(ratio) = self.median_broker_ratio {
            let _ = writeln!(t, "median: broker/direct events/s {ratio:.2}");
        }
        let _ = writeln!(
            t,
            "(broker s: from starting the forwarder and the replicas until the warehouse holds every\n \
             valid event and the consumer has nothing pending or unacknowledged; fwd s: until the\n \
             forwarder had published everything; vs direct w/c: direct drain / broker drain, wall and\n \
             CPU; cpu = forwarder + replicas + PostgreSQL backends + nats-server; tables: the direct\n \
             drain's, events.source_file aside)"
        );
    }
}

/// The median of a non-empty sample (NaN for an empty one).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
