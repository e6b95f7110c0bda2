//! The worker pool: a router sends each event to the worker owning its entity, and each worker
//! applies batches to the warehouse, retrying database failures until they pass.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Batch;
use crate::config::Config;
use crate::event::{Event, Kind};
use crate::load::{Applied, Warehouse};
use crate::stats::Stats;

/// Files whose events are committed, on their way to `done/`.
pub type Committed = Vec<(Kind, PathBuf)>;

/// The worker owning an entity. One entity is only ever written by one worker, so two workers
/// never contend for a row and per-entity order within a worker is kept.
pub fn partition(kind: Kind, entity_id: i64, workers: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    (kind, entity_id).hash(&mut hasher);
    (hasher.finish() % workers.max(1) as u64) as usize
}

/// Most events the router takes from the inbound channel at once.
const ROUTER_RUN: usize = 256;

/// A running pool. Dropping every clone of its sender lets it finish: each worker commits
/// what it holds and the pool's task ends.
pub struct Pool {
    pub sender: mpsc::Sender<Event>,
    pub task: tokio::task::JoinHandle<()>,
}

/// What every worker shares.
struct Shared {
    warehouse: Warehouse,
    stats: Arc<Stats>,
    committed: flume::Sender<Committed>,
    batch_size: usize,
    batch_timeout: Duration,
    max_backoff: Duration,
    /// Fired when a graceful shutdown runs out of time: stop retrying a dead database.
    hard_stop: CancellationToken,
}

impl Pool {
    pub fn start(
        config: &Config,
        warehouse: Warehouse,
        stats: Arc<Stats>,
        committed: flume::Sender<Committed>,
        hard_stop: CancellationToken,
    ) -> Pool {
        let (sender, mut inbound) = mpsc::channel::<Event>(config.channel_capacity);
        let shared = Arc::new(Shared {
            warehouse,
            stats,
            committed,
            batch_size: config.batch_size,
            batch_timeout: config.batch_timeout(),
            max_backoff: config.max_retry_backoff(),
            hard_stop,
        });
        let mut workers = JoinSet::new();
        let mut lanes = Vec::with_capacity(config.workers);
        for id in 0..config.workers {
            let (lane, rx) = mpsc::channel::<Event>(config.batch_size.max(config.channel_capacity));
            lanes.push(lane);
            workers.spawn(worker(id, rx, shared.clone()));
        }
        let task = tokio::spawn(async move {
            // Events are taken in runs, not one by one: one wake-up and one gauge update per
            // run instead of per event. The gauge handle is looked up once.
            let depth = metrics::gauge!("etl_channel_depth");
            let mut run = Vec::with_capacity(ROUTER_RUN);
            'route: while inbound.recv_many(&mut run, ROUTER_RUN).await > 0 {
                depth.set(inbound.len() as f64);
                for event in run.drain(..) {
                    let lane = partition(event.kind(), event.entity_id(), lanes.len());
                    if lanes[lane].send(event).await.is_err() {
                        break 'route; // a worker is gone: only happens on a hard stop
                    }
                }
            }
            drop(lanes); // lets each worker drain its lane, commit, and end
            while workers.join_next().await.is_some() {}
        });
        Pool { sender, task }
    }
}

async fn worker(id: usize, mut lane: mpsc::Receiver<Event>, shared: Arc<Shared>) {
    let mut buffer = Vec::with_capacity(shared.batch_size);
    loop {
        // Wait for a first event, then gather more until the batch is full or its time is up:
        // a lone event waits at most `batch_timeout`, a backlog fills whole batches.
        if lane.recv_many(&mut buffer, shared.batch_size).await == 0 {
            return; // lane closed and empty
        }
        let deadline = tokio::time::Instant::now() + shared.batch_timeout;
        while buffer.len() < shared.batch_size {
            let room = shared.batch_size - buffer.len();
            match tokio::time::timeout_at(deadline, lane.recv_many(&mut buffer, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let batch = Batch::new(std::mem::take(&mut buffer));
        let Some(applied) = apply_with_retry(id, &shared, &batch).await else {
            return; // hard stop: the files stay in the inbox for the next run
        };
        account(&shared.stats, &applied);
        let files: Committed = batch
            .events
            .into_iter()
            .map(|e| (e.meta.kind, e.source))
            .collect();
        if shared.committed.send_async(files).await.is_err() {
            return;
        }
    }
}

/// Applies a batch, retrying with capped exponential backoff. A database error is never the
/// events' fault, so they are never rejected for it. Returns `None` only on a hard stop.
async fn apply_with_retry(worker: usize, shared: &Shared, batch: &Batch) -> Option<Applied> {
    let mut backoff = Duration::from_millis(100);
    let mut attempt: u32 = 0;
    loop {
        let started = std::time::Instant::now();
        match shared.warehouse.apply(batch).await {
            Ok(applied) => {
                metrics::histogram!("etl_commit_seconds").record(started.elapsed().as_secs_f64());
                metrics::histogram!("etl_batch_size").record(batch.len() as f64);
                if attempt > 0 {
                    tracing::info!(
                        worker,
                        attempts = attempt + 1,
                        "database is back; batch committed"
                    );
                }
                return Some(applied);
            }
            Err(error) => {
                attempt += 1;
                Stats::add(&shared.stats.db_errors, 1);
                metrics::counter!("etl_db_errors_total").increment(1);
                tracing::error!(
                    worker,
                    attempt,
                    events = batch.len(),
                    retry_in_ms = backoff.as_millis() as u64,
                    %error,
                    "database unavailable; will retry the batch (its files stay in the inbox)"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.hard_stop.cancelled() => return None,
                }
                metrics::counter!("etl_db_retries_total").increment(1);
                backoff = (backoff * 2).min(shared.max_backoff);
            }
        }
    }
}

fn account(stats: &Stats, applied: &Applied) {
    for kind in Kind::ALL {
        let events = applied.events[kind as usize];
        let changed = applied.changed[kind as usize].min(events);
        Stats::add(&stats.applied, changed);
        Stats::add(&stats.stale, events - changed);
        metrics::counter!("etl_events_applied_total", "type" => kind.as_str()).increment(changed);
        metrics::counter!("etl_events_stale_total", "type" => kind.as_str())
            .increment(events - changed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entity_always_lands_on_the_same_worker_and_all_workers_get_some() {
        let mut used = [false; 4];
        for id in 0..1000 {
            let lane = partition(Kind::Card, id, 4);
            assert_eq!(lane, partition(Kind::Card, id, 4));
            used[lane] = true;
        }
        assert!(used.iter().all(|u| *u));
    }
}
