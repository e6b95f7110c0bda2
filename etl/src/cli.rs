//! The command line: `etl run [--drain] [--source S]`, `etl forward`, `etl pull`, `etl migrate`,
//! `etl check FILE…`, `etl replay`, `etl export`, `etl dead-letters`, `etl status`, `etl serve`,
//! `etl infer`, `etl types plan`, and the options every command takes (`--config`,
//! `--log-format`, `--wait`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::startup::Wait;

/// The configuration file read when `--config` is not given (and only if it exists).
pub const DEFAULT_CONFIG: &str = "etl.toml";

#[derive(Debug, Parser)]
#[command(
    name = "etl",
    version,
    about = "Loads events from inbox files, NATS JetStream and HTTP APIs into a PostgreSQL \
             warehouse, each validated against its type's JSON Schema",
    long_about = "Loads events from three kinds of source into a PostgreSQL warehouse, each \
                  validated against its type's JSON Schema and applied with a timestamp-guarded \
                  upsert (an older version never overwrites a newer one):\n\n\
                  - files: one JSON file per event in the inbox folders \
                  (data/events/inbox/<type>/), moved to done/ once loaded or to failed/ next to \
                  a reason file;\n\
                  - NATS JetStream: `etl forward` publishes the inbox to a stream, and \
                  `etl run --source jetstream` replicas share its durable consumer;\n\
                  - HTTP APIs: `[[sources]]` of kind \"http\", pulled by window (`etl run`, or \
                  once with `etl pull`).\n\n\
                  Invalid input from the broker or an API becomes a dead letter \
                  (`etl dead-letters`). Also serves a read API (`etl serve`) and exports a \
                  Parquet lake (`etl export`)."
)]
pub struct Cli {
    /// Configuration file; `ETL_*` environment variables override it. Without this option,
    /// `etl.toml` is read if it exists; a file named here must exist.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How long a one-shot command (`run --drain`, `forward --drain`, `pull`, `migrate`,
    /// `export`, `dead-letters`, `types plan`) waits at start-up for the warehouse or the broker before it
    /// gives up with exit 1, touching no file: seconds, or `forever`. `etl run` without
    /// `--drain` always waits.
    #[arg(
        long,
        global = true,
        value_name = "SECONDS|forever",
        default_value = "60"
    )]
    pub wait: Wait,
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
        /// Process everything in the inbox (or the broker's stream), then exit 0 once it is empty.
        #[arg(long)]
        drain: bool,
        /// Read from this source instead of the configured `[[sources]]`.
        #[arg(long, value_enum)]
        source: Option<SourceArg>,
    },
    /// The edge agent: read the inbox like `etl run`, but publish each valid event to the
    /// broker (JetStream) instead of the warehouse; a file moves to done/ once the broker has it.
    Forward {
        /// Publish everything in the inbox, then exit 0 once it is empty.
        #[arg(long)]
        drain: bool,
    },
    /// Pull one window of an HTTP API source once, then exit (a backfill, or a cron job):
    /// 0 when every page is settled, 1 if the pull stopped (run it again: it resumes).
    Pull {
        /// The source's `name` in `[[sources]]`.
        source: String,
        /// Start of the window (included): `2026-11-20` or an RFC 3339 time.
        #[arg(long)]
        from: String,
        /// End of the window (excluded); default: now.
        #[arg(long)]
        to: Option<String>,
    },
    /// List the dead letters of the broker and HTTP sources (the rejected_events table), or
    /// replay the broker's.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Validate files offline and print each reason; exit 1 if any is invalid.
    Check {
        /// The event files to validate (each against the schema of the type its folder or
        /// its metadata names).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Read the declarations from this folder instead of `types_dir` (e.g. a draft folder
        /// of `etl infer`, to check samples before installing it).
        #[arg(long, value_name = "DIR")]
        types_dir: Option<PathBuf>,
        /// Read the schemas from this folder instead of `schemas_dir`.
        #[arg(long, value_name = "DIR")]
        schemas_dir: Option<PathBuf>,
    },
    /// Draft a new event type from sample event files: read them, print what was inferred
    /// (each field's type with its evidence, the key, the version clock, the optional fields
    /// and conflicts), and write drafts of its schema, declaration and migration into a folder
    /// to review (never into the live folders, never into the warehouse). Exit 1 when the
    /// samples disagree about a field, 2 when no key can be chosen (use --key).
    Infer(InferArgs),
    /// The declared types against their tables.
    Types {
        #[command(subcommand)]
        action: TypesAction,
    },
    /// Move failed files back into the inbox (after a schema or code fix) to process them again.
    Replay {
        /// Only files of this type (a declared type's name, e.g. `cards`).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only files whose reason (or reason code) contains this text, case-insensitively.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Export the warehouse to a Parquet lake: each type's current table as a snapshot
    /// (`DIR/<type>/snapshot.parquet`, replaced atomically), and the raw zone incrementally
    /// (`DIR/events/date=YYYY-MM-DD/`, from where the previous export into DIR stopped).
    Export {
        /// The lake's file format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Parquet)]
        format: ExportFormat,
        /// The lake folder.
        #[arg(long)]
        to: PathBuf,
        /// Only this type's table (the raw zone, one table for all types, is then left as is).
        #[arg(long = "type")]
        kind: Option<String>,
        /// The raw zone's start for a lake folder's first export (`2026-11-20` or RFC 3339);
        /// later exports continue from the folder's watermark.
        #[arg(long)]
        since: Option<String>,
    },
    /// Print file counts per folder, rows per table, and the running daemon's in-flight count.
    Status,
    /// Serve the read API (`/api/v1/<type>/…`, `/api/v1/openapi.json`) until SIGINT/SIGTERM:
    /// a process of its own, with its own connection pool, so reads never share the ingestion's
    /// runtime or connections.
    Serve {
        /// Listen address (default: `serve_addr`, 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
    },
}

/// `etl infer`'s arguments.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// The new type's name: its folders, table and labels (lower-case, digits, _).
    #[arg(long = "type", value_name = "NAME")]
    pub kind: String,
    /// Where the drafts go (default: drafts/<type>/); never schemas/, types/ or db/migrations/.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The samples are bare payloads, without the envelope (`metadata`, `payload`).
    #[arg(long)]
    pub bare: bool,
    /// The key field, when the samples do not single one out.
    #[arg(long, value_name = "FIELD")]
    pub key: Option<String>,
    /// The version clock (a field, or `event_at`), instead of updated_at or event_at.
    #[arg(long, value_name = "FIELD")]
    pub version: Option<String>,
    /// Sample event files, or folders of them (walked, `*.json` only).
    #[arg(required = true, value_name = "PATH")]
    pub samples: Vec<PathBuf>,
}

/// `etl types` actions.
#[derive(Debug, Subcommand)]
pub enum TypesAction {
    /// Compare each declaration with its table and print the migration that would make them
    /// agree (a new table, new columns, a widened type, a NOT NULL dropped), to review and
    /// commit; changes that would lose data (a dropped or narrowed column, a new key or version
    /// clock) are refused with the reason (exit 2). Applies nothing.
    Plan {
        /// Only this type.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Also write the migration into this folder, named to sort after every existing one.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// `etl export --format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Apache Parquet (Snappy-compressed).
    Parquet,
}

/// `--source` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    /// The inbox folders.
    Inbox,
    /// The broker's stream, through the replicas' shared durable consumer.
    Jetstream,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Print each dead letter: id, when, type, code, reason.
    List {
        /// Only dead letters of this type.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only those whose reason (or code) contains this text, case-insensitively.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Publish the broker's dead letters back to their subject (after a schema or producer
    /// fix) and delete their rows. An HTTP source's are replayed by pulling their window again
    /// (`etl pull`); the broker is reached only when one of its own matches.
    Replay {
        /// Only dead letters of this type.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only those whose reason (or code) contains this text, case-insensitively.
        #[arg(long)]
        reason: Option<String>,
    },
}
