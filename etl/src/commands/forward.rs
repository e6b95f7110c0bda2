//! `etl forward [--drain]`: the edge agent, the inbox published to the broker.

use super::run::run_pipeline;
use super::{CommandError, Outcome};
use crate::config::Config;
use crate::daemon::Sink;
use crate::source::SourceConfig;

/// Reads the inbox like `etl run`, publishing each valid event to the broker.
pub async fn forward(mut config: Config, drain: bool) -> Result<Outcome, CommandError> {
    config.sources = vec![SourceConfig::Inbox {}];
    run_pipeline(config, drain, Sink::Broker).await
}
