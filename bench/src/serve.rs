//! `--serve`: the read API (`etl serve`) under a real HTTP load generator while the daemon
//! ingests a steady stream: point lookups of card ids that exist, answers counted by status.
//!
//! The load generator is `wrk` (Debian's package, installed by the bench when missing: `oha` is
//! not packaged and building it costs minutes on this machine) with a Lua script that picks a
//! random existing id per request from requests formatted once. It sets no `response` callback:
//! that makes wrk hand every answer's headers and body to Lua, which cost a third of the rate on
//! two cores. Answers with a status of 400 or more (503 beyond the cap; every id exists, so no
//! 404 is expected), socket errors and timeouts are wrk's own counters, reported apart; only the
//! rest, the 200s, count in the rate.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::etl::Etl;
use crate::stream::{self, Arrivals, Percentiles};

/// What the load test measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ServeRun {
    pub secs: f64,
    pub connections: usize,
    pub ids: usize,
    /// Answers by status; only `ok` counts in the rate.
    pub ok: u64,
    /// Answers with a status of 400 or more (503 beyond the cap, or anything else).
    pub not_ok: u64,
    pub socket_errors: u64,
    pub timeouts: u64,
    pub ok_per_s: f64,
    /// Latency of every completed request (wrk's histogram), in ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The stream ingested meanwhile.
    pub stream_rate_per_s: f64,
    pub stream_sent: usize,
    pub stream_committed: usize,
    pub stream_done_p99_ms: f64,
    pub stream_tx_start_p99_ms: f64,
}

impl ServeRun {
    pub fn table(&self) -> String {
        format!(
            "serve      : etl serve, {} s of wrk ({} connections) on random ids of {} cards, while streaming {:.0} events/s\n\
             \x20 200/s {:.0}  (200: {}, status >= 400 (503 or other): {}, socket errors: {}, timeouts: {})\n\
             \x20 latency (all answers) : p50 {:.2} ms  p99 {:.2} ms  max {:.1} ms\n\
             \x20 ingestion meanwhile   : {}/{} committed, p99 file->done/ {:.1} ms, p99 file->tx start {:.1} ms",
            self.secs,
            self.connections,
            self.ids,
            self.stream_rate_per_s,
            self.ok_per_s,
            self.ok,
            self.not_ok,
            self.socket_errors,
            self.timeouts,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.stream_committed,
            self.stream_sent,
            self.stream_done_p99_ms,
            self.stream_tx_start_p99_ms,
        )
    }
}

/// The wrk script: a random existing id per request, answers counted by status, and one JSON
/// line with the counts and the latency percentiles (µs) at the end.
const SCRIPT: &str = r#"
function init(args)
  reqs = {}
  for line in io.lines(args[1]) do
    reqs[#reqs + 1] = wrk.format("GET", "/api/v1/cards/" .. line)
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
  return reqs[math.random(#reqs)]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"not_2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, e.status, e.connect, e.read, e.write, e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"#;

/// `wrk` on PATH, installed from Debian's archive when missing.
fn wrk() -> anyhow::Result<()> {
    let present = || {
        Command::new("sh")
            .args(["-c", "command -v wrk"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present() {
        return Ok(());
    }
    eprintln!("bench: installing wrk (apt-get)…");
    let status = Command::new("sh")
        .args([
            "-c",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null \
             || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)",
        ])
        .status()?;
    if !status.success() || !present() {
        bail!("--serve needs wrk (apt-get install wrk)");
    }
    Ok(())
}

/// Whether `etl serve` on `addr` answers (its OpenAPI document, with 200).
fn answers(addr: &str) -> bool {
    testkit::http::try_get(addr, "/api/v1/openapi.json").is_some_and(|(code, _)| code == 200)
}

pub struct Spec<'a> {
    /// The daemon that drained the backlog into the database (its data folder holds the
    /// stream's following daemon's folders too).
    pub follower: &'a Etl,
    pub server: &'a Etl,
    pub files: &'a [stream::File],
    pub rate: f64,
    pub secs: f64,
    pub connections: usize,
    pub scratch: &'a Path,
}

/// Streams `files` at `rate` into a following daemon while `etl serve` answers wrk's point
/// lookups for `secs - 4` seconds in the middle of the stream.
pub fn run(spec: &Spec) -> anyhow::Result<ServeRun> {
    wrk()?;
    let ids_file = spec.scratch.join("card-ids.txt");
    let ids = testkit::pg::psql(&spec.follower.database_url, "SELECT id FROM cards")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let count = ids.lines().count();
    if count == 0 {
        bail!("no cards to look up");
    }
    std::fs::write(&ids_file, format!("{ids}\n"))?;
    let script = spec.scratch.join("lookups.lua");
    std::fs::write(&script, SCRIPT)?;

    let addr = testkit::ports::free_addr();
    let serving = spec.server.spawn_with(&["serve", "--listen", &addr])?;
    let started = Instant::now();
    while !answers(&addr) {
        if started.elapsed() > Duration::from_secs(60) {
            serving.terminate();
            bail!("etl serve did not start: {}", spec.server.log_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // The stream, as `stream::run` writes it, into a following daemon.
    let folders = stream::folders(spec.files);
    let events = spec.follower.data_dir.join("events");
    stream::create_folders(&events, folders)?;
    let (first, rest) = spec.files.split_first().context("empty stream")?;
    let watcher = Arrivals::watch(&events.join("done"), folders)?;
    stream::write_atomically(&events, first)?;
    let following = spec.follower.spawn(false)?;
    let started = Instant::now();
    while !watcher.contains(&first.name) {
        if started.elapsed() > Duration::from_secs(60) {
            following.terminate();
            serving.terminate();
            bail!(
                "the following etl did not start: {}",
                spec.follower.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let load_secs = (spec.secs - 4.0).max(1.0);
    let wrk = {
        let (script, ids_file) = (script.clone(), ids_file.clone());
        let url = format!("http://{addr}");
        let connections = spec.connections;
        std::thread::spawn(move || {
            // The stream settles for 2 s first.
            std::thread::sleep(Duration::from_secs(2));
            Command::new("wrk")
                .args(["-t", "2", "-c", &connections.to_string()])
                .args(["-d", &format!("{}s", load_secs.round() as u64)])
                .args(["--timeout", "2s", "-s"])
                .arg(&script)
                .arg(&url)
                .arg("--")
                .arg(&ids_file)
                .output()
        })
    };
    let (written, _) = stream::pace(&events, rest, spec.rate, |_| {})?;
    let out = wrk
        .join()
        .map_err(|_| anyhow::anyhow!("the wrk thread panicked"))?
        .context("cannot run wrk")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while watcher.len() < spec.files.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    following.terminate();
    serving.terminate();
    following.wait(Duration::from_secs(60))?;
    serving.wait(Duration::from_secs(30))?;
    let arrived = watcher.finish()?;
    let mut done_ms = stream::arrival_latencies(rest, &written, &arrived);
    let mut tx_ms = stream::tx_start_latencies(&spec.follower.database_url, rest, &written)?;
    let (done, tx) = (Percentiles::of(&mut done_ms), Percentiles::of(&mut tx_ms));

    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        bail!(
            "wrk printed no result: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let r: serde_json::Value = serde_json::from_str(line)?;
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let secs = n("duration_us") as f64 / 1e6;
    // wrk's completed requests include the answers with a status of 400 or more.
    let ok = n("requests").saturating_sub(n("not_2xx"));
    Ok(ServeRun {
        secs,
        connections: spec.connections,
        ids: count,
        ok,
        not_ok: n("not_2xx"),
        socket_errors: n("connect") + n("read") + n("write"),
        timeouts: n("timeout"),
        ok_per_s: ok as f64 / secs.max(1e-9),
        p50_ms: n("p50_us") as f64 / 1e3,
        p99_ms: n("p99_us") as f64 / 1e3,
        max_ms: n("max_us") as f64 / 1e3,
        stream_rate_per_s: spec.rate,
        stream_sent: rest.len(),
        stream_committed: done_ms.len(),
        stream_done_p99_ms: done.p99,
        stream_tx_start_p99_ms: tx.p99,
    })
}
