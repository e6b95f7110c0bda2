//! The command line: `etl run [--drain]`, `etl migrate`, `etl check FILE…`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "etl",
    version,
    about = "Loads event files from the inbox into the PostgreSQL warehouse"
)]
pub struct Cli {
    /// Optional configuration file; `ETL_*` environment variables override it.
    #[arg(long, global = true, default_value = "etl.toml")]
    pub config: PathBuf,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line (for `jq`).
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGINT/SIGTERM.
    Run {
        /// Process everything in the inbox, then exit 0 once it is empty.
        #[arg(long)]
        drain: bool,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Validate files offline and print each reason; exit 1 if any is invalid.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}
