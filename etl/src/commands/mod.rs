//! One file per `etl` command; this file owns what they share: the [`Outcome`] and
//! [`CommandError`] each returns, the one place ([`exit_code`]) that turns them into the exit
//! status 0, 1 or 2 (and says why), the configuration the binary loads, and the signal handler.

pub mod check;
pub mod dead_letters;
pub mod export;
pub mod forward;
pub mod infer;
pub mod migrate;
pub mod pull;
pub mod replay;
pub mod run;
pub mod serve;
pub mod status;
pub mod types;

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::catalog::CatalogError;
use crate::cli::DEFAULT_CONFIG;
use crate::config::Config;
use crate::load::connect;
use crate::load::error::SetupError;
use crate::load::DbError;
use crate::startup::Wait;

/// How a command that ran to its end went.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Done,
    /// Exit status 1: the command said why (a log line) before returning this.
    Failed,
}

/// Why a command stopped; [`exit_code`] says it and picks 2 (a request or setting the operator
/// must fix, or a warehouse that refuses the connection) or 1 (anything else).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A request the command refuses: printed as `ERROR <sentence>` on stderr, exit 2.
    #[error("{0}")]
    Refused(String),
    /// The configuration cannot be read: one `ERROR` line each on stderr, exit 2.
    #[error("{}", .0.join("; "))]
    Config(Vec<String>),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Postgres(tokio_postgres::Error),
    #[error(transparent)]
    Lake(crate::lake::LakeError),
    #[error(transparent)]
    Serve(crate::serve::ServeError),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    #[error(transparent)]
    Startup(#[from] crate::startup::StartupError),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Replay(#[from] crate::source::deadletter::ReplayError),
}

impl CommandError {
    /// The one-line advice when the error is one no retry fixes (wrong password, unknown
    /// database, a type that does not load…): exit 2.
    fn fatal(&self) -> Option<String> {
        let error: &(dyn std::error::Error + 'static) = match self {
            Self::Refused(_) | Self::Config(_) => return None,
            Self::Daemon(error) => error,
            Self::Startup(error) => error,
            Self::Broker(error) => error,
            Self::Replay(error) => error,
            Self::Db(error) => error,
            Self::Catalog(error) => error,
            Self::Setup(error) => error,
            Self::Postgres(error) => error,
            Self::Lake(error) => error,
            Self::Serve(error) => error,
            Self::Io { source, .. } => return connect::fatal_in_chain(source),
        };
        connect::fatal_in_chain(error)
    }

    /// The error and its causes on one line, `: `-separated (a cause its error already
    /// shows is not repeated).
    fn chain_text(&self) -> String {
        crate::load::error::causes(self)
    }
}

/// The exit status of a command's result, said once: on stderr for a refused request, in the
/// log otherwise (`warehouse` names the database in the advice for a fatal connection error).
pub fn exit_code(result: Result<Outcome, CommandError>, warehouse: &str) -> u8 {
    match result {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::Failed) => 1,
        Err(CommandError::Refused(reason)) => {
            eprintln!("ERROR {reason}");
            2
        }
        Err(CommandError::Config(lines)) => {
            for line in lines {
                eprintln!("ERROR {line}");
            }
            2
        }
        // Wrong password, unknown database, TLS refused…: said once, exit status 2.
        Err(error) => match error.fatal() {
            Some(advice) => {
                tracing::error!(%warehouse, "{advice}");
                2
            }
            None => {
                tracing::error!("{}", error.chain_text());
                1
            }
        },
    }
}

/// The configuration: `--config`'s file (which must exist) or `etl.toml` if it exists, the
/// `ETL_*` variables, and `--wait`.
pub fn load_config(file: Option<&Path>, wait: Wait) -> Result<Config, CommandError> {
    // The default file is optional; a file the user names must be there (a typo in the path
    // must not start the daemon on defaults).
    let file = match file {
        Some(path) => match std::fs::metadata(path) {
            Ok(_) => path.to_path_buf(),
            Err(error) => {
                return Err(CommandError::Config(vec![format!(
                    "cannot read the configuration file {} given with --config: {error}",
                    path.display()
                )]))
            }
        },
        None => PathBuf::from(DEFAULT_CONFIG),
    };
    let mut config = Config::load(&file).map_err(|error| CommandError::Config(error.lines()))?;
    config.startup_wait = wait;
    Ok(config)
}

/// The `ERROR --type` refusal for a type the catalog does not declare.
fn no_such_type(name: &str, catalog: &crate::catalog::Catalog) -> CommandError {
    CommandError::Refused(format!(
        "--type {name}: no such event type (declared: {})",
        catalog.names()
    ))
}

/// Waits (within `--wait`) for the warehouse to accept a connection; false if a signal came
/// first.
async fn wait_for_warehouse(config: &Config) -> Result<bool, CommandError> {
    let stop = stop_on_signal();
    let answered = crate::startup::warehouse_answers(config, config.startup_wait, &stop).await?;
    if !answered {
        tracing::warn!("interrupted while waiting for the warehouse: nothing was done");
    }
    Ok(answered)
}

/// A token that a first SIGINT or SIGTERM cancels.
fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(on_signal(stop.clone()));
    stop
}

/// Fires `shutdown` on the first SIGINT or SIGTERM.
async fn on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing what is in flight"),
        _ = int.recv() => tracing::info!("SIGINT: finishing what is in flight"),
    }
    shutdown.cancel();
}
