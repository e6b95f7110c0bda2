//! `etl run [--drain] [--source S]`: the daemon (or one drain) into the warehouse, and the
//! pipeline's closing summary that `forward` and `pull` share.

use super::{stop_on_signal, CommandError, Outcome};
use crate::cli::SourceArg;
use crate::config::Config;
use crate::daemon::{self, Mode, Sink};
use crate::source::SourceConfig;

/// `etl run`: the configured sources, or only the one `--source` names.
pub async fn run(
    mut config: Config,
    drain: bool,
    source: Option<SourceArg>,
) -> Result<Outcome, CommandError> {
    if let Some(source) = source {
        config.sources = vec![match source {
            SourceArg::Inbox => SourceConfig::Inbox {},
            SourceArg::Jetstream => SourceConfig::Jetstream {},
        }];
    }
    run_pipeline(config, drain, Sink::Warehouse).await
}

/// The pipeline until a signal (or drained), then its summary.
pub(super) async fn run_pipeline(
    config: Config,
    drain: bool,
    sink: Sink,
) -> Result<Outcome, CommandError> {
    let shutdown = stop_on_signal();
    let mode = if drain { Mode::Drain } else { Mode::Follow };
    let summary = daemon::run_to(config, mode, shutdown, sink).await?;
    let s = summary.stats;
    let secs = summary.elapsed.as_secs_f64();
    tracing::info!(
        applied = s.applied,
        stale = s.stale,
        failed = s.rejected,
        done = s.done,
        db_errors = s.db_errors,
        elapsed_s = format!("{secs:.2}"),
        rate = format!("{:.0}/s", s.finished() as f64 / secs.max(1e-9)),
        graceful = summary.graceful,
        "finished"
    );
    if summary.stuck > 0 {
        tracing::error!(
            records = summary.stuck,
            "some records could not be finished (see the ERROR lines above); their sources still hold them (files stay in the inbox, an API pull resumes from its stored position)"
        );
        return Ok(Outcome::Failed);
    }
    Ok(Outcome::Done)
}
