//! Configuration: built-in defaults < `etl.toml` (optional) < `ETL_*` environment variables.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub mod error;
pub mod http;
pub mod source;

pub use error::SetupError;
pub use source::SourceConfig;

/// How long a run lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Until a shutdown signal: for the inbox, scan, then follow the watcher and rescan.
    Follow,
    /// Until the source has nothing left: for the inbox, scan and process until a scan finds
    /// nothing.
    Drain,
}

/// The warehouse when nothing names one: a local server's default database. A command that
/// cannot reach it says it used this default (the likely cause is a forgotten setting).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/postgres";

/// The broker when nothing names one.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Every setting of the daemon. Each field `foo` can be set as `foo = …` in `etl.toml` or as
/// `ETL_FOO` in the environment (docs/src/reference/configuration.md lists them all).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// PostgreSQL connection URL of the warehouse (libpq's `sslmode` and `sslrootcert` included).
    pub database_url: String,
    /// A file holding the URL (a Docker or Kubernetes secret); it replaces `database_url`.
    pub database_url_file: Option<PathBuf>,
    /// A file holding the password (a Docker or Kubernetes secret); it replaces the URL's.
    pub database_password_file: Option<PathBuf>,
    /// Root of the file layout: `events/inbox/<type>/`, `events/{done,failed}/<type>/<date>/`,
    /// the landing zone `lake/raw/` and `logs/`.
    pub data_dir: PathBuf,
    /// Folder with each type's `<name>.schema.json`; the built-in copy of a shipped type's
    /// schema is used when its file is missing there, so a schema fix needs no rebuild.
    pub schemas_dir: PathBuf,
    /// Folder with the event type declarations (`<name>.toml`); the built-in `users` and
    /// `cards` when the folder does not exist.
    pub types_dir: PathBuf,
    /// Folder with the SQL migrations (`*.sql`, applied in name order, operators' own
    /// included); the built-in ones when the folder does not exist.
    pub migrations_dir: PathBuf,
    /// Workers applying events to the warehouse (each owns a partition of the entities).
    pub workers: usize,
    /// Threads reading and validating files.
    pub readers: usize,
    /// Capacity of the bounded channels between the stages (backpressure, bounded memory).
    pub channel_capacity: usize,
    /// Most events a worker applies in one transaction.
    pub batch_size: usize,
    /// Longest a worker waits to fill a batch before committing what it has.
    pub batch_timeout_ms: u64,
    /// A file that does not parse and changed less than this long ago is retried later, since
    /// its producer may still be writing it.
    pub settle_ms: u64,
    /// Period of the safety rescan that catches anything the file watcher missed.
    pub rescan_interval_secs: u64,
    /// Bound on a graceful shutdown (finish and commit what is in flight).
    pub shutdown_timeout_secs: u64,
    /// Files larger than this are rejected without being read.
    pub max_file_bytes: u64,
    /// Ceiling of the exponential backoff between database retries.
    pub max_retry_backoff_ms: u64,
    /// Address of the HTTP endpoints (`/healthz`, `/readyz`, `/metrics`); empty disables them.
    pub http_addr: String,
    /// Seconds between progress lines while work is pending.
    pub progress_interval_secs: u64,
    /// An event whose version clock or `event_at` is further ahead of the daemon's clock (UTC)
    /// than this is refused (`future_version`): it would win the version guard against every
    /// genuine update. Producers write naive local times, so the default (one day) covers any
    /// time zone.
    pub max_future_skew_secs: u64,
    /// NATS server(s) of the JetStream broker (`etl forward`, the `jetstream` source), comma-
    /// separated for a cluster.
    pub nats_url: String,
    /// The stream every type's events go to, on subjects `<nats_subject_prefix>.<type>`.
    pub nats_stream: String,
    pub nats_subject_prefix: String,
    /// The durable pull consumer the `etl run` replicas share.
    pub nats_consumer: String,
    /// How long the broker waits for a delivered message's acknowledgement before it delivers
    /// it again (to any replica). Messages held longer (a database outage) are kept alive with
    /// progress acknowledgements.
    pub nats_ack_wait_secs: u64,
    /// Messages delivered and not yet acknowledged, over all replicas: bounds what replicas hold.
    pub nats_max_ack_pending: i64,
    /// The stream's size limit; when full it refuses publishes (forwarders keep their files).
    pub nats_max_bytes: i64,
    /// How long the broker remembers a published event id to drop a re-publish.
    pub nats_duplicate_window_secs: u64,
    /// Copies of the stream in a JetStream cluster.
    pub nats_replicas: usize,
    /// Most messages a replica fetches at once.
    pub nats_fetch_batch: usize,
    /// Most publishes a forwarder has in flight (pipelined) before waiting for acknowledgements.
    pub nats_publish_in_flight: usize,
    /// An HTTP endpoint (Slack-style incoming webhook, Alertmanager-less setups) that gets a JSON
    /// POST when the database has been unreachable for `alert_database_down_secs`, and a summary
    /// of the rejections at most every `alert_rejections_interval_secs`; empty: none.
    pub alert_webhook_url: String,
    pub alert_database_down_secs: u64,
    pub alert_rejections_interval_secs: u64,
    /// The Parquet lake `etl run` exports to (default `<data_dir>/lake/parquet`): each type's
    /// current table in `<lake>/<type>/`, the raw zone in `<lake>/events/date=…/`.
    pub lake_dir: Option<PathBuf>,
    /// Seconds between lake exports inside `etl run` (one replica at a time); 0: none.
    pub lake_export_interval_secs: u64,
    /// Raw events ingested longer ago than this leave the warehouse once the lake holds them
    /// (needs the lake export); 0: kept for ever.
    pub raw_retention_days: u64,
    /// How long the ids of retired raw events are kept to recognise a replayed old event;
    /// after that, events as old as the forgotten ones are refused (`beyond_horizon`).
    pub retired_ids_days: u64,
    /// Seconds between passes of the file folders' retention inside `etl run` (one replica at
    /// a time); 0: none, and `done/`, `failed/` and the landing zone keep every day folder.
    pub retention_interval_secs: u64,
    /// Day folders of `done/<type>/` older than this many days are deleted (or archived); 0:
    /// kept for ever.
    pub done_retention_days: u64,
    /// The same for `failed/<type>/`: longer, since its files wait for an operator's replay.
    pub failed_retention_days: u64,
    /// The same for the HTTP sources' landing zone (`<data_dir>/lake/raw/<source>/<yyyy>/<mm>/<dd>/`).
    pub landing_retention_days: u64,
    /// When set, old day folders are moved under `<archive_dir>/{done,failed}/<type>/<date>/`
    /// and `<archive_dir>/landing/<source>/<yyyy>/<mm>/<dd>/` instead of being deleted. It must
    /// be on the same file system as the data folder (a rename, never a copy).
    pub archive_dir: Option<PathBuf>,
    /// `etl serve`: the read API's listen address. Anything but a loopback address needs an API
    /// token (`api_token_file` or `ETL_API_TOKEN`).
    pub serve_addr: String,
    /// `etl serve`: its own connection pool's size (reads never take the ingestion's connections).
    pub serve_pool_size: usize,
    /// `etl serve`: a separate (e.g. read-only replica or read-only role) URL; `database_url`
    /// when absent.
    pub read_database_url: Option<String>,
    /// `etl serve`: each read's statement timeout; a read that takes longer answers 503.
    pub serve_statement_timeout_ms: u64,
    /// `etl serve`: requests in flight at most; the next one is answered 503 at once.
    pub serve_max_in_flight: usize,
    /// `etl serve`: a file holding the API token (a Docker or Kubernetes secret); it replaces
    /// `api_token`.
    pub api_token_file: Option<PathBuf>,
    /// `etl serve`: the API token (`ETL_API_TOKEN`); never logged.
    pub api_token: Option<String>,
    /// Where records come from: `[[sources]]` tables in `etl.toml` (e.g. `kind = "inbox"`).
    /// None configured means the inbox, so every existing setup keeps working.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// How long a one-shot run waits at start-up for the warehouse (or the broker) before it
    /// gives up: the command line's `--wait`, not a key of `etl.toml` (a daemon's setting would
    /// be the same for every command it runs). Honoured in drain mode only; following waits
    /// for ever.
    #[serde(skip)]
    pub startup_wait: Wait,
}

impl Default for Config {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Config {
            database_url: DEFAULT_DATABASE_URL.into(),
            database_url_file: None,
            database_password_file: None,
            data_dir: PathBuf::from("./data"),
            schemas_dir: PathBuf::from("./schemas"),
            types_dir: PathBuf::from("./types"),
            migrations_dir: PathBuf::from("./db/migrations"),
            workers: cores,
            readers: cores,
            channel_capacity: 1024,
            batch_size: 1000,
            batch_timeout_ms: 5,
            settle_ms: 2000,
            rescan_interval_secs: 30,
            shutdown_timeout_secs: 10,
            max_file_bytes: 1024 * 1024,
            max_retry_backoff_ms: 5000,
            http_addr: "127.0.0.1:9187".into(),
            progress_interval_secs: 5,
            max_future_skew_secs: 24 * 3600,
            nats_url: DEFAULT_NATS_URL.into(),
            nats_stream: "EVENTS".into(),
            nats_subject_prefix: "events".into(),
            nats_consumer: "etl".into(),
            nats_ack_wait_secs: 30,
            nats_max_ack_pending: 20_000,
            nats_max_bytes: 1 << 30,
            nats_duplicate_window_secs: 600,
            nats_replicas: 1,
            nats_fetch_batch: 500,
            nats_publish_in_flight: 1024,
            alert_webhook_url: String::new(),
            alert_database_down_secs: 300,
            alert_rejections_interval_secs: 300,
            lake_dir: None,
            lake_export_interval_secs: 0,
            raw_retention_days: 0,
            retired_ids_days: 90,
            retention_interval_secs: 3600,
            done_retention_days: 7,
            failed_retention_days: 30,
            landing_retention_days: 30,
            archive_dir: None,
            serve_addr: "127.0.0.1:8080".into(),
            serve_pool_size: 4,
            read_database_url: None,
            serve_statement_timeout_ms: 1000,
            serve_max_in_flight: 256,
            api_token_file: None,
            api_token: None,
            sources: Vec::new(),
            startup_wait: Wait::Forever,
        }
    }
}

impl Config {
    /// Loads defaults, then `file` if it exists, then `ETL_*` variables.
    pub fn load(file: &Path) -> Result<Config, Box<figment::Error>> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("ETL_"))
            .extract()
            .map_err(Box::new)?;
        if config.raw_retention_days > 0 && config.lake_export_interval_secs == 0 {
            // Deleting raw rows that were never exported would lose them.
            return Err(Box::new(figment::Error::from(
                "raw_retention_days needs the lake export: raw rows leave the warehouse only \
                 once the lake holds them, so set lake_export_interval_secs too"
                    .to_owned(),
            )));
        }
        Ok(config.sanitized())
    }

    /// Zero workers or a zero-sized channel would deadlock the pipeline; clamp rather than hang.
    fn sanitized(mut self) -> Config {
        self.workers = self.workers.max(1);
        self.readers = self.readers.max(1);
        self.channel_capacity = self.channel_capacity.max(1);
        self.batch_size = self.batch_size.max(1);
        self.nats_fetch_batch = self.nats_fetch_batch.max(1);
        self.nats_publish_in_flight = self.nats_publish_in_flight.max(1);
        self.nats_replicas = self.nats_replicas.max(1);
        self.serve_pool_size = self.serve_pool_size.max(1);
        self.serve_max_in_flight = self.serve_max_in_flight.max(1);
        self
    }

    /// The configured sources, or the inbox alone when none is.
    pub fn sources(&self) -> Vec<SourceConfig> {
        if self.sources.is_empty() {
            vec![SourceConfig::Inbox {}]
        } else {
            self.sources.clone()
        }
    }

    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }

    pub fn batch_timeout(&self) -> Duration {
        Duration::from_millis(self.batch_timeout_ms)
    }

    pub fn rescan_interval(&self) -> Duration {
        Duration::from_secs(self.rescan_interval_secs.max(1))
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn max_future_skew(&self) -> Duration {
        Duration::from_secs(self.max_future_skew_secs)
    }

    pub fn nats_ack_wait(&self) -> Duration {
        Duration::from_secs(self.nats_ack_wait_secs.max(1))
    }

    pub fn max_retry_backoff(&self) -> Duration {
        Duration::from_millis(self.max_retry_backoff_ms.max(1))
    }
}

/// Why the configuration cannot be used: one line per problem, naming the key, where it was
/// found (the file and its table, or the environment variable) and, for a misspelt key, the
/// nearest known one. figment's own message lists every known key of the table (51 at the top
/// level), which hides the one line that matters.
pub fn explain(error: &figment::Error) -> Vec<String> {
    error.clone().into_iter().map(|e| explain_one(&e)).collect()
}

fn explain_one(error: &figment::Error) -> String {
    use figment::error::Kind;
    let from_env = error
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    let file = error.metadata.as_ref().and_then(|m| match &m.source {
        Some(figment::Source::File(path)) => Some(path.clone()),
        _ => None,
    });
    let mut path = error.path.clone();
    match &error.kind {
        Kind::UnknownField(found, known) => {
            if path.last() == Some(found) {
                path.pop();
            }
            let hint = match nearest(found, known) {
                Some(near) if from_env => {
                    format!("did you mean ETL_{}?", near.to_ascii_uppercase())
                }
                Some(near) => format!("did you mean `{near}`?"),
                None => "no known key is close (see docs/src/reference/configuration.md)".into(),
            };
            if from_env {
                format!(
                    "unknown environment variable ETL_{}: {hint} (every ETL_* variable must be a \
                     setting, so that a misspelt one is not silently ignored)",
                    found.to_ascii_uppercase()
                )
            } else {
                format!(
                    "unknown key `{found}` {}: {hint}",
                    place(file.as_deref(), &path, found)
                )
            }
        }
        Kind::MissingField(name) => format!(
            "missing key `{name}` {}: add it",
            place(file.as_deref(), &path, name)
        ),
        Kind::UnknownVariant(found, known) => {
            let hint = match nearest(found, known) {
                Some(near) => format!("did you mean \"{near}\"?"),
                None => format!("use one of {}", known.join(", ")),
            };
            // The path ends at the key whose value is unknown (`kind`): named on its own.
            let key = path
                .pop_if(|last| last.parse::<usize>().is_err())
                .unwrap_or_default();
            format!(
                "unknown value \"{found}\" {}{}: {hint}",
                if key.is_empty() {
                    String::new()
                } else {
                    format!("of `{key}` ")
                },
                place(file.as_deref(), &path, found)
            )
        }
        Kind::InvalidType(..) | Kind::InvalidValue(..) | Kind::InvalidLength(..) => {
            // figment's path ends at the key, or (inside a `[[sources]]` table, which serde
            // reads as a whole) at the table's index: then the table is all it can name.
            let Some(key) = path.pop_if(|last| last.parse::<usize>().is_err()) else {
                return format!(
                    "a value {}: {}: fix it",
                    place(file.as_deref(), &path, ""),
                    error.kind
                );
            };
            if from_env {
                format!(
                    "ETL_{}: {}: fix the variable's value",
                    key.to_ascii_uppercase(),
                    error.kind
                )
            } else {
                format!(
                    "`{key}` {}: {}: fix its value",
                    place(file.as_deref(), &path, &key),
                    error.kind
                )
            }
        }
        _ => format!("invalid configuration: {error}"),
    }
}

/// The known key nearest to `found` by Jaro-Winkler similarity (which favours a common prefix,
/// as in `batch_sise`/`batch_size`), if any is near enough to be a plausible typo.
fn nearest<'a>(found: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&found.to_ascii_lowercase(), k), *k))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// Where in the file a key is: "at the top level of etl.toml", "in [[sources]] #2 (name =
/// "crm") of etl.toml", "in [[sources]] #2's `item` table …". figment's path stops at the
/// source's table, so a nested table (an inline `item = { … }`) is found by looking for the
/// key in the file itself.
fn place(file: Option<&Path>, path: &[String], key: &str) -> String {
    let file_name = file.map_or_else(
        || "the configuration".to_owned(),
        |f| f.display().to_string(),
    );
    let document: Option<toml::Value> = file
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|text| text.parse::<toml::Table>().ok())
        .map(toml::Value::Table);
    let mut table = String::new();
    let mut node = document.as_ref();
    let mut parts = path.iter().peekable();
    while let Some(part) = parts.next() {
        let index = parts.peek().and_then(|next| next.parse::<usize>().ok());
        match index {
            Some(index) => {
                parts.next();
                node = node.and_then(|n| n.get(part)).and_then(|n| n.get(index));
                table.push_str(&format!("[[{part}]] #{}", index + 1));
                let label = node.and_then(|n| {
                    let name = n.get("name").and_then(|v| v.as_str());
                    let kind = n.get("kind").and_then(|v| v.as_str());
                    match (kind, name) {
                        (Some(kind), Some(name)) => {
                            Some(format!("kind = \"{kind}\", name = \"{name}\""))
                        }
                        (Some(kind), None) => Some(format!("kind = \"{kind}\"")),
                        (None, Some(name)) => Some(format!("name = \"{name}\"")),
                        (None, None) => None,
                    }
                });
                if let Some(label) = label {
                    table.push_str(&format!(" ({label})"));
                }
            }
            None => {
                node = node.and_then(|n| n.get(part));
                if !table.is_empty() {
                    table.push('.');
                }
                table.push_str(&format!("[{part}]"));
            }
        }
    }
    let mut inner = Vec::new();
    if let Some(node) = node.filter(|n| n.get(key).is_none()) {
        find_table(node, key, &mut inner);
    }
    if !inner.is_empty() {
        let inner = format!("`{}` table", inner.join("."));
        table = if table.is_empty() {
            inner
        } else {
            format!("{table}, its {inner}")
        };
    }
    if table.is_empty() {
        format!("at the top level of {file_name}")
    } else {
        format!("in {table} of {file_name}")
    }
}

/// The path from `value` to the table that holds `key`, if one does (depth first).
fn find_table(value: &toml::Value, key: &str, at: &mut Vec<String>) -> bool {
    let Some(table) = value.as_table() else {
        return false;
    };
    if table.contains_key(key) {
        return true;
    }
    for (name, child) in table {
        at.push(name.clone());
        if find_table(child, key, at) {
            return true;
        }
        at.pop();
    }
    false
}

/// Every setting, with the URL's password redacted: a `Config` may be logged.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        shown["database_url"] = crate::secrets::redact(&self.database_url).into();
        // A webhook URL is a credential (its path is the token).
        if !self.alert_webhook_url.is_empty() {
            shown["alert_webhook_url"] = "***".into();
        }
        if let Some(url) = &self.read_database_url {
            shown["read_database_url"] = crate::secrets::redact(url).into();
        }
        // The read API's token: never in a log line.
        if self.api_token.is_some() {
            shown["api_token"] = "***".into();
        }
        write!(f, "Config {shown}")
    }
}

/// `--wait`'s default: a minute covers a server that is still starting (a container started
/// beside it), and is short enough for a person or a CI step waiting on the command.
pub const DEFAULT_WAIT_SECS: u64 = 60;

/// How long a command waits at start-up for what it needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wait {
    /// Until it comes (or a signal): the daemon's way, and the library's default, so an
    /// embedding program keeps the behaviour it had.
    #[default]
    Forever,
    /// At most this long, then exit 1.
    Bounded(Duration),
}

impl Wait {
    /// The command line's default: [`DEFAULT_WAIT_SECS`].
    pub fn default_for_one_shot() -> Wait {
        Wait::Bounded(Duration::from_secs(DEFAULT_WAIT_SECS))
    }
}

impl FromStr for Wait {
    type Err = String;

    fn from_str(s: &str) -> Result<Wait, String> {
        if s.eq_ignore_ascii_case("forever") {
            return Ok(Wait::Forever);
        }
        s.parse::<u64>()
            .map(|secs| Wait::Bounded(Duration::from_secs(secs)))
            .map_err(|_| {
                format!("{s:?} is neither a number of seconds nor `forever` (e.g. --wait 60)")
            })
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Forever => f.write_str("forever"),
            Wait::Bounded(d) => write!(f, "{}", d.as_secs()),
        }
    }
}

impl Config {
    /// How long a run in `mode` waits at start-up for the warehouse or the broker: a drain is
    /// a one-shot command and gives up after `--wait`; a daemon following its sources waits for
    /// ever (it may be started before its database, as a service is).
    pub fn startup_wait_for(&self, mode: Mode) -> Wait {
        match mode {
            Mode::Drain => self.startup_wait,
            Mode::Follow => Wait::Forever,
        }
    }
}

// The catalog is read from the folders the configuration names: defined here so that the
// catalog itself knows nothing of the configuration.
impl crate::catalog::Catalog {
    /// The types of `config`: `types_dir/*.toml` with `schemas_dir/<name>.schema.json`; the
    /// built-in types when the types folder does not exist. A type whose schema file is missing
    /// uses the built-in schema of that name, if there is one.
    pub fn load(config: &Config) -> Result<crate::catalog::Catalog, crate::catalog::CatalogError> {
        crate::catalog::Catalog::load_from(&config.types_dir, &config.schemas_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<Config, Box<figment::Error>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("etl.toml");
        std::fs::write(&file, toml).expect("write etl.toml");
        Config::load(&file)
    }

    #[test]
    fn the_api_token_and_the_read_url_password_are_never_shown() {
        let config = load(
            "api_token = \"tok-123456\"\nread_database_url = \"postgres://r:pw-98765@db/dwh\"\n",
        )
        .expect("valid");
        assert_eq!(config.api_token.as_deref(), Some("tok-123456"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("tok-123456"), "{shown}");
        assert!(!shown.contains("pw-98765"), "{shown}");
    }

    #[test]
    fn without_sources_the_inbox_is_the_source() {
        let config = load("workers = 3\n").expect("valid");
        assert_eq!(config.sources(), vec![SourceConfig::Inbox {}]);
    }

    #[test]
    fn sources_are_named_in_tables() {
        let config = load("[[sources]]\nkind = \"inbox\"\n").expect("valid");
        assert_eq!(config.sources(), vec![SourceConfig::Inbox {}]);
    }

    #[test]
    fn an_api_source_is_a_few_lines() {
        let config = load(
            "[[sources]]\nkind = \"inbox\"\n\n[[sources]]\nkind = \"http\"\nname = \"crm\"\n\
             type = \"cards\"\nurl = \"https://crm.example/v1/cards\"\n\
             item = { key = \"/id\", version = \"/updated_at\" }\n",
        )
        .expect("valid");
        let sources = config.sources();
        assert_eq!(sources.len(), 2);
        match &sources[1] {
            SourceConfig::Http(api) => {
                assert_eq!(api.name, "crm");
                assert_eq!(api.type_name, "cards");
            }
            other => panic!("not an http source: {other:?}"),
        }
        let typo = load(
            "[[sources]]\nkind = \"http\"\nname = \"crm\"\ntype = \"cards\"\nurl = \"https://x/\"\n\
             item = { key = \"/id\", version = \"/v\" }\npage_sise = 10\n",
        );
        assert!(typo.is_err(), "a misspelt key must not be ignored");
    }

    fn explained(toml: &str) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("etl.toml");
        std::fs::write(&file, toml).expect("write etl.toml");
        let error = Config::load(&file).expect_err("refused");
        let lines = explain(&error);
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines[0].replace(&file.display().to_string(), "etl.toml")
    }

    #[test]
    fn a_misspelt_key_is_named_with_its_place_and_the_nearest_known_key() {
        assert_eq!(
            explained("batch_sise = 3\n"),
            "unknown key `batch_sise` at the top level of etl.toml: did you mean `batch_size`?"
        );
        assert_eq!(
            explained(
                "[[sources]]\nkind = \"http\"\nname = \"crm\"\ntype = \"cards\"\nurl = \"https://x/\"\n\
                 item = { key = \"/id\", vresion = \"/v\" }\n"
            ),
            "unknown key `vresion` in [[sources]] #1 (kind = \"http\", name = \"crm\"), its `item` \
             table of etl.toml: did you mean `version`?"
        );
        assert_eq!(
            explained("[[sources]]\nkind = \"http\"\ntype = \"cards\"\nurl = \"https://x/\"\nitem = { key = \"/id\", version = \"/v\" }\n"),
            "missing key `name` in [[sources]] #1 (kind = \"http\") of etl.toml: add it"
        );
        assert_eq!(
            explained("workers = \"four\"\n"),
            "`workers` at the top level of etl.toml: invalid type: found string \"four\", \
             expected usize: fix its value"
        );
        assert_eq!(
            explained("[[sources]]\nkind = \"inbx\"\n"),
            "unknown value \"inbx\" of `kind` in [[sources]] #1 (kind = \"inbx\") of etl.toml: did you mean \"inbox\"?"
        );
    }

    #[test]
    fn an_unknown_source_kind_is_a_configuration_error() {
        let error = load("[[sources]]\nkind = \"carrier-pigeon\"\n").err();
        assert!(
            error.is_some(),
            "an unknown source must not start the daemon"
        );
    }
}
