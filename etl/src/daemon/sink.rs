//! Where valid events go, started before any source reads: the worker pool and the warehouse
//! (migrated and checked first), or, for `etl forward`, the broker's publisher.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::{Config, Mode, SourceConfig};
use crate::daemon::error::DaemonError;
use crate::event::Event;
use crate::forward::{BrokerHealth, Publisher};
use crate::load::connect::Target;
use crate::load::fault::Health;
use crate::load::pool::Pool;
use crate::load::{DbError, Warehouse};
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// Where valid events go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// The worker pool and the warehouse (`etl run`).
    Warehouse,
    /// The broker (`etl forward`).
    Broker,
}

/// A started sink.
pub struct Started {
    /// The warehouse (none for `etl forward`).
    pub warehouse: Option<Warehouse>,
    /// Where the decoder sends valid events.
    pub events: mpsc::Sender<Event>,
    /// Ends once every sender is gone and what it holds is committed or published.
    pub task: tokio::task::JoinHandle<()>,
    /// For `etl forward`: whether the broker takes publishes.
    pub broker: Option<BrokerHealth>,
}

/// Starts `sink`: None if `signal` fired while it waited for the warehouse or the broker.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    sink: Sink,
    config: &Config,
    catalog: &Catalog,
    mode: Mode,
    stats: &Arc<Stats>,
    health: &Arc<Health>,
    shutdown: &Shutdown,
    signal: &CancellationToken,
) -> Result<Option<Started>, DaemonError> {
    match sink {
        Sink::Warehouse => {
            let migrations =
                crate::load::migrate::read(&config.database.migrations_dir).map_err(|source| {
                    DaemonError::Io {
                        what: format!("cannot read {}", config.database.migrations_dir.display()),
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
                Target::from_config(config).map_err(DbError::from)?,
                config.workers + 2 + apis,
            )?;
            let prepared = crate::startup::prepare_warehouse(
                &warehouse,
                &migrations,
                catalog,
                config,
                config.startup_wait_for(mode),
                signal,
            )
            .await?;
            let Some(applied) = prepared else {
                return Ok(None);
            };
            tracing::info!(?applied, "database ready");
            let pool = Pool::start(
                config,
                warehouse.clone(),
                stats.clone(),
                health.clone(),
                shutdown.hard().clone(),
            );
            Ok(Some(Started {
                warehouse: Some(warehouse),
                events: pool.sender,
                task: pool.task,
                broker: None,
            }))
        }
        Sink::Broker => {
            let Some(client) =
                crate::broker::connect(config, config.startup_wait_for(mode), signal).await?
            else {
                return Ok(None);
            };
            let js = async_nats::jetstream::new(client.clone());
            crate::broker::ensure_stream(&js, config).await?;
            let publisher = Publisher::start(client, config, shutdown.hard().clone());
            tracing::info!(stream = %config.broker.stream, url = %crate::broker::shown_url(config), "forwarding to the broker");
            Ok(Some(Started {
                warehouse: None,
                events: publisher.sender,
                task: publisher.task,
                broker: Some(publisher.health),
            }))
        }
    }
}
