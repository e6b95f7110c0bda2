//! Builds and runs the whole daemon from a [`Config`]: extract → transform → load, then the file
//! bookkeeping. `main` and the tests start the very same pipeline through [`run`].
//!
//! ```text
//! scan / watcher / rescan ──Job──▶ readers (threads) ──Event──▶ pool router ──▶ workers ──▶ PostgreSQL
//!                                       │ rejected                                  │ committed
//!                                       ▼                                           ▼
//!                               failed/<type>/ + reason                  mover (thread) → done/<type>/
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::event::{Event, Kind};
use crate::extract::discover::{self, Job, Tracker};
use crate::extract::read::{intake, Intake, Limits};
use crate::extract::schema::Schemas;
use crate::extract::Rejection;
use crate::files::{self, Moved};
use crate::load::connect::{self, Target};
use crate::load::fault::Health;
use crate::load::{DbError, Warehouse};
use crate::stats::{Snapshot, Stats};
use crate::transform::pool::{Pool, Settled};

/// How long the daemon runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Until a shutdown signal: scan, then follow the watcher and rescan periodically.
    Follow,
    /// Until the inbox is empty: scan, process, repeat until a scan finds nothing.
    Drain,
}

/// What the run did, printed at the end of a drain.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub stats: Snapshot,
    pub elapsed: Duration,
    /// False if the shutdown bound expired before everything in flight was committed.
    pub graceful: bool,
    /// Files the run could not finish (each logged as an ERROR); they are still in the inbox.
    pub stuck: usize,
}

/// State shared by the stages, and by the HTTP endpoints.
pub struct Shared {
    pub config: Config,
    pub schemas: Schemas,
    pub tracker: Arc<Tracker>,
    pub stats: Arc<Stats>,
    pub warehouse: Warehouse,
    /// The database's current trouble, if batches cannot commit: `/readyz` says why.
    pub health: Arc<Health>,
    /// True while the inbox watcher runs (always, in drain mode, which needs none): readiness.
    pub watching: AtomicBool,
    /// Candidates the last scan saw, and files finished when it started: the backlog estimate.
    scan_seen: AtomicU64,
    finished_at_scan: AtomicU64,
}

impl Shared {
    /// Files in the inbox not finished yet, estimated from the last scan without listing the
    /// inbox again (a million-file listing is not free).
    pub fn backlog(&self) -> u64 {
        let finished = self.stats.snapshot().finished();
        let since_scan = finished.saturating_sub(self.finished_at_scan.load(Ordering::Relaxed));
        let left = self
            .scan_seen
            .load(Ordering::Relaxed)
            .saturating_sub(since_scan);
        left.max(self.tracker.len() as u64)
    }

    /// Updates the gauges that are read rather than counted.
    pub fn publish_gauges(&self) {
        metrics::gauge!("etl_inbox_backlog").set(self.backlog() as f64);
        metrics::gauge!("etl_in_flight").set(self.tracker.len() as f64);
    }
}

/// Runs the pipeline until `shutdown` fires (or, in drain mode, the inbox is empty), then stops
/// intake, commits what is in flight, moves those files, and returns within the shutdown bound.
pub async fn run(
    config: Config,
    mode: Mode,
    shutdown: CancellationToken,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    files::ensure_layout(&config).context("cannot create the data folder layout")?;
    crate::ops::metrics::handle();
    crate::ops::metrics::describe();
    let (schemas, origins) = Schemas::load(&config.schemas_dir)?;
    tracing::info!(schemas = ?origins, "schemas compiled");
    let warehouse = Warehouse::open(Target::from_config(&config)?, config.workers + 2)?;
    if !migrate_with_retry(&warehouse, &config, &shutdown).await? {
        return Ok(Summary {
            stats: Snapshot::default(),
            elapsed: started.elapsed(),
            graceful: true,
            stuck: 0,
        });
    }

    let shared = Arc::new(Shared {
        schemas,
        tracker: Arc::new(Tracker::default()),
        stats: Arc::new(Stats::default()),
        warehouse: warehouse.clone(),
        health: Arc::new(Health::default()),
        watching: AtomicBool::new(mode == Mode::Drain),
        scan_seen: AtomicU64::new(0),
        finished_at_scan: AtomicU64::new(0),
        config,
    });
    let config = &shared.config;
    // `stop` ends intake; `hard_stop` abandons what is still in flight when the bound expires.
    let stop = shutdown.child_token();
    let hard_stop = CancellationToken::new();

    let (jobs_tx, jobs_rx) = flume::bounded::<Job>(config.channel_capacity);
    let (settled_tx, settled_rx) = flume::bounded::<Settled>(config.workers * 2);
    let pool = Pool::start(
        config,
        warehouse,
        shared.stats.clone(),
        shared.health.clone(),
        settled_tx,
        hard_stop.clone(),
    );

    let mover = spawn_thread("etl-mover", {
        let shared = shared.clone();
        move || mover(&shared, settled_rx)
    });
    let mut readers = Vec::new();
    for i in 0..config.readers {
        let (shared, jobs_rx, jobs_tx, events) = (
            shared.clone(),
            jobs_rx.clone(),
            jobs_tx.clone(),
            pool.sender.clone(),
        );
        let (stop, runtime) = (stop.clone(), tokio::runtime::Handle::current());
        readers.push(spawn_thread(&format!("etl-reader-{i}"), move || {
            reader(&shared, &jobs_rx, &jobs_tx, &events, &stop, &runtime)
        }));
    }
    drop(pool.sender);
    drop(jobs_rx);

    let progress = tokio::spawn(progress(shared.clone(), stop.clone()));
    let http = (!config.http_addr.is_empty()).then(|| {
        tokio::spawn(crate::ops::http::serve(
            config.http_addr.clone(),
            shared.clone(),
            stop.clone(),
        ))
    });
    tracing::info!(?mode, workers = config.workers, readers = config.readers, data_dir = %config.data_dir.display(), "pipeline started");
    // The shutdown clock starts at the signal, even if intake is blocked on full queues (a
    // database outage with a backlog): `hard_stop` then unblocks every stage in turn.
    tokio::select! {
        ended = run_mode(&shared, mode, jobs_tx, &stop) => ended?,
        _ = stop.cancelled() => {}
    }
    stop.cancel();
    progress.abort();
    shared.watching.store(false, Ordering::Relaxed);

    // Graceful part: readers stop, the pool commits what it holds, the mover moves it.
    let finish = async {
        for reader in readers {
            let _ = reader.await;
        }
        let _ = pool.task.await;
        let _ = mover.await;
        if let Some(http) = http {
            let _ = http.await;
        }
    };
    let graceful = tokio::time::timeout(config.shutdown_timeout(), finish)
        .await
        .is_ok();
    if !graceful {
        hard_stop.cancel();
        tracing::warn!(
            bound_secs = config.shutdown_timeout_secs,
            in_flight = shared.tracker.len(),
            "shutdown bound reached; uncommitted files stay in the inbox for the next run"
        );
    }
    Ok(Summary {
        stats: shared.stats.snapshot(),
        elapsed: started.elapsed(),
        graceful,
        stuck: shared.tracker.stuck(),
    })
}

async fn run_mode(
    shared: &Arc<Shared>,
    mode: Mode,
    jobs: flume::Sender<Job>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    match mode {
        Mode::Drain => {
            drain(shared, jobs, stop).await;
            Ok(())
        }
        Mode::Follow => follow(shared, jobs, stop).await,
    }
}

/// Migrates, retrying while the database is unreachable (it may still be starting).
/// Returns false if shut down before it succeeded, and the error at once if no retry can fix
/// it (see [`connect::fatal_at_startup`]).
async fn migrate_with_retry(
    warehouse: &Warehouse,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<bool, DbError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match warehouse.migrate().await {
            Ok(applied) => {
                tracing::info!(?applied, "database ready");
                return Ok(true);
            }
            Err(error) if connect::fatal_at_startup(&error).is_some() => return Err(error),
            Err(error) => {
                tracing::error!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot migrate the warehouse yet");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return Ok(false),
        }
        backoff = (backoff * 2).min(config.max_retry_backoff());
    }
}

/// Scans until a scan finds nothing left, waiting after each for its files to be finished.
async fn drain(shared: &Arc<Shared>, jobs: flume::Sender<Job>, stop: &CancellationToken) {
    loop {
        let found = scan(shared, &jobs, stop, false).await;
        tokio::select! {
            _ = shared.tracker.wait_idle() => {}
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
    shared: &Arc<Shared>,
    jobs: flume::Sender<Job>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let rescan = Arc::new(Notify::new());
    // Started before the first scan so nothing written during the scan is missed.
    let _watcher = discover::watch(
        &shared.config,
        shared.tracker.clone(),
        jobs.clone(),
        rescan.clone(),
    )
    .context("cannot watch the inbox folders")?;
    shared.watching.store(true, Ordering::Relaxed);
    loop {
        scan(shared, &jobs, stop, true).await;
        tokio::select! {
            _ = tokio::time::sleep(shared.config.rescan_interval()) => {}
            _ = rescan.notified() => {}
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

/// Lists the inbox once on a blocking thread (see [`discover::scan`]) and records what it saw
/// for the backlog estimate. Returns how many candidates it saw.
async fn scan(
    shared: &Arc<Shared>,
    jobs: &flume::Sender<Job>,
    stop: &CancellationToken,
    retry_stuck: bool,
) -> usize {
    let started_at = shared.stats.snapshot().finished();
    let (owned, jobs, stop) = (shared.clone(), jobs.clone(), stop.clone());
    let listed = tokio::task::spawn_blocking(move || {
        discover::scan(&owned.config, &owned.tracker, &jobs, &stop, retry_stuck)
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
    shared.finished_at_scan.store(started_at, Ordering::Relaxed);
    shared.scan_seen.store(found as u64, Ordering::Relaxed);
    found
}

/// A reader thread: reads and validates files, sends valid events on, rejects the others.
fn reader(
    shared: &Shared,
    jobs: &flume::Receiver<Job>,
    requeue: &flume::Sender<Job>,
    events: &mpsc::Sender<Event>,
    stop: &CancellationToken,
    runtime: &tokio::runtime::Handle,
) {
    let config = &shared.config;
    let limits = Limits {
        max_file_bytes: config.max_file_bytes,
        settle: config.settle(),
        max_future_skew: config.max_future_skew(),
    };
    while !stop.is_cancelled() {
        let job = match jobs.recv_timeout(Duration::from_millis(100)) {
            Ok(job) => job,
            Err(flume::RecvTimeoutError::Timeout) => continue,
            Err(flume::RecvTimeoutError::Disconnected) => return,
        };
        match intake(&job.path, job.kind, limits, &shared.schemas) {
            Ok(Intake::Event(event)) => {
                if events.blocking_send(*event).is_err() {
                    shared.tracker.release(&job.path);
                    return;
                }
            }
            Ok(Intake::Rejected(rejection)) => reject(shared, job.kind, &job.path, &rejection),
            Ok(Intake::Unsettled) => {
                tracing::debug!(file = %job.path.display(), "file looks half-written; retrying after the settle window");
                let (requeue, stop, settle) = (requeue.clone(), stop.clone(), config.settle());
                // The file stays tracked while it waits, so the watcher cannot queue it twice.
                runtime.spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(settle) => { let _ = requeue.send_async(job).await; }
                        _ = stop.cancelled() => {}
                    }
                });
            }
            Ok(Intake::Gone) => shared.tracker.release(&job.path),
            Ok(Intake::Ignored(why)) => {
                tracing::debug!(file = %job.path.display(), why, "left alone");
                shared.tracker.release(&job.path);
            }
            Err(error) => {
                tracing::error!(file = %job.path.display(), %error, "cannot read file; it stays in the inbox");
                shared.tracker.give_up(&job.path);
            }
        }
    }
}

/// Moves a rejected file to `failed/` with its reason, and counts it: the one place where a
/// rejection is recorded, whether the decoder or the database refused the event.
fn reject(shared: &Shared, kind: Kind, path: &std::path::Path, rejection: &Rejection) {
    match files::reject(&shared.config, kind, path, rejection) {
        // Gone: another daemon rejected it first and counted it.
        Ok(Moved::AlreadyGone) => shared.tracker.release(path),
        Ok(Moved::Yes) => {
            Stats::add(&shared.stats.rejected, 1);
            metrics::counter!("etl_files_moved_total", "to" => "failed").increment(1);
            metrics::counter!("etl_events_rejected_total", "type" => kind.as_str(), "reason" => rejection.code.as_str()).increment(1);
            shared.tracker.release(path);
        }
        Err(error) => {
            tracing::error!(file = %path.display(), %error, "cannot move a refused file to failed/; it stays in the inbox");
            shared.tracker.give_up(path);
        }
    }
}

/// The mover thread: moves committed files to `done/`, in the order their batches committed,
/// and the files of events the database refused to `failed/`.
fn mover(shared: &Shared, settled: flume::Receiver<Settled>) {
    for batch in settled.iter() {
        for (kind, path, rejection) in &batch.refused {
            reject(shared, *kind, path, rejection);
        }
        let mut moved = 0;
        for (kind, path) in batch.committed {
            match files::move_to_done(&shared.config, kind, &path) {
                Ok(Moved::Yes) => {
                    moved += 1;
                    shared.tracker.release(&path);
                }
                // Another daemon on the same folder moved it: not an error, not ours to count.
                Ok(Moved::AlreadyGone) => shared.tracker.release(&path),
                Err(error) => {
                    tracing::error!(file = %path.display(), %error, "cannot move a committed file to done/; it stays in the inbox (its event is committed: a retry changes nothing)");
                    shared.tracker.give_up(&path);
                }
            }
        }
        Stats::add(&shared.stats.done, moved);
        metrics::counter!("etl_files_moved_total", "to" => "done").increment(moved);
    }
}

/// An INFO line every few seconds while work is pending: done, rate, files left and ETA.
async fn progress(shared: Arc<Shared>, stop: CancellationToken) {
    let every = Duration::from_secs(shared.config.progress_interval_secs.max(1));
    let mut last = shared.stats.snapshot();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        shared.publish_gauges();
        let now = shared.stats.snapshot();
        let left = shared.backlog();
        if now == last && left == 0 {
            continue;
        }
        let rate = (now.finished() - last.finished()) as f64 / every.as_secs_f64();
        let eta = if rate > 0.0 {
            format!("{:.0}s", left as f64 / rate)
        } else {
            "-".into()
        };
        tracing::info!(
            done = now.done,
            failed = now.rejected,
            applied = now.applied,
            stale = now.stale,
            left,
            rate = format!("{rate:.0}/s"),
            eta,
            "progress"
        );
        last = now;
    }
}

/// A named OS thread whose end can be awaited.
fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> oneshot::Receiver<()> {
    let (done, finished) = oneshot::channel();
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
