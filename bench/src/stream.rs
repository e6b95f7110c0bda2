//! A steady stream into a running daemon, and the latency of each file from the moment it
//! appears in the inbox to the moment its transaction is committed.
//!
//! Commit time is not observable from outside the daemon, so it is bracketed:
//! - upper bound, the headline number: the file's arrival in `done/`, seen through inotify. The
//!   daemon moves a file only after its transaction committed, so this is commit time plus the
//!   mover's delay: what an operator watching the folders experiences.
//! - lower bound: `events.ingested_at`, which is `now()`, the *start* of the transaction that
//!   inserted the row (PostgreSQL and the bench share the machine's clock).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use uuid::Uuid;

use crate::etl::Etl;

/// What a stream measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stream {
    pub rate_per_s: f64,
    pub secs: f64,
    pub sent: usize,
    /// Files that reached `done/` before the bench gave up waiting.
    pub committed: usize,
    /// Rate the bench actually achieved writing (it falls behind if the machine is saturated).
    pub achieved_rate_per_s: f64,
    /// File renamed into the inbox → file renamed into `done/` (after commit), in ms.
    pub done_p50_ms: f64,
    pub done_p99_ms: f64,
    pub done_max_ms: f64,
    /// File renamed into the inbox → start of the transaction that inserted it, in ms.
    pub tx_start_p50_ms: f64,
    pub tx_start_p99_ms: f64,
    pub tx_start_max_ms: f64,
    /// Peak RSS of the following daemon.
    pub peak_rss_mib: f64,
}

/// One file of the stream, held in memory so writing it costs only the write and the rename.
pub struct File {
    folder: String,
    pub name: String,
    /// Its `metadata.event_id`: the row it becomes in `events`, whatever the topology.
    pub event_id: Uuid,
    bytes: Vec<u8>,
}

/// Pre-generates `rate * secs` events (plus one to warm up) into `staging`, a share
/// `transaction_share` of them transactions (the backlog's), and loads them in the order they
/// are to be written.
pub fn files(
    staging: &Path,
    rate: f64,
    secs: f64,
    users: usize,
    transaction_share: f64,
    seed: u64,
) -> anyhow::Result<Vec<File>> {
    let count = (rate * secs).round() as usize;
    let users = users.min(count / 10);
    let transactions = ((count as f64 * transaction_share).round() as usize).min(count - users);
    services::generate_backlog_with(
        staging,
        &services::BacklogSpec {
            users,
            card_events: count + 1 - users - transactions,
            transaction_events: transactions,
            seed,
        },
    )?;
    load(staging)
}

/// The type folders the stream writes into.
pub fn folders(files: &[File]) -> &'static [&'static str] {
    if files.iter().any(|f| f.folder == "transactions") {
        &["users", "cards", "transactions"]
    } else {
        &["users", "cards"]
    }
}

/// Creates the inbox's type folders under `events`, and the `done/` day folders the watcher
/// watches ([`watched_days`]).
pub fn create_folders(events: &Path, folders: &[&str]) -> anyhow::Result<()> {
    for folder in folders {
        std::fs::create_dir_all(events.join("inbox").join(folder))?;
        for day in watched_days() {
            std::fs::create_dir_all(events.join("done").join(folder).join(day))?;
        }
    }
    Ok(())
}

/// The daemon files a finished file into `done/<type>/<UTC date>/`: today's and tomorrow's
/// are made beforehand and watched, so a stream that crosses midnight is still seen whole
/// (a folder made during the stream could be filled before a watch on it is added).
pub fn watched_days() -> [String; 2] {
    let today = chrono::Utc::now().date_naive();
    [
        today.to_string(),
        (today + chrono::Days::new(1)).to_string(),
    ]
}

/// Starts the daemon in follow mode on `etl`, writes `files` paced at `rate` with atomic
/// writes, and measures.
pub fn run(etl: &Etl, files: &[File], rate: f64, secs: f64) -> anyhow::Result<Stream> {
    let folders = folders(files);
    let events = etl.data_dir.join("events");
    create_folders(&events, folders)?;
    // Warm-up: the first file, written before the daemon starts so its startup scan finds it,
    // proves the daemon is up, migrated and watching before the clock starts.
    let (first, rest) = files.split_first().context("empty stream")?;
    let watcher = Arrivals::watch(&events.join("done"), folders)?;
    write_atomically(&events, first)?;
    let running = etl.spawn(false)?;
    let started = Instant::now();
    while !watcher.contains(&first.name) {
        if started.elapsed() > Duration::from_secs(60) {
            running.terminate();
            let _ = running.wait(Duration::from_secs(15));
            bail!(
                "the following etl did not pick up a file within 60 s: {}",
                etl.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    let (written, writing) = pace(&events, rest, rate, |_| {})?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while watcher.len() < files.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    running.terminate();
    let exited = running.wait(Duration::from_secs(60))?;
    let arrived = watcher.finish()?;

    let mut done_ms = arrival_latencies(rest, &written, &arrived);
    let mut tx_ms = tx_start_latencies(&etl.database_url, rest, &written)?;
    let (done, tx) = (Percentiles::of(&mut done_ms), Percentiles::of(&mut tx_ms));
    Ok(Stream {
        rate_per_s: rate,
        secs,
        sent: rest.len(),
        committed: done_ms.len(),
        achieved_rate_per_s: rest.len() as f64 / writing.as_secs_f64(),
        done_p50_ms: done.p50,
        done_p99_ms: done.p99,
        done_max_ms: done.max,
        tx_start_p50_ms: tx.p50,
        tx_start_p99_ms: tx.p99,
        tx_start_max_ms: tx.max,
        peak_rss_mib: exited.peak_rss_kib as f64 / 1024.0,
    })
}

/// When a file was renamed into the inbox: for intervals, and for the database's clock.
#[derive(Clone, Copy)]
pub struct Written {
    pub at: Instant,
    pub wall: SystemTime,
}

/// Writes `files` into the inbox under `events`, one every `1 / rate` s, calling `written` after
/// each; returns when each was written (in the files' order) and how long writing took.
pub fn pace(
    events: &Path,
    files: &[File],
    rate: f64,
    mut written: impl FnMut(&File),
) -> anyhow::Result<(Vec<Written>, Duration)> {
    let mut times = Vec::with_capacity(files.len());
    let period = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now();
    for (i, file) in files.iter().enumerate() {
        let due = t0 + period.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        write_atomically(events, file)?;
        times.push(Written {
            at: Instant::now(),
            wall: SystemTime::now(),
        });
        written(file);
    }
    Ok((times, t0.elapsed()))
}

/// File renamed into the inbox → its arrival in `done/`, in ms, for the files that arrived.
pub fn arrival_latencies(
    files: &[File],
    written: &[Written],
    arrived: &HashMap<String, Instant>,
) -> Vec<f64> {
    files
        .iter()
        .zip(written)
        .filter_map(|(f, w)| {
            let seen = arrived.get(&f.name)?;
            Some(seen.saturating_duration_since(w.at).as_secs_f64() * 1e3)
        })
        .collect()
}

fn load(staging: &Path) -> anyhow::Result<Vec<File>> {
    let (mut files, mut transactions) = (Vec::new(), Vec::new());
    for folder in ["users", "cards", "transactions"] {
        let dir = staging.join(folder);
        // Written only when the stream has transactions.
        if folder == "transactions" && !dir.exists() {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.ends_with(".json") && !name.starts_with('.') {
                let bytes = std::fs::read(&path)?;
                // Latency is measured on files that reach done/: the producer's ownerless cards
                // are rejected by the default schema, so they are not streamed.
                let doc: serde_json::Value = serde_json::from_slice(&bytes)?;
                if folder == "cards" && doc["payload"].get("user_id").is_none() {
                    continue;
                }
                let event_id = doc["metadata"]["event_id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .with_context(|| format!("{}: no metadata.event_id", path.display()))?;
                let file = File {
                    folder: folder.to_owned(),
                    name: name.into_owned(),
                    event_id,
                    bytes,
                };
                if folder == "transactions" {
                    transactions.push(file);
                } else {
                    files.push(file);
                }
            }
        }
    }
    // Users first, then cards in directory order, with the transactions spread evenly among
    // them: the mix of an ordinary stream.
    let users = files.iter().take_while(|f| f.folder == "users").count();
    let cards = files.split_off(users);
    files.extend(interleave(cards, transactions));
    Ok(files)
}

/// `a` and `b` merged in their own orders, `b` spread evenly through `a` (`a` as it was when
/// `b` is empty).
fn interleave(a: Vec<File>, b: Vec<File>) -> Vec<File> {
    let (n, m) = (a.len(), b.len());
    let mut merged = Vec::with_capacity(n + m);
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    let (mut taken_a, mut taken_b) = (0, 0);
    loop {
        // Take from `a` while it is not ahead of `b` in the share of its items already taken.
        let next = if a.peek().is_some() && (b.peek().is_none() || taken_a * m <= taken_b * n) {
            taken_a += 1;
            a.next()
        } else {
            taken_b += 1;
            b.next()
        };
        match next {
            Some(file) => merged.push(file),
            None => return merged,
        }
    }
}

/// Write a dotfile, then rename it into place, as the producers do.
pub fn write_atomically(events: &Path, file: &File) -> std::io::Result<()> {
    let dir = events.join("inbox").join(&file.folder);
    let tmp = dir.join(format!(".{}.tmp", file.name));
    std::fs::write(&tmp, &file.bytes)?;
    std::fs::rename(&tmp, dir.join(&file.name))
}

/// `ingested_at` (transaction start) minus the write time of each of `files` found in the
/// warehouse at `url`, in ms. Matched by event id, which both topologies keep (the raw zone's
/// `source_file` is a stream sequence when a replica read the event from the broker).
pub fn tx_start_latencies(
    url: &str,
    files: &[File],
    written: &[Written],
) -> anyhow::Result<Vec<f64>> {
    let sent: HashMap<Uuid, SystemTime> = files
        .iter()
        .zip(written)
        .map(|(f, w)| (f.event_id, w.wall))
        .collect();
    let out = testkit::pg::psql(
        url,
        "SELECT event_id, extract(epoch FROM ingested_at)::numeric(20,6) FROM events",
    )?;
    let mut latencies = Vec::new();
    for line in out.lines() {
        let Some((id, epoch)) = line.split_once('|') else {
            continue;
        };
        let Some(at) = sent.get(&id.parse::<Uuid>()?) else {
            continue; // the warm-up file
        };
        let written_s = at.duration_since(SystemTime::UNIX_EPOCH)?.as_secs_f64();
        latencies.push((epoch.parse::<f64>()? - written_s) * 1e3);
    }
    Ok(latencies)
}

pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; NaN for an empty sample.
    pub fn of(values: &mut [f64]) -> Percentiles {
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            if values.is_empty() {
                return f64::NAN;
            }
            let i = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[i]
        };
        Percentiles {
            p50: rank(0.50),
            p99: rank(0.99),
            max: rank(1.0),
        }
    }
}

/// Arrival times in the day folders of `done/`, stamped by a thread that does nothing but
/// wait on inotify, so a busy writer cannot delay the stamp.
pub struct Arrivals {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Arrivals {
    pub fn watch(done: &Path, folders: &[&str]) -> anyhow::Result<Arrivals> {
        let inotify = Inotify::new(done, folders)?;
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("bench-done-watcher".into())
            .spawn({
                let (seen, stop) = (seen.clone(), stop.clone());
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        inotify.wait(&seen, Duration::from_millis(50))?;
                    }
                    Ok(())
                }
            })?;
        Ok(Arrivals { seen, stop, thread })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn finish(self) -> anyhow::Result<HashMap<String, Instant>> {
        let Arrivals { seen, stop, thread } = self;
        stop.store(true, Ordering::Relaxed);
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the done/ watcher panicked"))??;
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        Ok(std::mem::take(&mut *seen))
    }
}

/// A non-blocking inotify descriptor watching renames into the day folders of `done/`.
struct Inotify {
    fd: i32,
}

impl Inotify {
    fn new(done: &Path, folders: &[&str]) -> anyhow::Result<Inotify> {
        // SAFETY: plain syscall; the fd is owned by the returned value.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            bail!("inotify_init1: {}", std::io::Error::last_os_error());
        }
        let inotify = Inotify { fd };
        for dir in folders.iter().flat_map(|folder| {
            watched_days()
                .into_iter()
                .map(move |day| done.join(folder).join(day))
        }) {
            let dir: PathBuf = dir;
            let path = CString::new(dir.as_os_str().as_bytes())?;
            // SAFETY: valid fd and NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_MOVED_TO) };
            if wd < 0 {
                bail!(
                    "inotify_add_watch {}: {}",
                    dir.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        Ok(inotify)
    }

    /// Waits up to `timeout` for renames, and records the arrival time of each file reported.
    fn wait(
        &self,
        seen: &Mutex<HashMap<String, Instant>>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let mut poll = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as i32) } <= 0 {
            return Ok(());
        }
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: the buffer is valid for writes of its length.
            let n = unsafe { libc::read(self.fd, buffer.as_mut_ptr().cast(), buffer.len()) };
            if n <= 0 {
                return Ok(()); // EAGAIN: drained
            }
            let now = Instant::now();
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            let header = std::mem::size_of::<libc::inotify_event>();
            let mut offset = 0;
            while offset + header <= n as usize {
                // SAFETY: the kernel wrote a whole event header here; read it unaligned.
                let event: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buffer[offset..].as_ptr().cast()) };
                if event.mask & libc::IN_Q_OVERFLOW != 0 {
                    bail!("inotify queue overflow: arrival times were lost");
                }
                let name = &buffer[offset + header..offset + header + event.len as usize];
                let name = name.split(|b| *b == 0).next().unwrap_or_default();
                seen.entry(String::from_utf8_lossy(name).into_owned())
                    .or_insert(now);
                offset += header + event.len as usize;
            }
        }
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::{interleave, File};
    use uuid::Uuid;

    fn files(folder: &str, n: usize) -> Vec<File> {
        (0..n)
            .map(|i| File {
                folder: folder.to_owned(),
                name: format!("{folder}{i}"),
                event_id: Uuid::nil(),
                bytes: Vec::new(),
            })
            .collect()
    }

    fn names(files: &[File]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn without_transactions_the_cards_keep_their_order() {
        let merged = interleave(files("c", 3), Vec::new());
        assert_eq!(names(&merged), ["c0", "c1", "c2"]);
    }

    #[test]
    fn transactions_are_spread_evenly_among_the_cards() {
        let merged = interleave(files("c", 4), files("t", 2));
        assert_eq!(names(&merged), ["c0", "t0", "c1", "c2", "t1", "c3"]);
        let merged = interleave(Vec::new(), files("t", 2));
        assert_eq!(names(&merged), ["t0", "t1"]);
    }
}
