//! The daemon's wiring, and only that: builds the sink (the worker pool and the warehouse, or
//! the broker's publisher), the sources ([`sources`]), the decoder, the housekeeping passes
//! and the ops endpoints from a [`Config`], connects them, and shuts them down. The commands
//! and the tests start the very same daemon through [`run`] (or [`spawn`], which returns a
//! handle to stop it). Policy lives in the modules it wires.
//!
//! ```text
//! sources ──Record──▶ Intake: decode ──Event──▶ pool router ──▶ workers ──▶ PostgreSQL
//!    ▲                    │ rejected                               │ committed / refused
//!    └────────────────────┴──────────── Ack ◀─────────────────────┘
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::decode::Decoder;
use crate::forward::Publisher;
use crate::load::connect::Target;
use crate::load::fault::Health;
use crate::load::pool::Pool;
use crate::load::{DbError, Warehouse};
use crate::shutdown::Shutdown;
use crate::source::{Intake, SourceConfig};
use crate::stats::{Snapshot, Stats};

pub mod error;
pub mod progress;
pub mod sources;

pub use error::DaemonError;

pub use crate::ops::http::Shared;
pub use crate::source::Mode;

/// What the run did, printed at the end of a drain.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub stats: Snapshot,
    pub elapsed: Duration,
    /// False if the shutdown bound expired before everything in flight was committed.
    pub graceful: bool,
    /// Records the run could not finish (each logged as an ERROR); their sources still hold
    /// them (for the inbox: they are still in the inbox).
    pub stuck: usize,
}

/// A pipeline running on its own task, as [`spawn`] returns it.
pub struct Handle {
    signal: CancellationToken,
    task: tokio::task::JoinHandle<Result<Summary, DaemonError>>,
}

impl Handle {
    /// Asks for a graceful shutdown, as SIGTERM does.
    pub fn stop(&self) {
        self.signal.cancel();
    }

    /// Waits for the run to end (a drain ends by itself; a follow after [`Handle::stop`]).
    pub async fn finished(self) -> Result<Summary, DaemonError> {
        self.task.await.map_err(DaemonError::Task)?
    }

    /// Stops the pipeline and waits for it.
    pub async fn shutdown(self) -> Result<Summary, DaemonError> {
        self.stop();
        self.finished().await
    }
}

/// Where valid events go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// The worker pool and the warehouse (`etl run`).
    Warehouse,
    /// The broker (`etl forward`).
    Broker,
}

/// Starts [`run`] on its own task.
pub fn spawn(config: Config, mode: Mode) -> Handle {
    spawn_to(config, mode, Sink::Warehouse)
}

/// Starts [`run_to`] on its own task.
pub fn spawn_to(config: Config, mode: Mode, sink: Sink) -> Handle {
    let signal = CancellationToken::new();
    let task = tokio::spawn(run_to(config, mode, signal.clone(), sink));
    Handle { signal, task }
}

/// Runs the pipeline until `signal` fires (or, in drain mode, every source is drained), then
/// stops intake, commits what is in flight, lets the sources finish it, and returns within the
/// shutdown bound.
pub async fn run(
    config: Config,
    mode: Mode,
    signal: CancellationToken,
) -> Result<Summary, DaemonError> {
    run_to(config, mode, signal, Sink::Warehouse).await
}

/// [`run`], with the valid events going to `sink`.
pub async fn run_to(
    config: Config,
    mode: Mode,
    signal: CancellationToken,
    sink: Sink,
) -> Result<Summary, DaemonError> {
    let started = Instant::now();
    let not_started = || Summary {
        stats: Snapshot::default(),
        elapsed: started.elapsed(),
        graceful: true,
        stuck: 0,
    };
    let stats = Arc::new(Stats::default());
    let catalog = Catalog::load(&config)?;
    tracing::info!(types = ?catalog.origins(), "event types declared");
    crate::ops::metrics::handle();
    crate::ops::metrics::describe(&catalog);
    // Checked before anything starts: an archive folder the retention cannot use is a
    // configuration error, not a warning an hour later. (`etl forward` keeps its folders: it
    // has no warehouse to take the retention's lock in.)
    let retention_plan = match sink {
        Sink::Warehouse => crate::housekeeping::folders::Plan::from_config(&config)?,
        Sink::Broker => None,
    };
    let shutdown = Shutdown::new(&signal);
    let health = Arc::new(Health::default());

    // The sink first: nothing is read before its destination is ready.
    let (warehouse, events, sink_task, broker) = match sink {
        Sink::Warehouse => {
            let migrations =
                crate::load::migrate::read(&config.migrations_dir).map_err(|source| {
                    DaemonError::Io {
                        what: format!("cannot read {}", config.migrations_dir.display()),
                        source,
                    }
                })?;
            // Each API source holds one connection while it pulls (its lock, its positions).
            let apis = config
                .sources()
                .iter()
                .filter(|s| matches!(s, SourceConfig::Http(_)))
                .count();
            let warehouse = Warehouse::open(
                Target::from_config(&config).map_err(DbError::from)?,
                config.workers + 2 + apis,
            )?;
            let prepared = crate::startup::prepare_warehouse(
                &warehouse,
                &migrations,
                &catalog,
                &config,
                config.startup_wait_for(mode),
                &signal,
            )
            .await?;
            let Some(applied) = prepared else {
                return Ok(not_started());
            };
            tracing::info!(?applied, "database ready");
            let pool = Pool::start(
                &config,
                warehouse.clone(),
                stats.clone(),
                health.clone(),
                shutdown.hard().clone(),
            );
            (Some(warehouse), pool.sender, pool.task, None)
        }
        Sink::Broker => {
            let Some(client) =
                crate::broker::connect(&config, config.startup_wait_for(mode), &signal).await?
            else {
                return Ok(not_started());
            };
            let js = async_nats::jetstream::new(client.clone());
            crate::broker::ensure_stream(&js, &config).await?;
            let publisher = Publisher::start(client, &config, shutdown.hard().clone());
            tracing::info!(stream = %config.nats_stream, url = %crate::broker::shown_url(&config), "forwarding to the broker");
            (
                None,
                publisher.sender,
                publisher.task,
                Some(publisher.health),
            )
        }
    };
    let sources = sources::build(&config, &catalog, &stats, warehouse.as_ref())?;

    let shared = Arc::new(Shared {
        stats,
        warehouse,
        broker,
        health,
        sources,
        config,
    });
    let config = &shared.config;

    // The lake (exports, raw retention), the file folders' retention and the horizon the
    // decoders refuse old events at belong with the warehouse, so only `etl run` has them.
    let horizon = crate::lake::Horizon::default();
    let mut lake_tasks = Vec::new();
    if let Some(warehouse) = &shared.warehouse {
        lake_tasks.push(tokio::spawn(crate::housekeeping::horizon::follow_horizon(
            warehouse.clone(),
            horizon.clone(),
            shutdown.intake().clone(),
        )));
        if let Some(schedule) = crate::housekeeping::lake::Schedule::from_config(config) {
            lake_tasks.push(tokio::spawn(crate::housekeeping::lake::schedule(
                config.clone(),
                catalog.clone(),
                schedule,
                shutdown.intake().clone(),
            )));
        }
        if let Some(plan) = retention_plan {
            lake_tasks.push(tokio::spawn(crate::housekeeping::folders::schedule(
                config.clone(),
                plan,
                shutdown.intake().clone(),
            )));
        }
    }
    let decoder = Arc::new(Decoder {
        max_future_skew: config.max_future_skew(),
        keep_bytes: sink == Sink::Broker,
        horizon,
    });
    let intake = Intake::new(decoder, events);
    let mut discoveries = Vec::new();
    let mut finished = Vec::new();
    for source in &shared.sources {
        let started = source
            .clone()
            .start(mode, intake.clone(), shutdown.intake().clone());
        discoveries.push(started.discovery);
        finished.extend(started.finished);
    }
    // The sources hold the only senders to the pool now: it ends once they have all stopped.
    drop(intake);

    let progress = tokio::spawn(progress::report(shared.clone(), shutdown.intake().clone()));
    let webhook = crate::ops::webhook::Webhook::from_config(config);
    let probe = shared.warehouse.clone().map(|warehouse| {
        let alert = webhook
            .clone()
            .map(|w| crate::ops::webhook::DatabaseAlert::new(w, config));
        // The ping comes often enough to honour a short alert threshold.
        let every = crate::ops::probe::EVERY
            .min(Duration::from_secs(config.alert_database_down_secs.max(1)));
        tokio::spawn(crate::ops::probe::database(
            warehouse,
            alert,
            every,
            shutdown.intake().clone(),
        ))
    });
    let summaries = webhook.map(|webhook| {
        let (stats, config, stop) = (
            shared.stats.clone(),
            shared.config.clone(),
            shutdown.intake().clone(),
        );
        tokio::spawn(
            async move { crate::ops::webhook::rejections(webhook, stats, &config, stop).await },
        )
    });
    let http = (!config.http_addr.is_empty()).then(|| {
        tokio::spawn(crate::ops::http::serve(
            config.http_addr.clone(),
            shared.clone(),
            shutdown.intake().clone(),
        ))
    });
    tracing::info!(?mode, workers = config.workers, readers = config.readers, data_dir = %config.data_dir.display(), "pipeline started");
    // The shutdown clock starts at the signal, even if intake is blocked on full queues (a
    // database outage with a backlog): the hard stop then unblocks every stage in turn.
    // All at once: a source that fails (or panics) is noticed at once, not only after the
    // sources before it in the list have ended (in follow mode the inbox never does).
    let discovered = async {
        futures::future::try_join_all(discoveries.into_iter().map(|discovery| async {
            discovery
                .await
                .map_err(DaemonError::Task)?
                .map_err(DaemonError::from)
        }))
        .await
        .map(|_| ())
    };
    tokio::select! {
        ended = discovered => ended?,
        _ = shutdown.intake().cancelled() => {}
    }
    shutdown.stop_intake();
    progress.abort();
    if let Some(probe) = probe {
        probe.abort();
    }
    if let Some(summaries) = summaries {
        summaries.abort();
    }
    // A lake pass cut short leaves temporary files and an unmoved watermark: the next pass
    // removes the former and exports the same rows again.
    for task in lake_tasks {
        task.abort();
    }

    // Graceful part: the sources stop reading, the pool commits what it holds, the sources
    // finish what their acks tell them.
    let finish = async {
        let _ = sink_task.await;
        for thread in finished {
            let _ = thread.await;
        }
        if let Some(http) = http {
            let _ = http.await;
        }
    };
    let graceful = tokio::time::timeout(config.shutdown_timeout(), finish)
        .await
        .is_ok();
    if !graceful {
        shutdown.hard_stop();
        tracing::warn!(
            bound_secs = config.shutdown_timeout_secs,
            in_flight = shared.in_flight(),
            "shutdown bound reached; uncommitted files stay in the inbox for the next run"
        );
    }
    Ok(Summary {
        stats: shared.stats.snapshot(),
        elapsed: started.elapsed(),
        graceful,
        stuck: shared.sources.iter().map(|s| s.stuck()).sum(),
    })
}
