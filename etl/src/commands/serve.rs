//! `etl serve [--listen ADDR]`: the read API until SIGINT/SIGTERM.

use super::{stop_on_signal, CommandError, Outcome};
use crate::config::Config;
use crate::serve::ServeError;

/// Serves until a signal; a setting the operator must fix is refused (exit 2).
pub async fn serve(config: &Config, listen: Option<String>) -> Result<Outcome, CommandError> {
    match crate::serve::run(config, listen, stop_on_signal()).await {
        Ok(()) => Ok(Outcome::Done),
        Err(ServeError::Refused(reason)) => Err(CommandError::Refused(reason)),
        // The database's own errors as such, so a wrong password gets its advice.
        Err(ServeError::Db(error)) => Err(CommandError::Db(error)),
        Err(error) => Err(CommandError::Serve(error)),
    }
}
