//! `etl pull SOURCE --from --to`: one window of an HTTP source, once, and the checks of its
//! arguments (a source that is configured, a window that is not empty).

use super::run::run_pipeline;
use super::{CommandError, Outcome};
use crate::config::http::{now_in_seconds, parse_instant};
use crate::config::Config;
use crate::daemon::Sink;
use crate::source::http::Window;
use crate::source::SourceConfig;

/// Pulls the window of the source named `source`, then exits.
pub async fn pull(
    mut config: Config,
    source: &str,
    from: &str,
    to: Option<&str>,
) -> Result<Outcome, CommandError> {
    let Some(mut api) = config.sources.iter().find_map(|s| match s {
        SourceConfig::Http(api) if api.name == source => Some(api.clone()),
        _ => None,
    }) else {
        let names: Vec<&str> = config
            .sources
            .iter()
            .filter_map(|s| match s {
                SourceConfig::Http(api) => Some(api.name.as_str()),
                _ => None,
            })
            .collect();
        return Err(CommandError::Refused(format!(
            "no http source is named {source:?} in [[sources]] (configured: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )));
    };
    api.window = Some(window(from, to)?);
    config.sources = vec![SourceConfig::Http(api)];
    run_pipeline(config, true, Sink::Warehouse).await
}

/// The window `etl pull --from --to` names.
fn window(from: &str, to: Option<&str>) -> Result<Window, CommandError> {
    let from = parse_instant(from).map_err(|e| CommandError::Refused(format!("--from: {e}")))?;
    let to = match to {
        Some(to) => parse_instant(to).map_err(|e| CommandError::Refused(format!("--to: {e}")))?,
        None => now_in_seconds(),
    };
    if from >= to {
        return Err(CommandError::Refused(format!(
            "the window is empty: --from {} is not before --to {}",
            from.to_rfc3339(),
            to.to_rfc3339()
        )));
    }
    Ok(Window { from, to })
}
