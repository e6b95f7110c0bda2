//! The `etl` binary: parse the command line, load the configuration, call the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use etl::cli::{Cli, Command};
use etl::config::Config;
use etl::extract::schema::Schemas;
use etl::load::Warehouse;
use etl::ops::replay::Filter as ReplayFilter;
use etl::pipeline::{self, Mode};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    // Only the daemon writes the log file operators tail; one-shot commands print to stdout.
    let log_dir = matches!(cli.command, Command::Run { .. }).then(|| config.logs_dir());
    let _log_guard = etl::telemetry::init(cli.log_format, log_dir.as_deref());
    match run(cli, config).await {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { drain } => {
            let shutdown = CancellationToken::new();
            tokio::spawn(on_signal(shutdown.clone()));
            let mode = if drain { Mode::Drain } else { Mode::Follow };
            let summary = pipeline::run(config, mode, shutdown).await?;
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
                    files = summary.stuck,
                    "some files could not be finished (see the ERROR lines above); they are still in the inbox"
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let warehouse = Warehouse::new(&config.database_url, 1)?;
            let applied = warehouse.migrate().await?;
            tracing::info!(?applied, "migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { files } => {
            let (schemas, _) = Schemas::load(&config.schemas_dir)?;
            let mut all_valid = true;
            for file in &files {
                match etl::check::check_file(file, &schemas, &config) {
                    Ok(()) => println!("ok       {}", file.display()),
                    Err(reason) => {
                        all_valid = false;
                        println!("invalid  {}: {reason}", file.display());
                    }
                }
            }
            Ok(if all_valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Replay { kind, reason } => {
            let filter = ReplayFilter {
                kind: kind.map(Into::into),
                reason,
            };
            let moved = etl::ops::replay::replay(&config, &filter).context("replay failed")?;
            println!("moved {moved} failed file(s) back into the inbox");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            print!("{}", etl::ops::status::report(&config).await);
            Ok(ExitCode::SUCCESS)
        }
    }
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
