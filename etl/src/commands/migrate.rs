//! `etl migrate`: the database migrations applied (within `--wait`), then exit.

use super::{stop_on_signal, CommandError, Outcome};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::load::connect::Target;
use crate::load::Warehouse;

/// Applies the migrations; `Failed` if a signal came while waiting for the warehouse.
pub async fn migrate(config: Config) -> Result<Outcome, CommandError> {
    let catalog = Catalog::load(&config)?;
    let migrations =
        crate::load::migrate::read(&config.database.migrations_dir).map_err(|source| {
            CommandError::Io {
                context: format!("cannot read {}", config.database.migrations_dir.display()),
                source,
            }
        })?;
    let warehouse = Warehouse::open(Target::from_config(&config)?, 1)?;
    let stop = stop_on_signal();
    let prepared = crate::startup::prepare_warehouse(
        &warehouse,
        &migrations,
        &catalog,
        &config,
        config.startup_wait,
        &stop,
    )
    .await?;
    let Some(applied) = prepared else {
        tracing::warn!("interrupted while waiting for the warehouse: nothing was applied");
        return Ok(Outcome::Failed);
    };
    tracing::info!(?applied, "migrations applied");
    Ok(Outcome::Done)
}
