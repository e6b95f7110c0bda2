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

/// The sources the configuration names; the inbox when it names none. The tables themselves
/// (one inbox at most, distinct names, each HTTP source's settings) were checked with the
/// configuration (`Config::validate`).
pub fn build(
    config: &Config,
    catalog: &Catalog,
    stats: &Arc<Stats>,
    warehouse: Option<&Warehouse>,
) -> Result<Vec<Arc<dyn Source>>, DaemonError> {
    let mut sources: Vec<Arc<dyn Source>> = Vec::new();
    for source in config.sources() {
        match source {
            SourceConfig::Inbox {} => {
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
