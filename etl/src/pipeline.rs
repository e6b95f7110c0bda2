//! Wiring only: builds the sources, the decoder and the worker pool from a [`Config`], connects
//! them, and shuts them down. `main` and the tests start the very same pipeline through [`run`]
//! (or [`spawn`], which returns a handle to stop it).
//!
//! ```text
//! sources ──Record──▶ Intake: decode ──Event──▶ pool router ──▶ workers ──▶ PostgreSQL
//!    ▲                    │ rejected                               │ committed / refused
//!    └────────────────────┴──────────── Ack ◀─────────────────────┘
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::decode::Decoder;
use crate::forward::Publisher;
use crate::load::connect::Target;
use crate::load::fault::Health;
use crate::load::Warehouse;
use crate::shutdown::Shutdown;
use crate::source::http::HttpSource;
use crate::source::inbox::{self, Inbox};
use crate::source::jetstream::JetStream;
use crate::source::{Intake, Source, SourceConfig};
use crate::stats::{Snapshot, Stats};
use crate::transform::pool::Pool;

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
    task: tokio::task::JoinHandle<anyhow::Result<Summary>>,
}

impl Handle {
    /// Asks for a graceful shutdown, as SIGTERM does.
    pub fn stop(&self) {
        self.signal.cancel();
    }

    /// Waits for the run to end (a drain ends by itself; a follow after [`Handle::stop`]).
    pub async fn finished(self) -> anyhow::Result<Summary> {
        self.task.await.context("the pipeline task failed")?
    }

    /// Stops the pipeline and waits for it.
    pub async fn shutdown(self) -> anyhow::Result<Summary> {
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

/// The sources the configuration names; the inbox when it names none. The tables themselves
/// (one inbox at most, distinct names, each HTTP source's settings) were checked when the
/// configuration was loaded (`Config::load`).
fn build_sources(
    config: &Config,
    catalog: &Catalog,
    stats: &Arc<Stats>,
    warehouse: Option<&Warehouse>,
) -> anyhow::Result<Vec<Arc<dyn Source>>> {
    let mut sources: Vec<Arc<dyn Source>> = Vec::new();
    for source in config.sources() {
        match source {
            SourceConfig::Inbox {} => {
                inbox::files::ensure_layout(config, catalog)
                    .context("cannot create the data folder layout")?;
                sources.push(Arc::new(Inbox::new(config, catalog, stats.clone())));
            }
            SourceConfig::Jetstream {} => {
                let Some(warehouse) = warehouse else {
                    anyhow::bail!(
                        "etl forward reads the inbox; the jetstream source is for etl run"
                    );
                };
                sources.push(Arc::new(JetStream::new(
                    config,
                    catalog,
                    stats.clone(),
                    warehouse.clone(),
                )));
            }
            SourceConfig::Http(source) => {
                let Some(warehouse) = warehouse else {
                    anyhow::bail!("etl forward reads the inbox; http sources are for etl run");
                };
                sources.push(Arc::new(HttpSource::new(
                    &source,
                    config,
                    catalog,
                    stats.clone(),
                    warehouse.clone(),
                )?));
            }
        }
    }
    Ok(sources)
}

/// Runs the pipeline until `signal` fires (or, in drain mode, every source is drained), then
/// stops intake, commits what is in flight, lets the sources finish it, and returns within the
/// shutdown bound.
pub async fn run(config: Config, mode: Mode, signal: CancellationToken) -> anyhow::Result<Summary> {
    run_to(config, mode, signal, Sink::Warehouse).await
}

/// [`run`], with the valid events going to `sink`.
pub async fn run_to(
    config: Config,
    mode: Mode,
    signal: CancellationToken,
    sink: Sink,
) -> anyhow::Result<Summary> {
    // A configuration built in code (an embedding program, a test) is checked as a loaded one is.
    config.validate()?;
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
        Sink::Warehouse => crate::folder_retention::Plan::from_config(&config)?,
        Sink::Broker => None,
    };
    let shutdown = Shutdown::new(&signal);
    let health = Arc::new(Health::default());

    // The sink first: nothing is read before its destination is ready.
    let (warehouse, events, sink_task, broker) = match sink {
        Sink::Warehouse => {
            let migrations = crate::load::migrate::read(&config.database.migrations_dir)
                .with_context(|| {
                    format!("cannot read {}", config.database.migrations_dir.display())
                })?;
            // Each API source holds one connection while it pulls (its lock, its positions).
            let apis = config
                .sources()
                .iter()
                .filter(|s| matches!(s, SourceConfig::Http(_)))
                .count();
            let warehouse =
                Warehouse::open(Target::from_config(&config)?, config.workers + 2 + apis)?;
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
            tracing::info!(stream = %config.broker.stream, url = %crate::broker::shown_url(&config), "forwarding to the broker");
            (
                None,
                publisher.sender,
                publisher.task,
                Some(publisher.health),
            )
        }
    };
    let sources = build_sources(&config, &catalog, &stats, warehouse.as_ref())?;

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
        lake_tasks.push(tokio::spawn(crate::lake::follow_horizon(
            warehouse.clone(),
            horizon.clone(),
            shutdown.intake().clone(),
        )));
        if let Some(schedule) = crate::lake::Schedule::from_config(config) {
            lake_tasks.push(tokio::spawn(crate::lake::schedule(
                config.clone(),
                catalog.clone(),
                schedule,
                shutdown.intake().clone(),
            )));
        }
        if let Some(plan) = retention_plan {
            lake_tasks.push(tokio::spawn(crate::folder_retention::schedule(
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

    let progress = tokio::spawn(progress(shared.clone(), shutdown.intake().clone()));
    let webhook = crate::ops::webhook::Webhook::from_config(config);
    let probe = shared.warehouse.clone().map(|warehouse| {
        let alert = webhook
            .clone()
            .map(|w| crate::ops::webhook::DatabaseAlert::new(w, config));
        // The ping comes often enough to honour a short alert threshold.
        let every =
            crate::ops::probe::EVERY.min(Duration::from_secs(config.alerts.database_down_secs));
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
    tracing::info!(?mode, workers = config.workers, readers = config.inbox.readers, data_dir = %config.data_dir.display(), "pipeline started");
    // The shutdown clock starts at the signal, even if intake is blocked on full queues (a
    // database outage with a backlog): the hard stop then unblocks every stage in turn.
    // All at once: a source that fails (or panics) is noticed at once, not only after the
    // sources before it in the list have ended (in follow mode the inbox never does).
    let discovered = async {
        futures::future::try_join_all(
            discoveries
                .into_iter()
                .map(|discovery| async { discovery.await.context("a source failed")? }),
        )
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

/// An INFO line every few seconds while work is pending: done, rate, records left and ETA.
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
