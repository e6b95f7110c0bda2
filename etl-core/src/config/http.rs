//! An API source's `[[sources]]` table: what to request, how to page, how an item becomes an
//! event; checked once at start-up so that a mistake stops the daemon with a sentence.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::SetupError;

/// `kind = "http"`: an HTTP API polled on a schedule (see docs/src/guide/http-apis.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Names the stored position, the landing folder and the metric label.
    pub name: String,
    /// The declared event type each item becomes (the item is that type's `payload`).
    #[serde(rename = "type")]
    pub type_name: String,
    pub url: String,
    #[serde(default = "get")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// The file holding the API key (a Docker or Kubernetes secret).
    pub api_key_file: Option<PathBuf>,
    /// The header carrying the key (unless `api_key_param` is set).
    #[serde(default = "authorization")]
    pub api_key_header: String,
    #[serde(default = "bearer")]
    pub api_key_prefix: String,
    /// Send the key as this query parameter instead of a header.
    pub api_key_param: Option<String>,
    /// Query parameters; `{from}` and `{to}` in a value are the pulled window's bounds.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// How `{from}` and `{to}` are written (strftime, UTC).
    #[serde(default = "rfc3339")]
    pub time_format: String,
    /// JSON pointer to the list of items in a response body (`""`: the body is the list).
    #[serde(default)]
    pub items: String,
    pub page_size: Option<u64>,
    pub page_size_param: Option<String>,
    #[serde(default)]
    pub pagination: Pagination,
    /// Seconds between scheduled pulls in `etl run`.
    #[serde(default = "hourly")]
    pub interval_secs: u64,
    /// The first scheduled window's start when no position is stored (default: one interval
    /// before the first pull).
    pub start: Option<DateTime<Utc>>,
    #[serde(default = "thirty_seconds")]
    pub timeout_ms: u64,
    /// Attempts per page before the pull stops (to resume from that page next time).
    #[serde(default = "five")]
    pub max_attempts: u32,
    #[serde(default = "half_a_second")]
    pub retry_initial_ms: u64,
    #[serde(default = "thirty_seconds")]
    pub retry_max_ms: u64,
    /// Largest response body read, in bytes.
    #[serde(default = "sixty_four_mib")]
    pub max_page_bytes: usize,
    /// Which fields of an item make its event's envelope.
    pub item: ItemMapping,
    /// The window of a one-shot pull (`etl pull --from --to`); never read from a file.
    #[serde(skip)]
    pub window: Option<Window>,
}

/// How the pages follow each other.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "style", rename_all = "lowercase", deny_unknown_fields)]
pub enum Pagination {
    /// One request per window.
    #[default]
    None,
    /// The response's `field` (a JSON pointer) holds the cursor sent back as `param`; a null,
    /// missing or empty cursor ends the window.
    Cursor { field: String, param: String },
    /// The response's `field` holds the next page's URL (absolute, or relative to the
    /// request's); it must stay on the configured URL's origin, which the API key is sent to.
    Link { field: String },
    /// Pages numbered from `first`, sent as `param`; an empty or short page ends the window.
    Page {
        param: String,
        #[serde(default = "one")]
        first: u64,
    },
}

/// JSON pointers into an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemMapping {
    /// The entity's id.
    pub key: String,
    /// The item's version clock: a new value is a new event.
    pub version: String,
    /// The event time (default: the version clock): `YYYY-MM-DD HH:MM:SS`, RFC 3339 or Unix
    /// seconds.
    pub event_at: Option<String>,
    /// The item's own event id (a UUID), if it has one; else one is derived from the source's
    /// name, the key and the version, so pulling a page again makes no new event.
    pub event_id: Option<String>,
}

/// A half-open time window `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.from.to_rfc3339(), self.to.to_rfc3339())
    }
}

fn get() -> String {
    "GET".into()
}
fn authorization() -> String {
    "Authorization".into()
}
fn bearer() -> String {
    "Bearer ".into()
}
fn rfc3339() -> String {
    "%Y-%m-%dT%H:%M:%SZ".into()
}
fn hourly() -> u64 {
    3600
}
fn thirty_seconds() -> u64 {
    30_000
}
fn half_a_second() -> u64 {
    500
}
fn five() -> u32 {
    5
}
fn one() -> u64 {
    1
}
fn sixty_four_mib() -> usize {
    64 << 20
}

impl HttpConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// What can be checked without the network: [`HttpConfig::check`], and a readable key.
    pub fn validate(&self) -> Result<(), SetupError> {
        self.check()?;
        self.api_key().map(|_| ())
    }

    /// What can be checked from the table alone (the configuration's loader does, for every
    /// source): a name usable in paths and labels, a method, a URL, pointers that are
    /// pointers, counts and periods that can work. The key is read only where the source
    /// runs, so a command that pulls nothing does not need it.
    pub fn check(&self) -> Result<(), SetupError> {
        let bad = |what: String| Err(SetupError(format!("source {:?}: {what}", self.name)));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("the name may hold only letters, digits, - and _".into());
        }
        if !matches!(self.method.to_ascii_uppercase().as_str(), "GET" | "POST") {
            return bad(format!("method {:?}: use GET or POST", self.method));
        }
        match url::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => return bad(format!("url {:?} is not an http(s) URL", self.url)),
        }
        let mut pointers = vec![
            ("items", Some(&self.items)),
            ("item.key", Some(&self.item.key)),
            ("item.version", Some(&self.item.version)),
            ("item.event_at", self.item.event_at.as_ref()),
            ("item.event_id", self.item.event_id.as_ref()),
        ];
        if let Pagination::Cursor { field, .. } | Pagination::Link { field } = &self.pagination {
            pointers.push(("pagination.field", Some(field)));
        }
        for (what, pointer) in pointers {
            if let Some(p) = pointer.filter(|p| !p.is_empty() && !p.starts_with('/')) {
                return bad(format!(
                    "{what} = {p:?} is not a JSON pointer (it starts with /, e.g. \"/id\")"
                ));
            }
        }
        if self.api_key_env.is_some() && self.api_key_file.is_some() {
            return bad("set api_key_env or api_key_file, not both".into());
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1".into());
        }
        if self.interval_secs == 0 {
            return bad(
                "interval_secs = 0 would pull without a pause: set it to at least 1".into(),
            );
        }
        if self.timeout_ms == 0 {
            return bad("timeout_ms = 0 would fail every request: set it to at least 1".into());
        }
        // chrono reports a bad pattern only when it formats (a panic in `to_string`): check it
        // here, once.
        if chrono::format::StrftimeItems::new(&self.time_format)
            .parse()
            .is_err()
        {
            return bad(format!(
                "time_format {:?} is not a strftime pattern",
                self.time_format
            ));
        }
        const DAY_MS: u64 = 24 * 3600 * 1000;
        for (what, value, max) in [
            ("interval_secs", self.interval_secs, 366 * 24 * 3600),
            ("timeout_ms", self.timeout_ms, DAY_MS),
            ("retry_initial_ms", self.retry_initial_ms, DAY_MS),
            ("retry_max_ms", self.retry_max_ms, DAY_MS),
        ] {
            if value > max {
                return bad(format!(
                    "{what} = {value} is more than the largest allowed, {max}"
                ));
            }
        }
        if matches!(self.pagination, Pagination::Page { .. })
            && self.page_size.is_some()
            && self.page_size_param.is_none()
        {
            // A short page ends a numbered window: the API must be asked for that page size.
            return bad("page_size without page_size_param: the API would not know the size that ends the window".into());
        }
        Ok(())
    }

    /// The API key, from the environment or its file, if one is configured.
    pub fn api_key(&self) -> Result<Option<String>, SetupError> {
        let bad = |what: String| SetupError(format!("source {:?}: {what}", self.name));
        if let Some(var) = &self.api_key_env {
            return match std::env::var(var) {
                Ok(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_owned())),
                _ => Err(bad(format!(
                    "api_key_env names {var}, which is not set in the environment"
                ))),
            };
        }
        if let Some(file) = &self.api_key_file {
            return match std::fs::read_to_string(file) {
                Ok(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_owned())),
                Ok(_) => Err(bad(format!("the api_key_file {} is empty", file.display()))),
                Err(error) => Err(bad(format!(
                    "cannot read the api_key_file {}: {error}",
                    file.display()
                ))),
            };
        }
        Ok(None)
    }
}

/// Now, in whole seconds: APIs take times at that resolution, and consecutive windows must meet
/// exactly.
pub fn now_in_seconds() -> DateTime<Utc> {
    use chrono::DurationRound;
    let now = Utc::now();
    now.duration_trunc(chrono::TimeDelta::seconds(1))
        .unwrap_or(now)
}

/// A date or time given on the command line: `2026-11-20` (midnight UTC) or RFC 3339.
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "{text:?} is not a date (2026-11-20) or an RFC 3339 time (2026-11-20T06:00:00Z)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(extra: &str) -> Result<HttpConfig, toml::de::Error> {
        toml::from_str(&format!(
            "name = \"crm\"\ntype = \"cards\"\nurl = \"http://127.0.0.1:1/v1/cards\"\n\
             item = {{ key = \"/id\", version = \"/updated_at\" }}\n{extra}"
        ))
    }

    #[test]
    fn a_few_lines_make_a_source_with_sensible_defaults() {
        let config = source("").expect("valid");
        assert_eq!(config.method, "GET");
        assert_eq!(config.pagination, Pagination::None);
        assert_eq!(config.interval_secs, 3600);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn pagination_styles_are_tagged_tables() {
        let config = source(
            "pagination = { style = \"cursor\", field = \"/next_cursor\", param = \"cursor\" }",
        )
        .expect("valid");
        assert_eq!(
            config.pagination,
            Pagination::Cursor {
                field: "/next_cursor".into(),
                param: "cursor".into()
            }
        );
        let config = source("pagination = { style = \"page\", param = \"p\" }").expect("valid");
        assert_eq!(
            config.pagination,
            Pagination::Page {
                param: "p".into(),
                first: 1
            }
        );
    }

    #[test]
    fn mistakes_are_named() {
        for wrong in [
            "time_format = \"%Q\"",
            "interval_secs = 99999999999",
            "page_size = 10\npagination = { style = \"page\", param = \"p\" }",
        ] {
            assert!(
                source(wrong).expect("parses").validate().is_err(),
                "{wrong} must be refused at start-up"
            );
        }
        let error = source("items = \"data\"")
            .expect("parses")
            .validate()
            .expect_err("not a pointer");
        assert!(error.to_string().contains("items"), "{error}");
        let error = source("api_key_env = \"ETL_TEST_SURELY_UNSET_KEY\"")
            .expect("parses")
            .validate()
            .expect_err("unset");
        assert!(
            error.to_string().contains("ETL_TEST_SURELY_UNSET_KEY"),
            "{error}"
        );
        assert!(source("colour = \"blue\"").is_err(), "unknown keys refused");
    }

    #[test]
    fn command_line_dates_are_days_or_times() {
        assert_eq!(
            parse_instant("2026-11-20").expect("date").to_rfc3339(),
            "2026-11-20T00:00:00+00:00"
        );
        assert_eq!(
            parse_instant("2026-11-20T06:00:00+01:00")
                .expect("time")
                .to_rfc3339(),
            "2026-11-20T05:00:00+00:00"
        );
        assert!(parse_instant("yesterday").is_err());
    }
}
