//! Configuration: built-in defaults < `etl.toml` (optional) < `ETL_*` environment variables,
//! in sections ([`sections`]), brought to one shape ([`input`]), checked in one place
//! ([`Config::load`]), and documented from the doc comments ([`reference`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod error;
pub mod http;
pub mod input;
pub mod reference;
pub mod sections;
pub mod source;

pub use error::{ConfigError, SetupError};
use input::{Input, Origins, Sectioned};
pub use sections::{
    AlertsConfig, BrokerConfig, DatabaseConfig, InboxConfig, LakeConfig, RetentionConfig,
    ServeConfig, DEFAULT_DATABASE_URL, DEFAULT_NATS_URL,
};
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

/// Every setting of the daemon: the general ones at the top level of `etl.toml`, the others in
/// their sections (`[database] url = "…"`, or `ETL_DATABASE__URL` in the environment). Each
/// setting that had a flat name before the sections (`database_url`, `ETL_DATABASE_URL`) keeps
/// it as an alias. docs/src/reference/configuration.md is generated from these doc comments.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Root of the file layout: `events/inbox/<type>/`, `events/{done,failed}/<type>/<YYYY-MM-DD>/`, the landing zone `lake/raw/` and `logs/`.
    pub data_dir: PathBuf,
    /// Folder with each type's `<name>.schema.json`; the built-in copy of a shipped type's schema is used when its file is missing there, so a schema fix needs no rebuild.
    pub schemas_dir: PathBuf,
    /// Folder with the event type declarations (`<name>.toml`); the built-in `users` and `cards` when the folder does not exist.
    pub types_dir: PathBuf,
    /// Workers applying events to the warehouse, each owning a partition of the entities (default: the number of cores).
    pub workers: usize,
    /// Capacity of the bounded channels between the stages (backpressure, bounded memory).
    pub channel_capacity: usize,
    /// Most events a worker applies in one transaction.
    pub batch_size: usize,
    /// Longest a worker waits to fill a batch before committing what it has.
    pub batch_timeout_ms: u64,
    /// Bound on a graceful shutdown (finish and commit what is in flight).
    pub shutdown_timeout_secs: u64,
    /// Address of the HTTP endpoints (`/healthz`, `/readyz`, `/metrics`); empty disables them.
    pub http_addr: String,
    /// Seconds between progress lines while work is pending.
    pub progress_interval_secs: u64,
    /// An event whose version clock or `event_at` is further ahead of the daemon's clock (UTC) than this is refused (`future_version`): it would win the version guard against every genuine update. Producers write naive local times, so the default (one day) covers any time zone.
    pub max_future_skew_secs: u64,
    /// The warehouse.
    pub database: DatabaseConfig,
    /// The inbox folders.
    pub inbox: InboxConfig,
    /// The JetStream broker.
    pub broker: BrokerConfig,
    /// The Parquet lake and raw retention.
    pub lake: LakeConfig,
    /// The file folders' retention.
    pub retention: RetentionConfig,
    /// The read API.
    pub serve: ServeConfig,
    /// The alert webhook.
    pub alerts: AlertsConfig,
    /// Where records come from: `[[sources]]` tables in `etl.toml` (e.g. `kind = "inbox"`).
    /// None configured means the inbox, so every existing setup keeps working.
    #[serde(default)]
    #[schemars(skip)]
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
        Config {
            data_dir: PathBuf::from("./data"),
            schemas_dir: PathBuf::from("./schemas"),
            types_dir: PathBuf::from("./types"),
            workers: sections::cores(),
            channel_capacity: 1024,
            batch_size: 1000,
            batch_timeout_ms: 5,
            shutdown_timeout_secs: 10,
            http_addr: "127.0.0.1:9187".into(),
            progress_interval_secs: 5,
            max_future_skew_secs: 24 * 3600,
            database: DatabaseConfig::default(),
            inbox: InboxConfig::default(),
            broker: BrokerConfig::default(),
            lake: LakeConfig::default(),
            retention: RetentionConfig::default(),
            serve: ServeConfig::default(),
            alerts: AlertsConfig::default(),
            sources: Vec::new(),
            startup_wait: Wait::Forever,
        }
    }
}

impl Config {
    /// Loads defaults, then `file` if it exists, then `ETL_*` variables, and checks the result
    /// ([`Config::validate`]).
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let mut origins = Origins::default();
        // Each input is read, then brought to sections; its own errors (bad TOML) explained.
        let mut read = |provider: &dyn Provider, input: Input<'_>| {
            let data = provider
                .data()
                .map_err(|error| ConfigError::Unreadable(explain(&error, &origins)))?;
            Sectioned::new(provider.metadata(), data, input, &mut origins)
        };
        let toml = read(&Toml::file(file), Input::File(file))?;
        let env = read(&Env::prefixed("ETL_").split("__"), Input::Env)?;
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(toml)
            .merge(env)
            .extract()
            .map_err(|error| ConfigError::Unreadable(explain(&error, &origins)))?;
        config.check(&origins)?;
        Ok(config)
    }

    /// Every check of the settings that needs no I/O, for a configuration built in code; the
    /// messages name each setting by its documented name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&Origins::default())
    }

    /// The one place the settings are checked: zeros that cannot work, settings that need
    /// each other, and the `[[sources]]` tables (the HTTP sources' own checks included). The
    /// messages name each setting the way `origins` says it was given.
    fn check(&self, origins: &Origins) -> Result<(), ConfigError> {
        let at_least_one: [(&str, u64, &'static str); 16] = [
            (
                "workers",
                self.workers as u64,
                "no worker would apply an event",
            ),
            (
                "channel_capacity",
                self.channel_capacity as u64,
                "no stage could hand a record on",
            ),
            (
                "batch_size",
                self.batch_size as u64,
                "no batch could hold an event",
            ),
            (
                "inbox.readers",
                self.inbox.readers as u64,
                "no thread would read a file",
            ),
            (
                "inbox.rescan_interval_secs",
                self.inbox.rescan_interval_secs,
                "the rescan would never pause",
            ),
            (
                "database.max_retry_backoff_ms",
                self.database.max_retry_backoff_ms,
                "retries would hammer the database without a pause",
            ),
            (
                "broker.ack_wait_secs",
                self.broker.ack_wait_secs,
                "the broker would deliver every message again at once",
            ),
            (
                "broker.replicas",
                self.broker.replicas as u64,
                "a stream needs one copy at least",
            ),
            (
                "broker.fetch_batch",
                self.broker.fetch_batch as u64,
                "a replica would fetch nothing",
            ),
            (
                "broker.publish_in_flight",
                self.broker.publish_in_flight as u64,
                "a forwarder could publish nothing",
            ),
            (
                "broker.duplicate_window_secs",
                self.broker.duplicate_window_secs,
                "the broker could not drop a re-published event",
            ),
            (
                "lake.retired_ids_days",
                self.lake.retired_ids_days,
                "a replayed old event could not be recognised",
            ),
            (
                "alerts.database_down_secs",
                self.alerts.database_down_secs,
                "every retry would send an alert",
            ),
            (
                "alerts.rejections_interval_secs",
                self.alerts.rejections_interval_secs,
                "the summaries would have no period",
            ),
            (
                "serve.pool_size",
                self.serve.pool_size as u64,
                "the read API would have no connection",
            ),
            (
                "serve.max_in_flight",
                self.serve.max_in_flight as u64,
                "the read API would answer every request 503",
            ),
        ];
        for (path, value, why) in at_least_one {
            if value == 0 {
                return Err(ConfigError::Zero {
                    setting: origins.describe(path),
                    why,
                });
            }
        }
        if self.lake.raw_retention_days > 0 && self.lake.export_interval_secs == 0 {
            // Deleting raw rows that were never exported would lose them.
            return Err(ConfigError::RawRetentionWithoutExport {
                raw: origins.describe("lake.raw_retention_days"),
                export:
                    "`export_interval_secs` in [lake] (ETL_LAKE__EXPORT_INTERVAL_SECS, or the flat \
                         lake_export_interval_secs)"
                        .to_owned(),
            });
        }
        let mut inbox: Option<usize> = None;
        let mut names: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (index, source) in self.sources.iter().enumerate() {
            let number = index + 1;
            match source {
                SourceConfig::Inbox {} => {
                    if let Some(first) = inbox {
                        return Err(ConfigError::InboxTwice {
                            first,
                            second: number,
                        });
                    }
                    inbox = Some(number);
                }
                SourceConfig::Jetstream {} => {}
                SourceConfig::Http(http) => {
                    if let Some(&first) = names.get(http.name.as_str()) {
                        return Err(ConfigError::DuplicateSourceName {
                            name: http.name.clone(),
                            first,
                            second: number,
                        });
                    }
                    names.insert(&http.name, number);
                    http.check()?;
                }
            }
        }
        Ok(())
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
        Duration::from_millis(self.inbox.settle_ms)
    }

    pub fn batch_timeout(&self) -> Duration {
        Duration::from_millis(self.batch_timeout_ms)
    }

    pub fn rescan_interval(&self) -> Duration {
        Duration::from_secs(self.inbox.rescan_interval_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn max_future_skew(&self) -> Duration {
        Duration::from_secs(self.max_future_skew_secs)
    }

    pub fn nats_ack_wait(&self) -> Duration {
        Duration::from_secs(self.broker.ack_wait_secs)
    }

    pub fn max_retry_backoff(&self) -> Duration {
        Duration::from_millis(self.database.max_retry_backoff_ms)
    }
}

/// Why the configuration cannot be used: one line per problem, naming the key, where it was
/// found (the file and its table, or the environment variable) and, for a misspelt key, the
/// nearest known one. figment's own message lists every known key of the table, which hides
/// the one line that matters. `origins` says how each setting was spelt (a flat alias, or its
/// section's table), so a setting is named as the user wrote it.
pub(crate) fn explain(error: &figment::Error, origins: &Origins) -> Vec<String> {
    error
        .clone()
        .into_iter()
        .map(|e| explain_one(&e, origins))
        .collect()
}

fn explain_one(error: &figment::Error, origins: &Origins) -> String {
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
            // At the top level, the flat aliases are known keys too.
            let mut known: Vec<&str> = known.to_vec();
            if path.is_empty() {
                known.extend(sections::FLAT_ALIASES.iter().map(|(flat, _, _)| *flat));
            }
            let section = match path.as_slice() {
                [section] if sections::SECTIONS.contains(&section.as_str()) => {
                    Some(section.as_str())
                }
                _ => None,
            };
            let hint = match nearest(found, &known) {
                Some(near) if from_env => {
                    format!("did you mean {}?", sections::env_var(section, near))
                }
                Some(near) => format!("did you mean `{near}`?"),
                None => "no known key is close (see docs/src/reference/configuration.md)".into(),
            };
            if from_env {
                format!(
                    "unknown environment variable {}: {hint} (every ETL_* variable must be a \
                     setting, so that a misspelt one is not silently ignored)",
                    sections::env_var(section, found)
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
            // A setting of the configuration itself (not a `[[sources]]` table's): named as given.
            let setting = path.join(".");
            if path.first().map(String::as_str) != Some("sources") {
                if let Some(origin) = origins.get(&setting) {
                    let fix = match origin {
                        input::Origin::Env { .. } => "fix the variable's value",
                        input::Origin::File { .. } => "fix its value",
                    };
                    return format!("{origin}: {}: {fix}", error.kind);
                }
            }
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
        shown["database"]["url"] = crate::secrets::redact(&self.database.url).into();
        // A webhook URL is a credential (its path is the token).
        if !self.alerts.webhook_url.is_empty() {
            shown["alerts"]["webhook_url"] = "***".into();
        }
        if let Some(url) = &self.serve.database_url {
            shown["serve"]["database_url"] = crate::secrets::redact(url).into();
        }
        // The read API's token: never in a log line.
        if self.serve.api_token.is_some() {
            shown["serve"]["api_token"] = "***".into();
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

    fn load(toml: &str) -> Result<Config, ConfigError> {
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
        assert_eq!(config.serve.api_token.as_deref(), Some("tok-123456"));
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
        let lines = error.lines();
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
    fn a_setting_is_read_from_its_section_or_its_flat_alias() {
        let sectioned =
            load("[database]\nurl = \"postgres://a@h/x\"\n[broker]\nurl = \"nats://b:1\"\n")
                .expect("valid");
        assert_eq!(sectioned.database.url, "postgres://a@h/x");
        assert_eq!(sectioned.broker.url, "nats://b:1");
        let flat = load("database_url = \"postgres://a@h/x\"\nnats_url = \"nats://b:1\"\n")
            .expect("valid");
        assert_eq!(flat.database.url, "postgres://a@h/x");
        assert_eq!(flat.broker.url, "nats://b:1");
        // A section given in part keeps the defaults of its other keys.
        assert_eq!(flat.broker.stream, "EVENTS");
    }

    #[test]
    fn both_names_of_one_setting_are_refused_naming_both() {
        assert_eq!(
            explained(
                "database_url = \"postgres://a@h/x\"\n[database]\nurl = \"postgres://b@h/x\"\n"
            ),
            "`url` in [database] of etl.toml and `database_url` at the top level of etl.toml are \
             the same setting: keep one (`url` in [database] of etl.toml is its name, \
             `database_url` at the top level of etl.toml an alias kept for older files)"
        );
    }

    #[test]
    fn a_misspelt_key_in_a_section_is_named_with_its_section() {
        assert_eq!(
            explained("[broker]\nack_wait_sec = 60\n"),
            "unknown key `ack_wait_sec` in [broker] of etl.toml: did you mean `ack_wait_secs`?"
        );
        assert_eq!(
            explained("nats_ulr = \"nats://b:1\"\n"),
            "unknown key `nats_ulr` at the top level of etl.toml: did you mean `nats_url`?"
        );
        assert_eq!(
            explained("[inbox]\nreaders = \"two\"\n"),
            "`readers` in [inbox] of etl.toml: invalid type: found string \"two\", expected usize: \
             fix its value"
        );
        assert_eq!(
            explained("database = \"postgres://a@h/x\"\n"),
            "`database` at the top level of etl.toml names the section [database], which holds \
             settings rather than a value: set its keys instead (`key = value` lines under \
             [database] in the file, or ETL_DATABASE__<KEY> variables)"
        );
    }

    #[test]
    fn a_zero_that_cannot_work_is_refused_naming_the_key_as_written() {
        assert_eq!(
            explained("workers = 0\n"),
            "`workers` at the top level of etl.toml is 0, which cannot work (no worker would apply \
             an event): set it to at least 1"
        );
        assert_eq!(
            explained("[broker]\nfetch_batch = 0\n"),
            "`fetch_batch` in [broker] of etl.toml is 0, which cannot work (a replica would fetch \
             nothing): set it to at least 1"
        );
        assert_eq!(
            explained("serve_pool_size = 0\n"),
            "`serve_pool_size` at the top level of etl.toml is 0, which cannot work (the read API \
             would have no connection): set it to at least 1"
        );
    }

    #[test]
    fn raw_retention_without_the_lake_export_is_refused() {
        let line = explained("[lake]\nraw_retention_days = 30\n");
        assert!(
            line.starts_with("`raw_retention_days` in [lake] of etl.toml needs the lake export"),
            "{line}"
        );
        load("[lake]\nraw_retention_days = 30\nexport_interval_secs = 3600\n").expect("valid");
    }

    #[test]
    fn sources_are_checked_when_the_configuration_is_loaded() {
        assert_eq!(
            explained("[[sources]]\nkind = \"inbox\"\n[[sources]]\nkind = \"inbox\"\n"),
            "the inbox source is configured twice ([[sources]] #1 and #2): keep one"
        );
        let http = "[[sources]]\nkind = \"http\"\nname = \"crm\"\ntype = \"cards\"\n\
                    url = \"https://x/\"\nitem = { key = \"/id\", version = \"/v\" }\n";
        assert!(
            explained(&format!("{http}{http}")).starts_with("two http sources are named \"crm\"")
        );
        assert_eq!(
            explained(&http.replace("https://x/", "ftp://x/")),
            "source \"crm\": url \"ftp://x/\" is not an http(s) URL"
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
