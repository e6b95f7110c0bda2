//! The inbox source: JSON files dropped into `events/inbox/<type>/`.
//!
//! The inbox itself is the queue: a file stays there until its fate is durable, then moves to
//! `done/<type>/` (after its transaction committed) or `failed/<type>/` with a reason file. A
//! crash at any point leaves every unfinished file where a restart finds it.
//!
//! ```text
//! scan / watcher / rescan ──Job──▶ readers (threads) ──Record──▶ Intake (decode) ──▶ pool
//!        (discover)                  (read: untrusted)                                │
//!                                                     InboxAck ◀── committed / rejected / retry
//!                                                        │ unsettled: requeue after the window
//!                                                        ▼
//!                                          mover (thread) → done/ or failed/ + reason file
//! ```
//!
//! `discover` finds files (and reports inbox folders that name no declared type, whose files
//! are left alone), `tracker` keeps each in flight at most once, `read` opens one without
//! trusting it, `files` owns the folder layout and the moves. A file's name is stored and shown
//! only through [`crate::names::encode`], never lossily.

pub mod discover;
pub mod files;
pub mod folder_health;
pub mod read;
pub mod tracker;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::discover::Job;
use self::files::Moved;
use self::read::Contents;
use self::tracker::Tracker;
use super::{Ack, Acknowledge, Fate, Intake, Mode, Record, Source, SourceError, Started};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::event::Event;
use crate::names;
use crate::outcome;
use crate::rejection::Rejection;
use crate::stats::Stats;

/// The inbox source, and what it knows while it runs (read by `/status`, progress lines and
/// the drain summary).
pub struct Inbox {
    config: Config,
    /// The declared types: one inbox folder each.
    catalog: Catalog,
    /// Files between discovery and their final folder, and those this run gave up on.
    tracker: Arc<Tracker>,
    /// Finished files are counted here (by [`outcome`]): the backlog estimate reads it.
    stats: Arc<Stats>,
    /// True while the watcher runs (always in drain mode, which needs none): readiness.
    watching: AtomicBool,
    /// Candidates the last scan saw, and files finished when it started: the backlog estimate.
    scan_seen: AtomicU64,
    finished_at_scan: AtomicU64,
    /// Today's day folders in `done/` and `failed/`, made once a day rather than per file.
    days: files::DayFolders,
    /// Whether moves into `done/` and `failed/` succeed: failures are logged per cause, not
    /// per file, and make the inbox unready.
    folder_health: folder_health::FolderHealth,
    /// The inbox folders naming no declared type that the last scan found: a folder is
    /// reported (WARN) when it first appears here, not at every scan.
    undeclared: Mutex<BTreeSet<OsString>>,
}

impl Inbox {
    pub fn new(config: &Config, catalog: &Catalog, stats: Arc<Stats>) -> Inbox {
        Inbox {
            config: config.clone(),
            catalog: catalog.clone(),
            tracker: Arc::new(Tracker::default()),
            stats,
            watching: AtomicBool::new(false),
            scan_seen: AtomicU64::new(0),
            finished_at_scan: AtomicU64::new(0),
            days: files::DayFolders::default(),
            folder_health: folder_health::FolderHealth::default(),
            undeclared: Mutex::default(),
        }
    }
}

impl Source for Inbox {
    fn start(self: Arc<Self>, mode: Mode, intake: Intake, stop: CancellationToken) -> Started {
        self.watching.store(mode == Mode::Drain, Ordering::Relaxed);
        let config = &self.config;
        let (jobs_tx, jobs_rx) = flume::bounded::<Job>(config.channel_capacity);
        // Unbounded, because an ack may be resolved on the async runtime, which must never
        // block on a full channel. Bounded in effect by the readers instead: they take no new
        // file while `MAX_PENDING_MOVES` moves wait (see `reader`), so a mover slower than the
        // database cannot make memory grow with the backlog.
        let (moves_tx, moves_rx) = flume::unbounded::<Move>();
        let pending_moves = Arc::new(AtomicUsize::new(0));
        let acks = Arc::new(AckContext {
            inbox: self.clone(),
            pending_moves: pending_moves.clone(),
            moves: moves_tx,
            requeue: jobs_tx.clone(),
            stop: stop.clone(),
            runtime: tokio::runtime::Handle::current(),
        });

        let mut finished = vec![spawn_thread("etl-mover", {
            // Not the ack context: it holds a sender, and the mover must end when the last
            // sender is gone.
            let (inbox, pending_moves) = (self.clone(), pending_moves.clone());
            move || mover(&inbox, &pending_moves, &moves_rx)
        })];
        for i in 0..config.inbox.readers {
            let (acks, jobs, intake) = (acks.clone(), jobs_rx.clone(), intake.clone());
            finished.push(spawn_thread(&format!("etl-reader-{i}"), move || {
                reader(&acks, &jobs, &intake)
            }));
        }
        // The readers and the acks in flight now hold the only handles on the mover's channel:
        // the mover ends once they are all gone (every record answered or abandoned).
        drop((acks, intake));

        let discovery = tokio::spawn(async move {
            let ended = match mode {
                Mode::Drain => {
                    self.drain(&jobs_tx, &stop).await;
                    Ok(())
                }
                Mode::Follow => self.follow(&jobs_tx, &stop).await,
            };
            self.watching.store(false, Ordering::Relaxed);
            ended
        });
        Started {
            discovery,
            finished,
        }
    }

    /// Files in the inbox not finished yet, estimated from the last scan without listing the
    /// inbox again (a million-file listing is not free).
    fn backlog(&self) -> u64 {
        let finished = self.stats.snapshot().finished();
        let since_scan = finished.saturating_sub(self.finished_at_scan.load(Ordering::Relaxed));
        let left = self
            .scan_seen
            .load(Ordering::Relaxed)
            .saturating_sub(since_scan);
        left.max(self.tracker.len() as u64)
    }

    fn in_flight(&self) -> u64 {
        self.tracker.len() as u64
    }

    fn ready(&self) -> bool {
        self.watching.load(Ordering::Relaxed) && self.folder_health.trouble().is_none()
    }

    fn trouble(&self) -> Option<String> {
        self.folder_health.trouble()
    }

    fn stuck(&self) -> usize {
        self.tracker.stuck()
    }
}

impl Inbox {
    /// Scans until a scan finds nothing left, waiting after each for its files to be finished.
    async fn drain(self: &Arc<Self>, jobs: &flume::Sender<Job>, stop: &CancellationToken) {
        loop {
            let found = self.scan(jobs, stop, false).await;
            tokio::select! {
                _ = self.tracker.wait_idle() => {}
                _ = stop.cancelled() => return,
            }
            if found == 0 || stop.is_cancelled() {
                return;
            }
        }
    }

    /// Scans once, then follows the watcher, rescanning periodically and whenever the watcher
    /// reports it may have lost events.
    async fn follow(
        self: &Arc<Self>,
        jobs: &flume::Sender<Job>,
        stop: &CancellationToken,
    ) -> Result<(), SourceError> {
        let rescan = Arc::new(Notify::new());
        // Started before the first scan so nothing written during the scan is missed.
        let _watcher = discover::watch(
            &self.config,
            &self.catalog,
            self.tracker.clone(),
            jobs.clone(),
            rescan.clone(),
        )?;
        self.watching.store(true, Ordering::Relaxed);
        loop {
            self.scan(jobs, stop, true).await;
            tokio::select! {
                _ = tokio::time::sleep(self.config.rescan_interval()) => {}
                _ = rescan.notified() => {}
                _ = stop.cancelled() => return Ok(()),
            }
        }
    }

    /// Lists the inbox once on a blocking thread (see [`discover::scan`]) and records what it
    /// saw for the backlog estimate. Returns how many candidates it saw.
    async fn scan(
        self: &Arc<Self>,
        jobs: &flume::Sender<Job>,
        stop: &CancellationToken,
        retry_stuck: bool,
    ) -> usize {
        let started_at = self.stats.snapshot().finished();
        let (inbox, jobs, stop) = (self.clone(), jobs.clone(), stop.clone());
        let listed = tokio::task::spawn_blocking(move || {
            let listed = discover::scan(
                &inbox.config,
                &inbox.catalog,
                &inbox.tracker,
                &jobs,
                &stop,
                retry_stuck,
            );
            inbox.survey_undeclared();
            listed
        })
        .await;
        let found = match listed {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot list the inbox");
                0
            }
            Err(error) => {
                tracing::error!(%error, "inbox scan failed");
                0
            }
        };
        self.finished_at_scan.store(started_at, Ordering::Relaxed);
        self.scan_seen.store(found as u64, Ordering::Relaxed);
        found
    }
}

impl Inbox {
    /// Looks for inbox folders that name no declared type (see [`discover::undeclared`]):
    /// each one not seen by the previous scan gets its WARN line, each one's file count goes to
    /// its gauge, and a folder gone since is counted as empty. Runs with every scan, so a
    /// folder made while following is reported by the scan its creation asks for.
    fn survey_undeclared(&self) {
        let found = match discover::undeclared(&self.config, &self.catalog) {
            Ok(found) => found,
            Err(error) => {
                let root = self.config.inbox_root();
                tracing::warn!(folder = %names::encode_path(&root), %error, "cannot list the inbox folder to look for folders that name no declared type; check its permissions (tried again at the next scan)");
                return;
            }
        };
        let mut seen = self.undeclared.lock().unwrap_or_else(|p| p.into_inner());
        let root = self.config.inbox_root();
        for folder in &found {
            outcome::undeclared_folder(
                &folder.folder,
                &root.join(&folder.folder),
                folder.files,
                !seen.contains(&folder.folder),
                &self.catalog.names(),
            );
        }
        let now: BTreeSet<OsString> = found.into_iter().map(|u| u.folder).collect();
        for gone in seen.difference(&now) {
            outcome::undeclared_folder_gone(gone);
        }
        *seen = now;
    }
}

/// What the acks of one run share: where to send a file's final move, and how to look at a
/// half-written file again later.
struct AckContext {
    inbox: Arc<Inbox>,
    /// Moves sent to the mover and not done yet: the readers' backpressure.
    pending_moves: Arc<AtomicUsize>,
    moves: flume::Sender<Move>,
    requeue: flume::Sender<Job>,
    stop: CancellationToken,
    runtime: tokio::runtime::Handle,
}

/// A file's final move, done by the mover thread.
enum Move {
    Done(Job),
    Failed(Job, Rejection),
}

/// The ack of one file: its fate decides where the file goes.
struct InboxAck {
    acks: Arc<AckContext>,
    job: Job,
    /// When the file last changed, as read: a cut-off document that changed within the settle
    /// window may still be being written.
    modified: Option<SystemTime>,
}

impl Acknowledge for InboxAck {
    fn settle(self: Box<Self>, fate: Fate) {
        let InboxAck {
            acks,
            job,
            modified,
        } = *self;
        let tracker = &acks.inbox.tracker;
        let settle = acks.inbox.config.settle();
        match fate {
            Fate::Committed => acks.send(Move::Done(job)),
            Fate::Rejected(rejection) if read::unsettled(&rejection, modified, settle) => {
                tracing::debug!(file = %names::encode_path(&job.path), "file looks half-written; retrying after the settle window");
                acks.retry_later(job, settle);
            }
            Fate::Rejected(rejection) => acks.send(Move::Failed(job, rejection)),
            // Not finished: the file stays in the inbox, where a later scan finds it again.
            Fate::Retry => tracker.release(&job.path),
        }
    }
}

impl AckContext {
    fn send(&self, next: Move) {
        self.pending_moves.fetch_add(1, Ordering::Relaxed);
        if let Err(flume::SendError(next)) = self.moves.send(next) {
            self.pending_moves.fetch_sub(1, Ordering::Relaxed);
            // The mover is gone (the run is over): the file stays in the inbox for the next run.
            let (Move::Done(job) | Move::Failed(job, _)) = next;
            self.inbox.tracker.release(&job.path);
        }
    }

    /// The file stays tracked while it waits, so the watcher cannot queue it twice.
    fn retry_later(&self, job: Job, settle: Duration) {
        let (requeue, stop) = (self.requeue.clone(), self.stop.clone());
        self.runtime.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(settle) => { let _ = requeue.send_async(job).await; }
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// A reader thread: reads files without trusting them and hands each to the intake.
fn reader(acks: &Arc<AckContext>, jobs: &flume::Receiver<Job>, intake: &Intake) {
    let inbox = &acks.inbox;
    let max_file_bytes = inbox.config.inbox.max_file_bytes;
    // Decoded events wait here until READER_RUN of them are ready or no file is queued: a
    // backlog is handed to the pool in runs (one wake-up of the runtime per run, where one per
    // file cost more kernel time than reading the file), a single file at once.
    let mut run: Vec<Event> = Vec::with_capacity(READER_RUN);
    while !acks.stop.is_cancelled() {
        if !run.is_empty() && (run.len() >= READER_RUN || jobs.is_empty()) {
            // Closed: the pool is gone; the acks, dropped, released the files.
            if intake.blocking_hand_over(&mut run).is_err() {
                return;
            }
        }
        // Backpressure from the mover (its channel is unbounded, see `Inbox::start`).
        if acks.pending_moves.load(Ordering::Relaxed) >= MAX_PENDING_MOVES {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let job = match jobs.recv_timeout(Duration::from_millis(100)) {
            Ok(job) => job,
            Err(flume::RecvTimeoutError::Timeout) => continue,
            Err(flume::RecvTimeoutError::Disconnected) => break,
        };
        match read::read_untrusted(&job.path, max_file_bytes) {
            Ok(Contents::Bytes { bytes, modified }) => {
                let record = Record {
                    kind: job.kind.clone(),
                    bytes,
                    origin: origin(&job),
                    ack: Ack::new(InboxAck {
                        acks: acks.clone(),
                        job,
                        modified,
                    }),
                };
                intake.decode_into(record, &mut run);
            }
            Ok(Contents::TooLarge(rejection)) => acks.send(Move::Failed(job, rejection)),
            Ok(Contents::Gone) => inbox.tracker.release(&job.path),
            Ok(Contents::Ignored(why)) => {
                tracing::debug!(file = %names::encode_path(&job.path), why, "left alone");
                inbox.tracker.release(&job.path);
            }
            Err(error) => {
                tracing::error!(file = %names::encode_path(&job.path), %error, "cannot read file; it stays in the inbox");
                inbox.tracker.give_up(&job.path);
            }
        }
    }
    // What was decoded is handed over on the way out too (the pool drains before it stops); a
    // pool already gone drops the acks, which leaves the files in the inbox.
    let _ = intake.blocking_hand_over(&mut run);
}

/// `<type folder>/<file name>`: where the file was found, relative to the inbox; stored as
/// `events.source_file`. The name in its one lossless text form ([`names::encode`]), so two
/// names that differ only in a byte that is not UTF-8 are two different origins.
fn origin(job: &Job) -> String {
    let name = crate::layout::file_name(&job.path)
        .map(names::encode)
        .unwrap_or_default();
    let kind = job.kind.name();
    let mut origin = String::with_capacity(kind.len() + 1 + name.len());
    origin.push_str(kind);
    origin.push('/');
    origin.push_str(&name);
    origin
}

/// Most moves the mover does before it counts them (one counter update per run, not per file).
const MOVER_RUN: usize = 1024;

/// Moves that may wait for the mover before the readers pause: about what the former bounded
/// channel between the workers and the mover held (two batches per worker).
const MAX_PENDING_MOVES: usize = 4096;

/// Most decoded events a reader holds before handing them to the pool (see `reader`).
const READER_RUN: usize = 32;

/// The mover thread: moves committed files to `done/` in the order their acks arrive (batch
/// by batch, as they committed), and rejected ones to `failed/` with their reason.
fn mover(inbox: &Inbox, pending_moves: &AtomicUsize, moves: &flume::Receiver<Move>) {
    while let Ok(first) = moves.recv() {
        let mut moved = 0;
        for next in std::iter::once(first).chain(moves.try_iter().take(MOVER_RUN)) {
            match next {
                Move::Done(job) => moved += u64::from(move_to_done(inbox, &job)),
                Move::Failed(job, rejection) => move_to_failed(inbox, &job, &rejection),
            }
            pending_moves.fetch_sub(1, Ordering::Relaxed);
        }
        outcome::done(&inbox.stats, moved);
    }
}

/// True if this daemon moved the file (another one on the same folder may have been first).
fn move_to_done(inbox: &Inbox, job: &Job) -> bool {
    match inbox.days.move_to_done(&inbox.config, &job.kind, &job.path) {
        Ok(Moved::Yes) => {
            inbox.folder_health.succeeded();
            inbox.tracker.release(&job.path);
            true
        }
        // Another daemon on the same folder moved it: not an error, not ours to count.
        Ok(Moved::AlreadyGone) => {
            inbox.tracker.release(&job.path);
            false
        }
        Err(error) => {
            // Logged per cause, not per file (a read-only file system fails every move). The
            // event is committed, so the move at a later rescan changes nothing else.
            inbox
                .folder_health
                .failed(&inbox.config.done(job.kind.name()), &error);
            inbox.tracker.give_up(&job.path);
            false
        }
    }
}

/// Moves a rejected file to `failed/` with its reason, and records the rejection: the one
/// place where the inbox finishes a refused file, whether the decoder or the database refused
/// its event.
fn move_to_failed(inbox: &Inbox, job: &Job, rejection: &Rejection) {
    let path: &Path = &job.path;
    match inbox.days.reject(&inbox.config, &job.kind, path, rejection) {
        // Gone: another daemon rejected it first and counted it.
        Ok(Moved::AlreadyGone) => inbox.tracker.release(path),
        Ok(Moved::Yes) => {
            inbox.folder_health.succeeded();
            outcome::rejected(
                &inbox.stats,
                &job.kind,
                &names::encode_path(path),
                rejection,
            );
            inbox.tracker.release(path);
        }
        Err(error) => {
            // It stays in the inbox and is rejected again at a later rescan.
            inbox
                .folder_health
                .failed(&inbox.config.failed(job.kind.name()), &error);
            inbox.tracker.give_up(path);
        }
    }
}

/// A named OS thread whose end can be awaited.
fn spawn_thread(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, finished) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            body();
            let _ = done.send(());
        });
    if let Err(error) = spawned {
        tracing::error!(%error, name, "cannot start thread");
    }
    finished
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Decoder;
    use crate::event::Event;
    use crate::rejection::RejectCode;

    fn user(id: i64) -> String {
        format!(
            r#"{{"metadata": {{"type": "user", "event_at": "2024-05-01 12:00:03",
            "event_id": "6f1c1c4e-7a53-4b8e-9d3a-1f0e9b2c3d{id:02}"}},
            "payload": {{"id": {id}, "name": "N", "address": "A", "job": "J", "score": 0.5}}}}"#
        )
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn catalog() -> Catalog {
        Catalog::builtin().expect("built-in types")
    }

    /// A data folder with its layout, one reader, and no rescan during the test (a released
    /// file is found again only by a later scan).
    fn test_config(dir: &tempfile::TempDir, settle_ms: u64) -> Config {
        let config = Config {
            data_dir: dir.path().join("data"),
            inbox: crate::config::InboxConfig {
                settle_ms,
                readers: 1,
                rescan_interval_secs: 3600,
                ..Default::default()
            },
            ..Config::default()
        };
        files::ensure_layout(&config, &catalog()).expect("layout");
        config
    }

    /// The inbox alone, with a fake pool: the test receives the events and answers their acks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_leaves_the_inbox_only_as_its_ack_says() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = test_config(&dir, 0);
        let inbox_dir = config.inbox("users");
        for (name, text) in [
            ("a.json", user(1)),
            ("b.json", user(2)),
            ("bad.json", "{".into()),
        ] {
            std::fs::write(inbox_dir.join(name), text).expect("write");
        }
        std::fs::write(inbox_dir.join(".hidden.json"), user(3)).expect("write");

        let stats = Arc::new(Stats::default());
        let inbox = Arc::new(Inbox::new(&config, &catalog(), stats.clone()));
        let (events, mut pool) = tokio::sync::mpsc::channel::<Event>(16);
        let decoder = Decoder {
            max_future_skew: config.max_future_skew(),
            horizon: Default::default(),
        };
        let stop = CancellationToken::new();
        let started = inbox.clone().start(
            Mode::Follow,
            Intake::new(Arc::new(decoder), events),
            stop.clone(),
        );

        let mut valid = Vec::new();
        for _ in 0..2 {
            valid.push(pool.recv().await.expect("a valid event"));
        }
        valid.sort_by_key(|e| e.entity_id());
        assert_eq!(valid[0].origin, "users/a.json");
        let failed = Config::day_folder(&config.failed("users"), chrono::Utc::now().date_naive());
        eventually("bad.json in failed/", || failed.join("bad.json").exists()).await;
        let reason = std::fs::read_to_string(failed.join(crate::layout::sidecar_name("bad.json")))
            .expect("reason file");
        assert!(
            reason.contains(RejectCode::InvalidJson.as_str()),
            "{reason}"
        );
        assert!(
            inbox_dir.join("a.json").exists() && inbox_dir.join("b.json").exists(),
            "nothing moves before its ack is resolved"
        );
        // bad.json leaves the count once its move is finished, just after it appears in failed/.
        eventually("two files in flight", || inbox.in_flight() == 2).await;

        // a.json committed; b.json abandoned (a hard stop drops its event unanswered).
        let b = valid.pop().expect("b");
        let a = valid.pop().expect("a");
        a.ack.resolve(Fate::Committed);
        drop(b);
        let done = Config::day_folder(&config.done("users"), chrono::Utc::now().date_naive());
        eventually("a.json in done/", || done.join("a.json").exists()).await;
        eventually("nothing in flight", || inbox.in_flight() == 0).await;
        assert!(
            inbox_dir.join("b.json").exists(),
            "retry: it stays in the inbox"
        );
        assert!(
            inbox_dir.join(".hidden.json").exists(),
            "dotfiles are left alone"
        );
        let counted = stats.snapshot();
        assert_eq!((counted.done, counted.rejected), (1, 1));
        assert_eq!(inbox.stuck(), 0);

        stop.cancel();
        drop(pool);
        started.discovery.await.expect("task").expect("discovery");
        for thread in started.finished {
            thread.await.expect("thread ends");
        }
    }

    /// A cut-off document that changed within the settle window is looked at again, not rejected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_written_file_is_retried_after_the_settle_window() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = test_config(&dir, 1000);
        let path = config.inbox("users").join("slow.json");
        let text = user(4);
        std::fs::write(&path, &text[..20]).expect("write a prefix");

        let stats = Arc::new(Stats::default());
        let inbox = Arc::new(Inbox::new(&config, &catalog(), stats.clone()));
        let (events, mut pool) = tokio::sync::mpsc::channel::<Event>(16);
        let decoder = Decoder {
            max_future_skew: config.max_future_skew(),
            horizon: Default::default(),
        };
        let stop = CancellationToken::new();
        let started = inbox.clone().start(
            Mode::Follow,
            Intake::new(Arc::new(decoder), events),
            stop.clone(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(path.exists(), "not rejected while it may still be written");
        assert_eq!(inbox.in_flight(), 1, "still tracked while it waits");
        std::fs::write(&path, &text).expect("the producer finishes");
        let event = tokio::time::timeout(Duration::from_secs(10), pool.recv())
            .await
            .expect("retried after the window")
            .expect("an event");
        assert_eq!(event.entity_id(), 4);
        assert_eq!(stats.snapshot().rejected, 0);

        stop.cancel();
        drop((event, pool));
        started.discovery.await.expect("task").expect("discovery");
        for thread in started.finished {
            thread.await.expect("thread ends");
        }
    }
}
