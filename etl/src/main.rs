//! The `etl` binary: parse the command line, load the configuration, start the log, and hand
//! the command to its file in [`etl::commands`], whose result says the exit status.

use std::process::ExitCode;

use clap::Parser;

use etl::cli::{Cli, Command};
use etl::commands::{self, CommandError, Outcome};
use etl::config::Config;
use etl::load::connect;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match commands::load_config(cli.config.as_deref(), cli.wait) {
        Ok(config) => config,
        Err(error) => return ExitCode::from(commands::exit_code(Err(error), "")),
    };
    // Only the daemon writes the log file operators tail; one-shot commands print to stdout.
    let log_dir = matches!(cli.command, Command::Run { .. } | Command::Forward { .. })
        .then(|| config.logs_dir());
    let _log_guard = etl::telemetry::init(cli.log_format, log_dir.as_deref());
    let warehouse = connect::describe(&config);
    let result = dispatch(cli.command, config).await;
    ExitCode::from(commands::exit_code(result, &warehouse))
}

async fn dispatch(command: Command, config: Config) -> Result<Outcome, CommandError> {
    match command {
        Command::Run { drain, source } => commands::run::run(config, drain, source).await,
        Command::Forward { drain } => commands::forward::forward(config, drain).await,
        Command::Pull { source, from, to } => {
            commands::pull::pull(config, &source, &from, to.as_deref()).await
        }
        Command::DeadLetters { action } => {
            commands::dead_letters::dead_letters(&config, action).await
        }
        Command::Migrate => commands::migrate::migrate(config).await,
        Command::Check {
            files,
            types_dir,
            schemas_dir,
        } => commands::check::check(config, &files, types_dir, schemas_dir),
        Command::Infer(args) => commands::infer::infer(&config, &args),
        Command::Types { action } => commands::types::types(&config, action).await,
        Command::Replay { kind, reason } => commands::replay::replay(&config, kind, reason),
        Command::Export {
            format: _,
            to,
            kind,
            since,
        } => commands::export::export(&config, &to, kind.as_deref(), since.as_deref()).await,
        Command::Serve { listen } => commands::serve::serve(&config, listen).await,
        Command::Status => commands::status::status(&config).await,
    }
}
