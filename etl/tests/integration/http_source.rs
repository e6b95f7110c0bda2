//! The `http` source (issue 20), end to end: the real `etl` binary pulls card items from a real
//! HTTP API on loopback (`testkit::fake_api`: axum, cursor pages, a bearer key, programmable
//! faults, a request log) into a fresh PostgreSQL database. Each test asserts outcomes: the
//! `cards` table against an oracle computed from the items the API served, the raw zone, the
//! raw pages landed on disk, `rejected_events`, `http_positions`, log lines, metrics and exit
//! codes.

use crate::common;
use testkit::fake_api as api;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use api::{Api, Item, Request};
use chrono::{NaiveDate, NaiveDateTime};
use common::{free_addr, try_get, wait_until, Daemon, Env};
use serde_json::Value;

/// Limit for every wait on an outcome (each test is meant to take well under it).
const PATIENCE: Duration = Duration::from_secs(30);
/// The variable holding the API key (`api_key_env`).
const KEY_VAR: &str = "CRM_API_KEY";
/// Items per page (`page_size`, sent as `limit`).
const PAGE: usize = 10;

// ---------------------------------------------------------------------------------------------
// Set-up: days, keys, etl.toml, commands.
// ---------------------------------------------------------------------------------------------

/// Midnight UTC `n` days after the test's first day, six days ago: every item is in the past.
struct Days(NaiveDate);

impl Days {
    fn new() -> Days {
        Days(chrono::Utc::now().date_naive() - chrono::Days::new(6))
    }

    fn at(&self, n: u64) -> NaiveDateTime {
        (self.0 + chrono::Days::new(n))
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
    }

    /// `etl pull`'s DATE form, `2026-11-20`.
    fn date(&self, n: u64) -> String {
        self.at(n).format("%Y-%m-%d").to_string()
    }
}

fn rfc3339(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A distinctive key, different in every test run.
fn secret(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{prefix}-{:x}{:x}", nanos, std::process::id())
}

/// The `[[sources]]` table of the tests' source `crm`.
struct Source {
    url: String,
    timeout_ms: u64,
    max_attempts: u32,
    retry_initial_ms: u64,
    retry_max_ms: u64,
    interval_secs: u64,
    start: Option<NaiveDateTime>,
}

impl Source {
    fn of(api: &Api) -> Source {
        Source {
            url: api.url(),
            timeout_ms: 5_000,
            max_attempts: 5,
            retry_initial_ms: 50,
            // Above Retry-After's one second, so that no cap question arises.
            retry_max_ms: 2_000,
            // Short, so that the first scheduled window comes quickly whether the schedule
            // pulls at start-up or one interval later.
            interval_secs: 2,
            start: None,
        }
    }

    fn toml(&self) -> String {
        let start = self
            .start
            .map(|t| format!("start = \"{}\"\n", rfc3339(t)))
            .unwrap_or_default();
        format!(
            r#"[[sources]]
kind = "http"
name = "crm"
type = "cards"
url = "{url}"
method = "GET"
headers = {{ Accept = "application/json" }}
api_key_env = "{KEY_VAR}"
api_key_header = "Authorization"
api_key_prefix = "Bearer "
query = {{ updated_since = "{{from}}", updated_until = "{{to}}" }}
time_format = "%Y-%m-%dT%H:%M:%SZ"
items = "/data"
page_size = {PAGE}
page_size_param = "limit"
pagination = {{ style = "cursor", field = "/next_cursor", param = "cursor" }}
interval_secs = {interval}
{start}timeout_ms = {timeout}
max_attempts = {attempts}
retry_initial_ms = {initial}
retry_max_ms = {max}
item = {{ key = "/id", version = "/updated_at", event_at = "/updated_at" }}
"#,
            url = self.url,
            interval = self.interval_secs,
            timeout = self.timeout_ms,
            attempts = self.max_attempts,
            initial = self.retry_initial_ms,
            max = self.retry_max_ms,
        )
    }

    /// Writes `etl.toml` where the binary runs (the test's temp dir).
    fn write(&self, env: &Env) {
        std::fs::write(env.dir.path().join("etl.toml"), self.toml()).expect("write etl.toml");
    }
}

fn migrate(env: &Env) {
    let out = env.run_etl(&["migrate"]);
    assert!(
        out.status.success(),
        "etl migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn key_vars(key: &str) -> Vec<(&'static str, String)> {
    vec![(KEY_VAR, key.to_owned())]
}

/// `etl pull crm --from <from> --to <to>`, logging to `<name>.log`.
fn pull(env: &Env, name: &str, from: &str, to: &str, vars: &[(&str, String)]) -> Daemon {
    env.spawn_etl(name, &["pull", "crm", "--from", from, "--to", to], vars)
}

/// Waits for `etl` to exit and checks its status code.
fn assert_exit(etl: &mut Daemon, code: i32) {
    let status = etl.exit_within(PATIENCE);
    assert_eq!(
        status.code(),
        Some(code),
        "etl exited with {status}; its log:\n{}",
        etl.log_tail(40)
    );
}

// ---------------------------------------------------------------------------------------------
// Reading the outcome: tables, raw pages, log lines, metrics.
// ---------------------------------------------------------------------------------------------

const TS_SQL: &str = "'YYYY-MM-DD HH24:MI:SS'";

/// The `cards` table as [`api::oracle`] writes it (`event_id` aside: the source derives it).
fn warehouse_cards(env: &Env) -> Value {
    env.query_json(&format!(
        "SELECT id, user_id, created_by_name, to_char(created_at, {TS_SQL}) AS created_at,
                to_char(updated_at, {TS_SQL}) AS updated_at, active,
                to_char(event_at, {TS_SQL}) AS event_at FROM cards"
    ))
}

/// The `cards` events of the raw zone as [`api::expected_events`] writes them.
fn raw_zone(env: &Env) -> Value {
    let sql = format!(
        "SELECT coalesce(json_agg(t ORDER BY t.id, t.version), '[]') FROM (
           SELECT entity_id AS id, payload->>'updated_at' AS version,
                  to_char(event_at, {TS_SQL}) AS event_at, payload
           FROM events WHERE type = 'cards') t"
    );
    let out = testkit::pg::psql(&env.db.url, &sql).expect("query runs");
    serde_json::from_str(&out).expect("json_agg output")
}

/// Asserts the warehouse holds exactly what `items` (every item served) should leave: the
/// latest loadable version per id in `cards`, each loadable version once in `events`, and each
/// card's `event_id` one of its events'.
fn assert_warehouse(env: &Env, items: &[Item]) {
    let expected = api::oracle(items);
    assert_eq!(
        warehouse_cards(env),
        expected,
        "cards is not the latest loadable version of each id served"
    );
    let events = api::expected_events(items);
    assert_eq!(
        env.scalar("SELECT count(*) FROM events WHERE type = 'cards'"),
        events.as_array().map_or(0, Vec::len) as i64,
        "not one event per distinct item version"
    );
    assert_eq!(
        raw_zone(env),
        events,
        "the raw zone is not the items served"
    );
    assert_eq!(
        env.scalar(
            "SELECT count(*) FROM cards c JOIN events e ON e.event_id = c.event_id \
             AND e.entity_id = c.id AND e.type = 'cards'"
        ),
        expected.as_array().map_or(0, Vec::len) as i64,
        "a card's event_id is not the event_id of one of its events"
    );
}

/// The items of the windows [from, to) among `items`.
fn in_windows(items: &[Item], windows: &[(NaiveDateTime, NaiveDateTime)]) -> Vec<Item> {
    items
        .iter()
        .filter(|i| {
            windows
                .iter()
                .any(|(from, to)| i.updated_at >= *from && i.updated_at < *to)
        })
        .cloned()
        .collect()
}

/// Every file under `dir`, recursively (symlinks are not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => found.extend(files_under(&path)),
                Ok(t) if t.is_file() => found.push(path),
                _ => {}
            }
        }
    }
    found.sort();
    found
}

/// The raw pages landed for the source `crm`.
fn lake(env: &Env) -> Vec<PathBuf> {
    files_under(&env.config.data_dir.join("lake/raw/crm"))
}

/// Whether `name` is `<HHMMSS.mmm>-<page 5 digits>.ndjson`.
fn is_page_file_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".ndjson") else {
        return false;
    };
    let b = stem.as_bytes();
    b.len() == 16
        && b[6] == b'.'
        && b[10] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 6 || i == 10 || c.is_ascii_digit())
}

/// Asserts every raw page is at `lake/raw/crm/<yyyy>/<mm>/<dd>/<HHMMSS.mmm>-<page>.ndjson` with
/// a date among `dates` (UTC), and returns their lines.
fn lake_lines(env: &Env, dates: &[NaiveDate]) -> Vec<String> {
    let root = env.config.data_dir.join("lake/raw/crm");
    let mut lines = Vec::new();
    for file in lake(env) {
        let rel = file.strip_prefix(&root).expect("under the source's folder");
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            parts.len(),
            4,
            "not <yyyy>/<mm>/<dd>/<file>: {}",
            rel.display()
        );
        let date = NaiveDate::parse_from_str(&parts[..3].join("-"), "%Y-%m-%d")
            .unwrap_or_else(|_| panic!("not a <yyyy>/<mm>/<dd> folder: {}", rel.display()));
        assert!(
            dates.contains(&date),
            "{} is not dated by the pull (UTC {dates:?})",
            rel.display()
        );
        assert!(
            parts[1].len() == 2 && parts[2].len() == 2,
            "month and day in two digits: {}",
            rel.display()
        );
        assert!(
            is_page_file_name(&parts[3]),
            "not <HHMMSS.mmm>-<page 5 digits>.ndjson: {}",
            rel.display()
        );
        let text = std::fs::read_to_string(&file).expect("a readable raw page");
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

/// Today in UTC, for the lake's date folders.
fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

/// A log field as text, whether it was logged as a string or a number.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| value.as_str()?.parse().ok())
}

/// The log lines whose message is `message`.
fn lines_with(etl: &Daemon, message: &str) -> Vec<Value> {
    etl.log_lines()
        .into_iter()
        .filter(|l| l["message"] == message)
        .collect()
}

/// How many "retrying a page" WARN lines name each status.
fn retries_by_status(etl: &Daemon) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in lines_with(etl, "retrying a page") {
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["source"], "crm", "{line}");
        assert!(
            !line["attempt"].is_null() && !line["retry_in_ms"].is_null(),
            "attempt and retry_in_ms are fields of the line: {line}"
        );
        *counts.entry(text(&line["status"])).or_insert(0) += 1;
    }
    counts
}

/// The value of the Prometheus series `name` carrying (at least) `labels`, from `/metrics` text.
fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let found: Vec<(&str, &str)> = series_labels
                .split(',')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.trim(), v.trim().trim_matches('"')))
                })
                .collect();
            labels
                .iter()
                .all(|want| found.contains(want))
                .then(|| value.trim().parse().ok())?
        })
}

/// How many requests the API answered with `status`.
fn answered(requests: &[Request], status: u16) -> usize {
    requests.iter().filter(|r| r.status == status).count()
}

/// The items of every page the client received, in order.
fn served_items(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.served())
        .flat_map(|r| r.items.iter().cloned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

/// Issue 20's main case: a two-day backfill of 20 pages through 502s (on a request number and
/// twice on one page), a 429 with `Retry-After: 1`, a page slower than the timeout and a page
/// served twice. The pull ends 0; the warehouse is the oracle with one event per version; every
/// page received is on disk as received; each retry is one WARN line naming its cause.
#[test]
fn a_backfill_through_502s_a_429_a_timeout_and_a_repeated_page_loads_every_version_once() {
    let env = Env::new();
    let days = Days::new();
    let key = secret("sk-test");
    let (from, to) = (days.at(1), days.at(3));
    // 200 versions in the window (20 pages), and some on either side that must not be pulled.
    let items = api::generate(
        2001,
        1..61,
        &[
            (days.at(0), from, 15),
            (from, to, 20 * PAGE),
            (to, days.at(5), 25),
        ],
    );
    let api = Api::start(&key, items);
    api.faults(|f| {
        f.fail_requests.insert(1);
        f.fail_pages.insert(3, 2);
        f.rate_limited_pages.insert(7, 1);
        f.slow_pages.insert(11, 1);
        f.slow_delay = Duration::from_secs(3);
        f.repeat_page = Some(15);
    });
    migrate(&env);
    let mut source = Source::of(&api);
    source.timeout_ms = 500;
    source.write(&env);
    let started = today();

    let mut etl = pull(&env, "pull", &days.date(1), &days.date(3), &key_vars(&key));
    assert_exit(&mut etl, 0);

    // The API's view: the window asked for, the page size and headers sent, every fault hit.
    let requests = api.requests();
    for r in &requests {
        assert_ne!(r.status, 401, "request {} unauthorized", r.n);
        assert_eq!((r.from, r.to), (Some(from), Some(to)), "request {}", r.n);
        assert_eq!(r.limit, Some(PAGE), "request {} page size", r.n);
        assert_eq!(
            r.accept.as_deref(),
            Some("application/json"),
            "request {}",
            r.n
        );
    }
    assert_eq!(answered(&requests, 502), 3, "{requests:#?}");
    assert_eq!(answered(&requests, 429), 1, "{requests:#?}");
    assert_eq!(requests.iter().filter(|r| r.slow).count(), 1);
    let mut received: Vec<usize> = requests
        .iter()
        .filter(|r| r.served())
        .filter_map(|r| r.page)
        .collect();
    received.sort_unstable();
    assert_eq!(
        received,
        (0..=20).collect::<Vec<_>>(),
        "each of the 21 pages (20 + the repeated one) received once"
    );
    let limited = requests
        .iter()
        .position(|r| r.status == 429)
        .expect("a 429");
    let after = requests[limited + 1..]
        .iter()
        .find(|r| r.page == Some(7))
        .expect("the rate-limited page asked again");
    assert!(
        after.at.duration_since(requests[limited].at) >= Duration::from_millis(900),
        "Retry-After: 1 not honoured: asked again after {:?}",
        after.at.duration_since(requests[limited].at)
    );

    // The warehouse: the window's versions, each once (the repeated page made no new event).
    let window = api.window(from, to);
    assert_eq!(window.len(), 20 * PAGE);
    assert_warehouse(&env, &window);

    // The raw pages: one file per page received, holding its items byte for byte.
    let lines = lake_lines(&env, &[started, today()]);
    let files = lake(&env);
    assert_eq!(
        files.len(),
        21,
        "one raw page per page received (20 + the repeated one): {files:#?}"
    );
    let served = served_items(&requests);
    assert_eq!(served.len(), 21 * PAGE);
    let parsed = |v: &[String]| -> Vec<Value> {
        let mut docs: Vec<Value> = v
            .iter()
            .map(|l| serde_json::from_str(l).expect("a raw line is JSON"))
            .collect();
        docs.sort_by_key(|d| d.to_string());
        docs
    };
    assert_eq!(
        parsed(&lines),
        parsed(&served),
        "the raw pages' lines are not the items served"
    );
    assert_eq!(
        sorted(lines),
        sorted(served),
        "the raw lines are the items re-serialized, not the bytes received"
    );

    // The log: one WARN per retry, naming its cause; one "pull complete"; no ERROR.
    let retries = retries_by_status(&etl);
    assert_eq!(
        retries.get("502"),
        Some(&3),
        "{retries:?}\n{}",
        etl.log_tail(40)
    );
    assert_eq!(retries.get("429"), Some(&1), "{retries:?}");
    assert_eq!(retries.get("timeout"), Some(&1), "{retries:?}");
    assert_eq!(retries.values().sum::<usize>(), 5, "{retries:?}");
    let complete = lines_with(&etl, "pull complete");
    assert_eq!(complete.len(), 1, "{}", etl.log_tail(40));
    assert_eq!(complete[0]["level"], "INFO");
    assert_eq!(complete[0]["source"], "crm");
    assert_eq!(number(&complete[0]["pages"]), Some(21), "{}", complete[0]);
    assert_eq!(
        number(&complete[0]["items"]),
        Some(21 * PAGE as u64),
        "{}",
        complete[0]
    );
    assert_eq!(etl.lines_at("ERROR"), Vec::<Value>::new());
    assert_eq!(
        env.scalar("SELECT count(*) FROM http_positions WHERE source = 'crm' AND NOT done"),
        0
    );
}

/// The same kinds of faults under `etl run`'s schedule (`start` at the window's start): the
/// first window completes, and `/metrics` counts its pages, items and retries per status.
#[test]
fn a_scheduled_pull_counts_pages_items_and_retries_in_metrics() {
    let env = Env::new();
    let days = Days::new();
    let key = secret("sk-test");
    let items = api::generate(
        2002,
        1..41,
        &[
            (days.at(0), days.at(1), 10),
            (days.at(1), days.at(3), 10 * PAGE),
        ],
    );
    let api = Api::start(&key, items.clone());
    api.faults(|f| {
        f.fail_requests.insert(1);
        f.fail_pages.insert(4, 1);
        f.rate_limited_pages.insert(6, 1);
        f.slow_pages.insert(8, 1);
        f.slow_delay = Duration::from_secs(3);
    });
    migrate(&env);
    let mut source = Source::of(&api);
    source.timeout_ms = 500;
    source.start = Some(days.at(1));
    source.write(&env);
    let addr = free_addr();
    let mut vars = key_vars(&key);
    vars.push(("ETL_HTTP_ADDR", addr.clone()));

    let mut etl = env.spawn_etl("run", &["run"], &vars);
    assert!(
        etl.wait_for_log("pull complete", PATIENCE),
        "no pull completed: {}",
        etl.log_tail(40)
    );
    let scrape = || {
        try_get(&addr, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    };
    let crm = [("source", "crm")];
    let retries = |body: &str, status: &str| {
        metric(
            body,
            "etl_http_retries_total",
            &[("source", "crm"), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    let pages_received = 10.0;
    let ready = wait_until(Duration::from_secs(10), || {
        let body = scrape();
        retries(&body, "502") >= 2.0
            && metric(&body, "etl_http_pages_total", &crm).unwrap_or(0.0) >= pages_received
    });
    let body = scrape();
    assert!(
        ready,
        "metrics never caught up:\n{body}\n{}",
        etl.log_tail(40)
    );
    let requests = api.requests();
    assert!(
        retries(&body, "502") >= answered(&requests, 502) as f64,
        "502 retries counted: {body}"
    );
    assert!(retries(&body, "429") >= 1.0, "429 retries counted: {body}");
    assert!(retries(&body, "timeout") >= 1.0, "timeouts counted: {body}");
    let window = in_windows(&items, &[(days.at(1), days.at(6))]);
    let distinct = api::expected_events(&window).as_array().map_or(0, Vec::len) as f64;
    let items_total = metric(&body, "etl_http_items_total", &crm).expect("etl_http_items_total");
    assert!(
        items_total >= distinct && items_total <= served_items(&api.requests()).len() as f64,
        "etl_http_items_total {items_total}, {distinct} distinct items in the window: {body}"
    );
    let since = metric(&body, "etl_http_seconds_since_success", &crm)
        .expect("etl_http_seconds_since_success");
    assert!((0.0..60.0).contains(&since), "{since}");
    assert_eq!(
        etl.lines_at("ERROR"),
        Vec::<Value>::new(),
        "{}",
        etl.log_tail(40)
    );

    etl.signal(libc::SIGTERM);
    assert_exit(&mut etl, 0);
    assert_warehouse(&env, &window);
}

/// `etl pull` killed (SIGKILL) in the middle of a 20-page window, then run again with the same
/// window: it resumes from its stored position (at most the page in flight is asked again,
/// never the first page), and the warehouse has no gap.
#[test]
fn a_pull_killed_mid_window_resumes_from_its_stored_position_without_a_gap() {
    let env = Env::new();
    let days = Days::new();
    let key = secret("sk-test");
    let (from, to) = (days.at(1), days.at(3));
    let items = api::generate(2003, 1..61, &[(from, to, 20 * PAGE)]);
    let api = Api::start(&key, items);
    api.faults(|f| f.page_delay = Duration::from_millis(300));
    migrate(&env);
    Source::of(&api).write(&env);
    let pages_asked = |requests: &[Request]| requests.iter().filter(|r| r.page.is_some()).count();

    // The first pull SIGKILLs itself right after storing its position for the 6th page (see
    // `etl/src/faults.rs`): mid-window whatever the machine's speed.
    let step = "http.page.saved:kill:6";
    let armed = [key_vars(&key), vec![("FAULT_POINTS", step.to_owned())]].concat();
    let mut first = pull(&env, "first", &days.date(1), &days.date(3), &armed);
    assert!(
        wait_until(PATIENCE, || pages_asked(&api.requests()) >= 6),
        "the pull did not get to its sixth page: {}",
        first.log_tail(40)
    );
    first.dies_at(step, PATIENCE);
    let mark = api.requests().len();
    assert!(
        lines_with(&first, "pull complete").is_empty(),
        "killed too late: the pull had completed"
    );
    let highest = api.requests()[..mark]
        .iter()
        .filter_map(|r| r.page)
        .max()
        .expect("pages asked");
    assert!(highest < 19, "killed too late: page {highest} was asked");

    let mut second = pull(
        &env,
        "second",
        &days.date(1),
        &days.date(3),
        &key_vars(&key),
    );
    assert_exit(&mut second, 0);
    let again: Vec<Request> = api.requests()[mark..].to_vec();
    let first_asked = again
        .first()
        .and_then(|r| r.page)
        .expect("the second run asked");
    assert_ne!(first_asked, 0, "the second run started the window over");
    assert!(
        first_asked == highest || first_asked == highest + 1,
        "the second run started at page {first_asked}; the first had asked up to {highest}"
    );
    let lowest = again.iter().filter_map(|r| r.page).min().expect("pages");
    assert!(
        lowest >= highest,
        "the second run asked page {lowest}, below the first run's page in flight ({highest})"
    );
    assert_warehouse(&env, &api.window(from, to));
    assert_eq!(
        env.scalar("SELECT count(*) FROM http_positions WHERE source = 'crm' AND NOT done"),
        0
    );
    assert!(env.scalar("SELECT count(*) FROM http_positions WHERE source = 'crm' AND done") >= 1);
}

/// Two `etl run` replicas with the same source on one warehouse: each scheduled window is
/// pulled by one of them (the advisory lock), never by both: no page of any window is asked
/// twice, and the windows follow each other without overlap or gap.
#[test]
fn two_replicas_pull_each_scheduled_window_once() {
    let env = Env::new();
    let days = Days::new();
    let key = secret("sk-test");
    let items = api::generate(2007, 1..41, &[(days.at(1), days.at(3), 10 * PAGE)]);
    let api = Api::start(&key, items.clone());
    api.faults(|f| f.page_delay = Duration::from_millis(100));
    migrate(&env);
    let mut source = Source::of(&api);
    source.interval_secs = 1;
    source.start = Some(days.at(1));
    source.write(&env);

    let mut a = env.spawn_etl("replica-a", &["run"], &key_vars(&key));
    let mut b = env.spawn_etl("replica-b", &["run"], &key_vars(&key));
    let completed =
        || lines_with(&a, "pull complete").len() + lines_with(&b, "pull complete").len();
    assert!(
        wait_until(PATIENCE, || completed() >= 3),
        "fewer than three windows completed:\n{}\n{}",
        a.log_tail(20),
        b.log_tail(20)
    );
    a.signal(libc::SIGTERM);
    b.signal(libc::SIGTERM);
    assert_exit(&mut a, 0);
    assert_exit(&mut b, 0);

    let requests = api.requests();
    let mut asked: BTreeMap<(String, String, usize), usize> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.served()) {
        let window = (
            format!("{:?}", r.from),
            format!("{:?}", r.to),
            r.page.unwrap_or(0),
        );
        *asked.entry(window).or_default() += 1;
    }
    let twice: Vec<_> = asked.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "pages asked twice (two replicas pulled one window): {twice:?}"
    );
    let mut windows: Vec<(NaiveDateTime, NaiveDateTime)> = requests
        .iter()
        .filter_map(|r| Some((r.from?, r.to?)))
        .collect();
    windows.sort();
    windows.dedup();
    assert!(windows.len() >= 3, "{windows:?}");
    assert_eq!(
        windows[0].0,
        days.at(1),
        "the first window starts at `start`"
    );
    for pair in windows.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].0,
            "windows overlap or leave a gap: {windows:?}"
        );
    }
    assert!(
        !lines_with(&a, "pull complete").is_empty() || !lines_with(&b, "pull complete").is_empty()
    );
    assert_warehouse(&env, &in_windows(&items, &[(days.at(1), days.at(6))]));
}

/// A page holding an item that breaks the schema (`"active": "yes"`) and one the database
/// refuses (a DBA's CHECK constraint): both are dead-lettered in `rejected_events` with one WARN
/// line each, the rest of their page loads, the pull ends 0 and its position is complete.
#[test]
fn an_invalid_item_and_a_refused_item_are_dead_lettered_and_the_rest_of_their_page_loads() {
    let env = Env::new();
    let days = Days::new();
    let key = secret("sk-test");
    let (from, to) = (days.at(1), days.at(2));
    let items = api::generate(2004, 1..21, &[(from, to, 3 * PAGE)]);
    let api = Api::start(&key, items);
    // Both on page 1 (items 10..20 of the window's order).
    let window = api.window(from, to);
    let invalid = window[12].clone();
    let broken = invalid
        .raw
        .replace("\"active\":true", "\"active\":\"yes\"")
        .replace("\"active\":false", "\"active\":\"yes\"");
    api.replace(invalid.id, invalid.updated_at, &broken);
    let refused = Item {
        loads: false,
        ..api::card(2_000_000_000, window[13].updated_at, true, days.at(0))
    };
    api.add(std::slice::from_ref(&refused));
    let window = api.window(from, to);
    let place = |raw: &str| window.iter().position(|i| i.raw == raw).expect("served");
    assert_eq!(place(&broken) / PAGE, 1);
    assert_eq!(place(&refused.raw) / PAGE, 1);

    migrate(&env);
    testkit::pg::psql(
        &env.db.url,
        "ALTER TABLE cards ADD CONSTRAINT small_ids CHECK (id < 1000000000)",
    )
    .expect("constraint added");
    Source::of(&api).write(&env);

    let mut etl = pull(&env, "pull", &days.date(1), &days.date(2), &key_vars(&key));
    assert_exit(&mut etl, 0);

    assert_warehouse(&env, &window);
    assert_eq!(
        env.scalar("SELECT count(*) FROM cards WHERE id = 2000000000"),
        0
    );

    let rows = env.query_json(
        "SELECT id, source, subject, origin, code, reason->>'reason' AS reason,
                encode(bytes, 'escape') AS bytes FROM rejected_events",
    );
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let mut codes: Vec<String> = rows.iter().map(|r| text(&r["code"])).collect();
    codes.sort();
    assert_eq!(codes, ["db_refused", "schema"], "{rows:#?}");
    let lake_files = lake(&env);
    for row in rows {
        assert_eq!(row["source"], "http", "{row}");
        assert_eq!(row["subject"], "crm", "{row}");
        assert!(!text(&row["reason"]).is_empty(), "no reason: {row}");
        // origin = <raw file>:<line>, the line (1-based) holding the item as received.
        let origin = text(&row["origin"]);
        let (file, line) = origin.rsplit_once(':').expect("<raw file>:<line>");
        let line: usize = line.parse().expect("a line number");
        let name = Path::new(file).file_name().expect("a file name");
        let landed = lake_files
            .iter()
            .find(|f| f.file_name() == Some(name))
            .unwrap_or_else(|| panic!("{origin} names no raw page: {lake_files:#?}"));
        let content = std::fs::read_to_string(landed).expect("readable");
        let held = content
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or_default();
        let expected = if text(&row["code"]) == "schema" {
            &broken
        } else {
            assert!(text(&row["reason"]).contains("small_ids"), "{row}");
            assert!(text(&row["bytes"]).contains("2000000000"), "{row}");
            &refused.raw
        };
        assert_eq!(held, expected.as_str(), "{origin} is not the rejected item");
        let warns: Vec<Value> = etl
            .lines_at("WARN")
            .into_iter()
            .filter(|l| l["message"] == "rejected" && text(&l["file"]) == origin)
            .collect();
        assert_eq!(
            warns.len(),
            1,
            "one WARN rejected line for {origin}: {}",
            etl.log_tail(40)
        );
        assert_eq!(warns[0]["code"], row["code"]);
        assert_eq!(warns[0]["type"], "cards");
        assert!(!text(&warns[0]["reason"]).is_empty());
    }
    assert_eq!(
        lines_with(&etl, "rejected").len(),
        2,
        "{}",
        etl.log_tail(40)
    );
    assert_eq!(lines_with(&etl, "pull complete").len(), 1);
    assert_eq!(
        env.scalar("SELECT count(*) FROM http_positions WHERE source = 'crm' AND done"),
        1
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM http_positions WHERE source = 'crm' AND NOT done"),
        0
    );

    // The same window pulled again (a completed backfill starts over): the same events, and
    // the same two dead letters, neither stored nor reported a second time.
    let mut again = pull(&env, "again", &days.date(1), &days.date(2), &key_vars(&key));
    assert_exit(&mut again, 0);
    assert_eq!(lines_with(&again, "pull complete").len(), 1);
    assert_warehouse(&env, &window);
    assert_eq!(env.scalar("SELECT count(*) FROM rejected_events"), 2);
    assert_eq!(
        lines_with(&again, "rejected").len(),
        0,
        "{}",
        again.log_tail(40)
    );
}

/// A pull killed mid-window, whose stored cursor the API has since expired (400): the next run
/// asks for it once, then pulls the window again from its first page instead of stopping on a
/// "configuration error" for ever; the tables are the oracle.
#[test]
fn an_expired_stored_cursor_restarts_the_window_from_its_first_page() {
    let env = Env::new();
    let days = Days::new();
    let key = secret("sk-test");
    let (from, to) = (days.at(1), days.at(3));
    let items = api::generate(2008, 1..41, &[(from, to, 12 * PAGE)]);
    let api = Api::start(&key, items);
    api.faults(|f| f.page_delay = Duration::from_millis(300));
    migrate(&env);
    Source::of(&api).write(&env);

    // Killed right after storing its position for the 4th of 12 pages (see
    // `etl/src/faults.rs`): a cursor is stored and the window is not done.
    let step = "http.page.saved:kill:4";
    let armed = [key_vars(&key), vec![("FAULT_POINTS", step.to_owned())]].concat();
    let mut first = pull(&env, "first", &days.date(1), &days.date(3), &armed);
    assert!(
        wait_until(PATIENCE, || {
            env.scalar("SELECT count(*) FROM http_positions WHERE next IS NOT NULL") > 0
                && api.requests().len() >= 4
        }),
        "no position stored: {}",
        first.log_tail(40)
    );
    first.dies_at(step, PATIENCE);
    let stored = testkit::pg::psql(
        &env.db.url,
        "SELECT next->>'cursor' FROM http_positions WHERE source = 'crm'",
    )
    .expect("position");
    let stored = stored.trim().to_owned();
    assert!(!stored.is_empty(), "a cursor is stored");
    api.faults(|f| {
        f.page_delay = Duration::ZERO;
        f.expired_once.insert(stored.clone());
    });
    let mark = api.requests().len();

    let mut second = pull(
        &env,
        "second",
        &days.date(1),
        &days.date(3),
        &key_vars(&key),
    );
    assert_exit(&mut second, 0);
    let again: Vec<Request> = api.requests()[mark..].to_vec();
    assert_eq!(again[0].cursor.as_deref(), Some(stored.as_str()));
    assert_eq!(again[0].status, 400);
    assert_eq!(
        again[1].cursor, None,
        "the window starts again at its first page"
    );
    assert_eq!(
        lines_with(
            &second,
            "the API refused the stored position; pulling the window again from its first page"
        )
        .len(),
        1,
        "{}",
        second.log_tail(20)
    );
    assert!(
        second.lines_at("ERROR").is_empty(),
        "{}",
        second.log_tail(20)
    );
    assert_warehouse(&env, &api.window(from, to));
}

/// A three-day backfill, then the schedule starting inside it (its first window overlaps the
/// backfill's last day) after the API learnt of new versions, in the overlap and after it: the
/// warehouse is the oracle of every version served, each version once in the raw zone.
#[test]
fn a_scheduled_window_overlapping_a_backfill_makes_no_duplicate_events() {
    let env = Env::new();
    let days = Days::new();
    let key = secret("sk-test");
    let all = api::generate(
        2005,
        1..51,
        &[
            (days.at(0), days.at(1), 10),
            (days.at(1), days.at(4), 15 * PAGE),
            (days.at(4), days.at(5), 10),
            // Learnt of later: late versions in the overlap, and newer ones.
            (days.at(3), days.at(4), 10),
            (days.at(4), days.at(5), 10),
        ],
    );
    let (initial, late) = all.split_at(all.len() - 20);
    let api = Api::start(&key, initial.to_vec());
    migrate(&env);
    let mut source = Source::of(&api);
    source.start = Some(days.at(3));
    source.write(&env);

    let mut backfill = pull(
        &env,
        "backfill",
        &days.date(1),
        &days.date(4),
        &key_vars(&key),
    );
    assert_exit(&mut backfill, 0);
    assert_warehouse(&env, &in_windows(initial, &[(days.at(1), days.at(4))]));

    api.add(late);
    let mark = api.requests().len();
    let mut run = env.spawn_etl("run", &["run"], &key_vars(&key));
    assert!(
        run.wait_for_log("pull complete", PATIENCE),
        "the scheduled pull did not complete: {}",
        run.log_tail(40)
    );
    run.signal(libc::SIGTERM);
    assert_exit(&mut run, 0);

    let scheduled = api.requests()[mark..].to_vec();
    let first = scheduled.first().expect("the schedule asked the API");
    assert_eq!(
        first.from,
        Some(days.at(3)),
        "the first window starts at `start`"
    );
    assert!(
        first.to.is_some_and(|to| to > days.at(5)),
        "the first window runs to now: {first:?}"
    );
    let expected = in_windows(&all, &[(days.at(1), days.at(4)), (days.at(3), days.at(6))]);
    assert_warehouse(&env, &expected);
    assert_eq!(
        env.scalar(
            "SELECT count(*) FROM (SELECT entity_id, payload->>'updated_at' FROM events \
             WHERE type = 'cards' GROUP BY 1, 2 HAVING count(*) > 1) d"
        ),
        0,
        "a version has two events"
    );
    assert_eq!(
        env.scalar("SELECT count(*) - count(DISTINCT event_id) FROM events"),
        0
    );
}

/// The API key (from `api_key_env`) is in no log line (even at debug level), no table, no
/// `/metrics` or `/status` output, no raw page's name or content; a wrong key stops the pull
/// at the first 401 with exit 1 and one ERROR line that names the 401 and neither key.
#[test]
fn the_api_key_is_never_logged_stored_or_exposed_and_a_wrong_key_stops_the_pull() {
    let env = Env::new();
    let days = Days::new();
    let key = secret("sk-test");
    let wrong = secret("sk-wrong");
    let (from, to) = (days.at(1), days.at(2));
    let items = api::generate(2006, 1..21, &[(from, to, 2 * PAGE)]);
    let api = Api::start(&key, items);
    // One invalid item, so that rejected_events holds a row to search.
    let victim = api.window(from, to)[5].clone();
    let broken = victim.raw.replace("\"id\":", "\"id\":\"x\",\"was\":");
    api.replace(victim.id, victim.updated_at, &broken);
    migrate(&env);
    let mut source = Source::of(&api);
    source.start = Some(from);
    source.write(&env);
    let addr = free_addr();
    let mut vars = key_vars(&key);
    vars.push(("ETL_HTTP_ADDR", addr.clone()));
    vars.push(("RUST_LOG", "debug".into()));

    let mut run = env.spawn_etl("run", &["run"], &vars);
    assert!(
        run.wait_for_log("pull complete", PATIENCE),
        "{}",
        run.log_tail(40)
    );
    assert!(answered(&api.requests(), 200) >= 2, "the key was sent");
    let counted = wait_until(Duration::from_secs(10), || {
        try_get(&addr, "/metrics").is_some_and(|(_, body)| body.contains("etl_http_pages_total"))
    });
    let mut exposed = Vec::new();
    for path in ["/metrics", "/status", "/readyz", "/healthz"] {
        let (_, body) = try_get(&addr, path).unwrap_or_default();
        exposed.push((path.to_owned(), body));
    }
    assert!(counted, "/metrics: {}", exposed[0].1);
    run.signal(libc::SIGTERM);
    assert_exit(&mut run, 0);

    let mark = api.requests().len();
    let mut refused = pull(
        &env,
        "wrong-key",
        &days.date(1),
        &days.date(2),
        &key_vars(&wrong),
    );
    assert_exit(&mut refused, 1);
    let stopped = lines_with(&refused, "pull stopped");
    assert_eq!(stopped.len(), 1, "{}", refused.log_tail(40));
    assert_eq!(stopped[0]["level"], "ERROR");
    assert_eq!(stopped[0]["source"], "crm");
    assert!(stopped[0].to_string().contains("401"), "{}", stopped[0]);
    let unauthorized = api.requests()[mark..]
        .iter()
        .filter(|r| r.status == 401)
        .count();
    assert_eq!(
        unauthorized,
        1,
        "a 401 is not retried: {:#?}",
        api.requests()
    );

    let rejected = env.scalar("SELECT count(*) FROM rejected_events");
    assert!(rejected >= 1, "the invalid item was dead-lettered");
    let tables = testkit::pg::psql(
        &env.db.url,
        "SELECT (SELECT coalesce(string_agg(r::text || ' ' || encode(r.bytes, 'escape'), E'\n'), '')
                 FROM rejected_events r)
             || (SELECT coalesce(string_agg(p::text, E'\n'), '') FROM http_positions p)
             || (SELECT coalesce(string_agg(e::text, E'\n'), '') FROM events e)",
    )
    .expect("query runs");
    for secret in [&key, &wrong] {
        assert!(!tables.contains(secret.as_str()), "a table holds the key");
        for (path, body) in &exposed {
            assert!(!body.contains(secret.as_str()), "{path} shows the key");
        }
        for file in files_under(env.dir.path()) {
            let name = file.display().to_string();
            assert!(
                !name.contains(secret.as_str()),
                "a file is named with the key: {name}"
            );
            let bytes = std::fs::read(&file).expect("readable");
            let content = String::from_utf8_lossy(&bytes);
            assert!(!content.contains(secret.as_str()), "{name} holds the key");
        }
    }
    assert!(!lake(&env).is_empty(), "raw pages were searched");
}

/// `etl pull` with a source name that is not configured: exit 2, with a message naming it.
#[test]
fn pulling_an_unknown_source_exits_2() {
    let env = Env::new();
    let days = Days::new();
    let api = Api::start("unused", Vec::new());
    migrate(&env);
    Source::of(&api).write(&env);
    let out = env.run_etl(&[
        "pull",
        "nope",
        "--from",
        &days.date(1),
        "--to",
        &days.date(2),
    ]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("nope"),
        "the message names the unknown source: {said}"
    );
    assert!(api.requests().is_empty(), "the API was asked");
}

#[test]
fn a_window_pulled_again_after_its_raw_rows_were_retired_adds_no_raw_row() {
    let env = Env::new();
    let days = Days::new();
    let key = secret("retire");
    let items = api::generate(23, 1..40, &[(days.at(0), days.at(2), 60)]);
    let api = Api::start(&key, items.clone());
    Source::of(&api).write(&env);
    migrate(&env);
    let mut first = pull(&env, "first", &days.date(0), &days.date(2), &key_vars(&key));
    assert_exit(&mut first, 0);
    assert_warehouse(&env, &items);
    let raw = env.scalar("SELECT count(*) FROM events");
    assert!(raw > 0);

    // The raw rows age past a 30-day retention; a lake pass moves them to the lake.
    env.scalar("WITH u AS (UPDATE events SET ingested_at = ingested_at - interval '40 days' RETURNING 1) SELECT count(*) FROM u");
    let lake = env.dir.path().join("parquet");
    let lake_dir = lake.to_str().expect("utf-8").to_owned();
    let mut vars = key_vars(&key);
    vars.extend([
        ("ETL_LAKE_DIR", lake_dir.clone()),
        ("ETL_LAKE_EXPORT_INTERVAL_SECS", "1".to_owned()),
        ("ETL_RAW_RETENTION_DAYS", "30".to_owned()),
    ]);
    let mut run = env.spawn_etl("retire", &["run", "--source", "inbox"], &vars);
    assert!(
        wait_until(PATIENCE, || env.scalar("SELECT count(*) FROM events") == 0),
        "the raw rows were not retired: {}",
        run.log_tail(20)
    );
    run.signal(libc::SIGTERM);
    assert!(run.exit_within(PATIENCE).success());
    assert_eq!(env.scalar("SELECT count(*) FROM retired_events"), raw);

    // The same items pulled again (another run over the window): served, and known.
    let served_before = served_items(&api.requests()).len();
    let to = rfc3339(days.at(2) + chrono::Duration::seconds(1));
    let mut again = pull(&env, "again", &days.date(0), &to, &key_vars(&key));
    assert_exit(&mut again, 0);
    assert!(served_items(&api.requests()).len() >= served_before + items.len());
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        0,
        "a retired event came back into the raw zone"
    );
    assert_eq!(warehouse_cards(&env), api::oracle(&items));
    // And the lake gets no second copy.
    let out = env.run_etl(&["export", "--format", "parquet", "--to", &lake_dir]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 rows  in 0 new file(s)"), "{stdout}");
}
