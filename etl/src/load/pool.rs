//! The worker pool: a router sends each event to the worker owning its entity, and each worker
//! applies batches to the warehouse: retrying while the database has trouble that is not about
//! the events, and isolating the events it refuses so that they never stall the others.
//!
//! The pool knows nothing of sources: once a transaction has committed it resolves the
//! [`Ack`](crate::event::Ack) of each of its events, and a refused event's ack with the
//! database's reason. Nothing is acknowledged before its commit.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::event::Fate;
use crate::event::{Event, Kind};
use crate::load::batch::Batch;
use crate::load::fault::{Fault, Health, Refusal};
use crate::load::{Applied, Warehouse};
use crate::ops::metrics::{BATCH_SIZE, CHANNEL_DEPTH, COMMIT_SECONDS};
use crate::outcome;
use crate::rejection::Rejection;
use crate::stats::Stats;

/// The worker owning an entity. One entity is only ever written by one worker, so two workers
/// never contend for a row and per-entity order within a worker is kept.
pub fn partition(kind: &Kind, entity_id: i64, workers: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    (kind, entity_id).hash(&mut hasher);
    (hasher.finish() % workers.max(1) as u64) as usize
}

/// Most events the router takes from the inbound channel at once.
const ROUTER_RUN: usize = 256;

/// Attempts at a batch that fails with an error of unknown class (neither about the connection
/// nor about the rows, see [`Fault::Unknown`]) before it is split, and a single event rejected.
pub const UNKNOWN_FAULT_ATTEMPTS: u32 = 3;

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
    health: Arc<Health>,
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
        health: Arc<Health>,
        hard_stop: CancellationToken,
    ) -> Pool {
        let (sender, mut inbound) = mpsc::channel::<Event>(config.channel_capacity);
        let shared = Arc::new(Shared {
            warehouse,
            stats,
            health,
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
            let depth = metrics::gauge!(CHANNEL_DEPTH);
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
        if !apply_isolating(id, &shared, std::mem::take(&mut buffer)).await {
            // Hard stop: the events are dropped unresolved, so their sources offer them again.
            return;
        }
    }
}

/// Applies `events`, isolating those the database refuses: a refused batch is split in halves
/// and each half applied on its own, until every refused event stands alone and is rejected.
/// Everything else commits (a poison event costs about 2·log2(batch) extra transactions, once).
/// Splitting is safe because applying is idempotent and order-independent. Each part's acks
/// are resolved as soon as it has committed (or its lone event is refused). Returns false only
/// on a hard stop.
async fn apply_isolating(worker: usize, shared: &Shared, events: Vec<Event>) -> bool {
    let mut parts = vec![events];
    while let Some(part) = parts.pop() {
        let batch = Batch::new(part);
        let Some(result) = apply_with_retry(worker, shared, &batch).await else {
            return false;
        };
        match result {
            Ok(applied) => {
                outcome::applied(&shared.stats, &applied);
                for event in batch.events {
                    event.ack.resolve(Fate::Committed);
                }
            }
            Err(refusal) if batch.len() == 1 => {
                let rejection = Rejection::refused(refusal);
                for event in batch.events {
                    event.ack.resolve(Fate::Rejected(rejection.clone()));
                }
            }
            Err(refusal) => {
                tracing::info!(
                    worker,
                    events = batch.len(),
                    sqlstate = refusal.sqlstate,
                    "the database refused a row of this batch; splitting it to find the event"
                );
                let mut first = batch.events;
                let second = first.split_off(first.len() / 2);
                parts.push(second);
                parts.push(first);
            }
        }
    }
    true
}

/// Applies a batch, retrying with capped exponential backoff while the database has trouble
/// that is not about the events (a [`Fault::Transient`]): no event is ever rejected for that.
/// Returns the server's refusal when the rows themselves are refused ([`Fault::Refused`]), or
/// when an error of unknown class persists for [`UNKNOWN_FAULT_ATTEMPTS`]; `None` only on a
/// hard stop.
async fn apply_with_retry(
    worker: usize,
    shared: &Shared,
    batch: &Batch,
) -> Option<Result<Applied, Refusal>> {
    let mut backoff = Backoff::new(Duration::from_millis(100), shared.max_backoff);
    let mut unknown_attempts: u32 = 0;
    loop {
        let started = std::time::Instant::now();
        let error = match shared.warehouse.apply(batch).await {
            Ok(applied) => {
                metrics::histogram!(COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::histogram!(BATCH_SIZE).record(batch.len() as f64);
                if let Some(over) = shared.health.recovered() {
                    tracing::info!(
                        worker,
                        cause = over.cause,
                        "the database takes batches again"
                    );
                }
                return Some(Ok(applied));
            }
            Err(error) => error,
        };
        outcome::db_error(&shared.stats);
        match Fault::of(&error) {
            Fault::Refused(refusal) => return Some(Err(refusal)),
            Fault::Unknown(refusal) => {
                unknown_attempts += 1;
                if unknown_attempts >= UNKNOWN_FAULT_ATTEMPTS {
                    return Some(Err(refusal));
                }
                tracing::warn!(
                    worker,
                    attempt = unknown_attempts,
                    events = batch.len(),
                    sqlstate = refusal.sqlstate,
                    server_message = refusal.message,
                    "the database refused the batch with an error of unknown class; retrying it"
                );
            }
            Fault::Transient(trouble) => {
                if shared.health.trouble(&trouble) {
                    let what = if trouble.server_answered {
                        "the database answered but cannot take batches; retrying them (their files stay in the inbox)"
                    } else {
                        "database unavailable; retrying the batches (their files stay in the inbox)"
                    };
                    tracing::error!(worker, cause = trouble.cause, "{what}");
                } else {
                    tracing::debug!(worker, cause = trouble.cause, "still retrying");
                }
            }
        }
        if !backoff.wait(&shared.hard_stop).await {
            return None;
        }
        outcome::db_retry();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entity_always_lands_on_the_same_worker_and_all_workers_get_some() {
        let catalog = crate::catalog::Catalog::builtin().expect("built-in types");
        let cards = catalog.get("cards").expect("cards");
        let mut used = [false; 4];
        for id in 0..1000 {
            let lane = partition(cards, id, 4);
            assert_eq!(lane, partition(cards, id, 4));
            used[lane] = true;
        }
        assert!(used.iter().all(|u| *u));
    }
}
