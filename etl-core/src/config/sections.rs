//! The sections of the configuration (`[database]`, `[inbox]`, `[broker]`, `[lake]`,
//! `[retention]`, `[serve]`, `[alerts]`), one struct each, with their defaults; and the flat
//! names every setting had before it had a section (`database_url`, `ETL_NATS_URL`), which
//! still work as aliases so that no existing `etl.toml`, compose file or deployment breaks.
//!
//! The doc comment of each field is what the configuration reference says about it
//! (docs/src/reference/configuration.md is generated from them, see [`super::reference`]).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The warehouse when nothing names one: a local server's default database. A command that
/// cannot reach it says it used this default (the likely cause is a forgotten setting).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/postgres";

/// The broker when nothing names one.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// `[database]`: the PostgreSQL warehouse and how to reach it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL of the warehouse (`postgres://…` or libpq's `key=value` form), with `sslmode` and `sslrootcert` as in `psql` (see TLS below); its password is never shown.
    pub url: String,
    /// A file holding the URL (a Docker or Kubernetes secret); it replaces `url`.
    pub url_file: Option<PathBuf>,
    /// A file holding the password (a Docker or Kubernetes secret); it replaces the URL's (a final newline is ignored).
    pub password_file: Option<PathBuf>,
    /// Folder with the SQL migrations (`*.sql`, applied in name order, operators' own included); the built-in ones when the folder does not exist.
    pub migrations_dir: PathBuf,
    /// Ceiling of the exponential backoff between database retries.
    pub max_retry_backoff_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: DEFAULT_DATABASE_URL.into(),
            url_file: None,
            password_file: None,
            migrations_dir: PathBuf::from("./db/migrations"),
            max_retry_backoff_ms: 5000,
        }
    }
}

/// `[inbox]`: the `events/inbox/<type>/` folders (the `inbox` source, and `etl forward`'s input).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    /// Threads reading and validating files (default: the number of cores).
    pub readers: usize,
    /// A file that does not parse and changed less than this long ago is retried later, since its producer may still be writing it.
    pub settle_ms: u64,
    /// Period of the safety rescan that catches anything the file watcher missed.
    pub rescan_interval_secs: u64,
    /// Files larger than this are rejected without being read.
    pub max_file_bytes: u64,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            readers: cores(),
            settle_ms: 2000,
            rescan_interval_secs: 30,
            max_file_bytes: 1024 * 1024,
        }
    }
}

/// `[broker]`: the NATS JetStream broker (`etl forward`, the `jetstream` source). Settings the broker already holds (an existing stream or consumer) are not changed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// NATS server(s) of the JetStream broker, comma-separated for a cluster.
    pub url: String,
    /// The stream every type's events go to.
    pub stream: String,
    /// Subjects are `<subject_prefix>.<type>`.
    pub subject_prefix: String,
    /// The durable pull consumer the `etl run` replicas share.
    pub consumer: String,
    /// How long the broker waits for a delivered message's acknowledgement before it delivers it again (to any replica); messages held longer (a database outage) are kept alive with progress acknowledgements.
    pub ack_wait_secs: u64,
    /// Messages delivered and not yet acknowledged, over all replicas: bounds what replicas hold.
    pub max_ack_pending: i64,
    /// The stream's size limit; when full it refuses publishes (forwarders keep their files).
    pub max_bytes: i64,
    /// How long the broker remembers a published event id to drop a re-publish.
    pub duplicate_window_secs: u64,
    /// Copies of the stream in a JetStream cluster (3 to survive a node).
    pub replicas: usize,
    /// Most messages a replica fetches at once.
    pub fetch_batch: usize,
    /// Most publishes a forwarder has in flight (pipelined) before waiting for acknowledgements.
    pub publish_in_flight: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: DEFAULT_NATS_URL.into(),
            stream: "EVENTS".into(),
            subject_prefix: "events".into(),
            consumer: "etl".into(),
            ack_wait_secs: 30,
            max_ack_pending: 20_000,
            max_bytes: 1 << 30,
            duplicate_window_secs: 600,
            replicas: 1,
            fetch_batch: 500,
            publish_in_flight: 1024,
        }
    }
}

/// `[lake]`: the Parquet lake `etl run` exports to, and the raw events' retirement from the warehouse (see docs/src/guide/lake.md).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// The lake (default `<data_dir>/lake/parquet`): each type's current table in `<dir>/<type>/`, the raw zone in `<dir>/events/date=…/`.
    pub dir: Option<PathBuf>,
    /// Seconds between lake exports inside `etl run` (one replica at a time); 0: none.
    pub export_interval_secs: u64,
    /// Raw events ingested longer ago than this leave the warehouse once the lake holds them (needs `export_interval_secs`); 0: kept for ever.
    pub raw_retention_days: u64,
    /// How long the ids of retired raw events are kept to recognise a replayed old event; after that, events as old as the forgotten ones are refused (`beyond_horizon`).
    pub retired_ids_days: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            dir: None,
            export_interval_secs: 0,
            raw_retention_days: 0,
            retired_ids_days: 90,
        }
    }
}

/// `[retention]`: how long the file folders keep their day folders (see docs/src/guide/retention.md).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Seconds between passes of the file folders' retention inside `etl run` (one replica at a time); 0: none, and `done/`, `failed/` and the landing zone keep every day folder.
    pub interval_secs: u64,
    /// Day folders of `done/<type>/` older than this many days are deleted (or archived); 0: kept for ever.
    pub done_days: u64,
    /// The same for `failed/<type>/`: longer, since its files wait for an operator's replay.
    pub failed_days: u64,
    /// The same for the HTTP sources' landing zone (`<data_dir>/lake/raw/<source>/<yyyy>/<mm>/<dd>/`).
    pub landing_days: u64,
    /// When set, old day folders are moved under `<archive_dir>/{done,failed}/<type>/<date>/` and `<archive_dir>/landing/<source>/<yyyy>/<mm>/<dd>/` instead of being deleted; it must be on the same file system as the data folder (a rename, never a copy).
    pub archive_dir: Option<PathBuf>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            interval_secs: 3600,
            done_days: 7,
            failed_days: 30,
            landing_days: 30,
            archive_dir: None,
        }
    }
}

/// `[serve]`: the read API (`etl serve`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// The listen address (`--listen` overrides it); anything but a loopback address needs the API token.
    pub addr: String,
    /// Its own connection pool's size (reads never take the ingestion's connections).
    pub pool_size: usize,
    /// Where it reads (e.g. a read-only replica or role), `[database] url` when absent; its password is never shown.
    pub database_url: Option<String>,
    /// Each read's statement timeout; a read that takes longer is cancelled and answered 503.
    pub statement_timeout_ms: u64,
    /// Requests in flight at most; the next one is answered 503 at once.
    pub max_in_flight: usize,
    /// A file holding the API token (a Docker or Kubernetes secret; a final newline is ignored); it replaces `api_token`.
    pub api_token_file: Option<PathBuf>,
    /// The API token, required when listening beyond loopback; never logged.
    pub api_token: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: "127.0.0.1:8080".into(),
            pool_size: 4,
            database_url: None,
            statement_timeout_ms: 1000,
            max_in_flight: 256,
            api_token_file: None,
            api_token: None,
        }
    }
}

/// `[alerts]`: a webhook told when something needs a person (see docs/src/guide/operate.md#alerts).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// An HTTP endpoint (Slack-style incoming webhook, Alertmanager-less setups) that gets a JSON POST; empty: none. Never logged (its path is a credential).
    pub webhook_url: String,
    /// How long the warehouse must be unreachable before the webhook is told.
    pub database_down_secs: u64,
    /// At most one summary of the rejections per this many seconds.
    pub rejections_interval_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook_url: String::new(),
            database_down_secs: 300,
            rejections_interval_secs: 300,
        }
    }
}

/// The number of cores, the default of the worker and reader counts.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The sections, in the order the reference lists them.
pub const SECTIONS: &[&str] = &[
    "database",
    "inbox",
    "broker",
    "lake",
    "retention",
    "serve",
    "alerts",
];

/// Every flat name that came before the sections, and the setting it names: `(flat name,
/// section, key)`. The flat name works at the top level of `etl.toml` and as `ETL_<FLAT>`.
pub const FLAT_ALIASES: &[(&str, &str, &str)] = &[
    ("database_url", "database", "url"),
    ("database_url_file", "database", "url_file"),
    ("database_password_file", "database", "password_file"),
    ("migrations_dir", "database", "migrations_dir"),
    ("max_retry_backoff_ms", "database", "max_retry_backoff_ms"),
    ("readers", "inbox", "readers"),
    ("settle_ms", "inbox", "settle_ms"),
    ("rescan_interval_secs", "inbox", "rescan_interval_secs"),
    ("max_file_bytes", "inbox", "max_file_bytes"),
    ("nats_url", "broker", "url"),
    ("nats_stream", "broker", "stream"),
    ("nats_subject_prefix", "broker", "subject_prefix"),
    ("nats_consumer", "broker", "consumer"),
    ("nats_ack_wait_secs", "broker", "ack_wait_secs"),
    ("nats_max_ack_pending", "broker", "max_ack_pending"),
    ("nats_max_bytes", "broker", "max_bytes"),
    (
        "nats_duplicate_window_secs",
        "broker",
        "duplicate_window_secs",
    ),
    ("nats_replicas", "broker", "replicas"),
    ("nats_fetch_batch", "broker", "fetch_batch"),
    ("nats_publish_in_flight", "broker", "publish_in_flight"),
    ("lake_dir", "lake", "dir"),
    ("lake_export_interval_secs", "lake", "export_interval_secs"),
    ("raw_retention_days", "lake", "raw_retention_days"),
    ("retired_ids_days", "lake", "retired_ids_days"),
    ("retention_interval_secs", "retention", "interval_secs"),
    ("done_retention_days", "retention", "done_days"),
    ("failed_retention_days", "retention", "failed_days"),
    ("landing_retention_days", "retention", "landing_days"),
    ("archive_dir", "retention", "archive_dir"),
    ("serve_addr", "serve", "addr"),
    ("serve_pool_size", "serve", "pool_size"),
    ("read_database_url", "serve", "database_url"),
    (
        "serve_statement_timeout_ms",
        "serve",
        "statement_timeout_ms",
    ),
    ("serve_max_in_flight", "serve", "max_in_flight"),
    ("api_token_file", "serve", "api_token_file"),
    ("api_token", "serve", "api_token"),
    ("alert_webhook_url", "alerts", "webhook_url"),
    ("alert_database_down_secs", "alerts", "database_down_secs"),
    (
        "alert_rejections_interval_secs",
        "alerts",
        "rejections_interval_secs",
    ),
];

/// The flat alias of `section.key`, if it has one.
pub fn flat_alias(section: &str, key: &str) -> Option<&'static str> {
    FLAT_ALIASES
        .iter()
        .find(|(_, s, k)| *s == section && *k == key)
        .map(|(flat, _, _)| *flat)
}

/// The section and key a flat name stands for.
pub fn sectioned(flat: &str) -> Option<(&'static str, &'static str)> {
    FLAT_ALIASES
        .iter()
        .find(|(f, _, _)| *f == flat)
        .map(|(_, s, k)| (*s, *k))
}

/// The environment variable of `key` in `section` (`None`: a top-level key): `ETL_WORKERS`,
/// `ETL_BROKER__URL` (two underscores between the section and the key).
pub fn env_var(section: Option<&str>, key: &str) -> String {
    match section {
        Some(section) => format!("ETL_{}__{}", section, key).to_ascii_uppercase(),
        None => format!("ETL_{key}").to_ascii_uppercase(),
    }
}
