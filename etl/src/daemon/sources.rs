//! The sources the configuration names, built and checked before anything starts.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::config::{Config, SourceConfig};
use crate::daemon::error::DaemonError;
use crate::load::Warehouse;
use crate::source::http::HttpSource;
use crate::source::inbox::{self, Inbox};
use crate::source::jetstream::JetStream;
use crate::source::Source;
use crate::stats::Stats;

/// The sources the configuration names; the inbox when it names none.
pub fn build(
    config: &Config,
    catalog: &Catalog,
    stats: &Arc<Stats>,
    warehouse: Option<&Warehouse>,
) -> Result<Vec<Arc<dyn Source>>, DaemonError> {
    let mut sources: Vec<Arc<dyn Source>> = Vec::new();
    let mut inbox_seen = false;
    let mut names = std::collections::HashSet::new();
    for source in config.sources() {
        match source {
            SourceConfig::Inbox {} => {
                // Two inbox sources would race each other for the same files.
                if inbox_seen {
                    return Err(DaemonError::Sources(
                        "the inbox source is configured twice".into(),
                    ));
                }
                inbox_seen = true;
                inbox::files::ensure_layout(config, catalog).map_err(|source| DaemonError::Io {
                    what: format!(
                        "cannot create the data folder layout under {}",
                        config.data_dir.display()
                    ),
                    source,
                })?;
                sources.push(Arc::new(Inbox::new(config, catalog, stats.clone())));
            }
            SourceConfig::Jetstream {} => {
                let Some(warehouse) = warehouse else {
                    return Err(DaemonError::Sources(
                        "etl forward reads the inbox; the jetstream source is for etl run".into(),
                    ));
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
                    return Err(DaemonError::Sources(
                        "etl forward reads the inbox; http sources are for etl run".into(),
                    ));
                };
                if !names.insert(source.name.clone()) {
                    return Err(DaemonError::Sources(format!(
                        "two http sources are named {:?}; each needs its own name (its position, its landing folder)",
                        source.name
                    )));
                }
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
