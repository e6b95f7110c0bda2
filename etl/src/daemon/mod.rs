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
use crate::load::fault::Health;
use crate::shutdown::Shutdown;
use crate::source::Intake;
use crate::stats::{Snapshot, Stats};

pub mod error;
pub mod progress;
pub mod sink;
pub mod sources;

pub use error::DaemonError;
pub use sink::Sink;

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
    // A configuration built in code (an embedding program, a test) is checked as a loaded one is.
    config.validate()?;
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
    let started_sink = sink::start(
        sink, &config, &catalog, mode, &stats, &health, &shutdown, &signal,
    );
    let Some(started_sink) = started_sink.await? else {
        return Ok(not_started());
    };
    let sink::Started {
        warehouse,
        events,
        task: sink_task,
        broker,
    } = started_sink;
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

    // The horizon the decoders refuse old events at is kept by the housekeeping, which only
    // `etl run` has (it belongs with the warehouse).
    let horizon = crate::lake::Horizon::default();
    let housekeeping = crate::housekeeping::start(
        config,
        &catalog,
        shared.warehouse.as_ref(),
        retention_plan,
        &horizon,
        shutdown.intake(),
    );
    let decoder = Arc::new(Decoder {
        max_future_skew: config.max_future_skew(),
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
    let ops = crate::ops::start(&shared, shutdown.intake());
    tracing::info!(?mode, workers = config.workers, readers = config.inbox.readers, data_dir = %config.data_dir.display(), "pipeline started");
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
    let http = ops.stop_all_but_http();
    // A lake pass cut short leaves temporary files and an unmoved watermark: the next pass
    // removes the former and exports the same rows again.
    for task in housekeeping {
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
