//! Shared test fixtures: a data folder, a fresh database, the pipeline under test, and an oracle
//! that computes the expected warehouse from the event files themselves.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use etl::config::Config;
use etl::daemon::{self, Mode, Summary};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A daemon's HTTP endpoints are polled with the kit's client, on a port from the kit.
pub use testkit::http::try_get;
pub use testkit::ports::{free_addr, free_port};

pub const SAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/reference-events"
);

/// A shipped event type, by its one name (its folders, its table, its metric label).
pub type Kind = &'static str;
/// The shipped event types.
pub const TYPES: [Kind; 2] = ["users", "cards"];

/// The shipped type whose folder is `folder`.
pub fn type_of_folder(folder: &str) -> Option<Kind> {
    TYPES.into_iter().find(|t| *t == folder)
}

pub struct Env {
    pub db: testkit::pg::TestDb,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

impl Env {
    pub fn new() -> Env {
        let db = testkit::pg::fresh_db();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            schemas_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas")),
            types_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../types")),
            http_addr: String::new(),
            ..Config::default()
        };
        config.database.url = db.url.clone();
        config.database.migrations_dir =
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../db/migrations"));
        config.inbox.settle_ms = 300;
        config.inbox.rescan_interval_secs = 1;
        let catalog = etl::catalog::Catalog::load(&config).expect("the shipped types");
        etl::source::inbox::files::ensure_layout(&config, &catalog).expect("layout");
        Env { db, dir, config }
    }

    pub fn inbox(&self, kind: Kind) -> PathBuf {
        self.config.inbox(kind)
    }

    /// Runs the real pipeline in drain mode, in this process.
    pub async fn drain(&self) -> Summary {
        self.drain_with(self.config.clone()).await
    }

    pub async fn drain_with(&self, config: Config) -> Summary {
        daemon::run(config, Mode::Drain, CancellationToken::new())
            .await
            .expect("drain runs")
    }

    /// Starts the real pipeline in follow mode, in this process; stop it with
    /// [`daemon::Handle::shutdown`].
    pub fn follow(&self) -> daemon::Handle {
        daemon::spawn(self.config.clone(), Mode::Follow)
    }

    /// The `etl` binary with this environment's settings, as an operator would run it.
    pub fn etl(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl"));
        cmd.env("ETL_DATABASE_URL", &self.config.database.url)
            .env("ETL_DATA_DIR", &self.config.data_dir)
            .env("ETL_SCHEMAS_DIR", &self.config.schemas_dir)
            .env("ETL_TYPES_DIR", &self.config.types_dir)
            .env("ETL_MIGRATIONS_DIR", &self.config.database.migrations_dir)
            .env("ETL_SETTLE_MS", self.config.inbox.settle_ms.to_string())
            .env("ETL_HTTP_ADDR", "")
            .env("RUST_LOG", "info")
            .current_dir(self.dir.path());
        cmd
    }

    pub fn run_etl(&self, args: &[&str]) -> Output {
        self.etl().args(args).output().expect("etl binary runs")
    }

    /// `etl run --drain` with the schemas of `schemas` instead of the project's: a fixed (say,
    /// relaxed) schema, as an operator installs one before replaying what it refused.
    pub fn drain_with_schemas(&self, schemas: &Path) -> Output {
        self.etl()
            .env("ETL_SCHEMAS_DIR", schemas)
            .args(["run", "--drain"])
            .output()
            .expect("etl binary runs")
    }

    /// Every user and card row, as JSON, ordered by id (timestamps as the producers write them).
    pub fn dump(&self) -> (Value, Value) {
        dump_at(&self.db.url)
    }

    pub fn query_json(&self, select: &str) -> Value {
        let sql = format!("SELECT coalesce(json_agg(t ORDER BY id), '[]') FROM ({select}) t");
        let out = testkit::pg::psql(&self.db.url, &sql).expect("query runs");
        serde_json::from_str(&out).expect("json_agg output")
    }

    pub fn scalar(&self, sql: &str) -> i64 {
        self.scalar_at(&self.db.url, sql)
    }

    /// [`Env::scalar`] on the database at `url`.
    pub fn scalar_at(&self, url: &str, sql: &str) -> i64 {
        let out = testkit::pg::psql(url, sql).expect("query runs");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {out:?}"))
    }
}

/// `*.json` event files (not reason files) directly in `dir` and, for a `done/<type>/` or
/// `failed/<type>/` folder, in its day folders (`<YYYY-MM-DD>/`).
pub fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for folder in std::iter::once(dir.to_path_buf()).chain(day_folders(dir)) {
        files.extend(
            std::fs::read_dir(&folder)
                .expect("readable dir")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.ends_with(".json")
                        && !name.ends_with(".error.json")
                        && !name.starts_with('.')
                        && p.is_file()
                }),
        );
    }
    files.sort();
    files
}

/// The day folders (`<YYYY-MM-DD>/`) of a `done/` or `failed/` type folder, oldest first.
pub fn day_folders(dir: &Path) -> Vec<PathBuf> {
    let mut days: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| chrono::NaiveDate::parse_from_str(n, "%Y-%m-%d").is_ok())
        })
        .collect();
    days.sort();
    days
}

/// Where the file (or reason file) called `name` is in a `done/<type>/` or `failed/<type>/`
/// folder: in one of its day folders, or flat (an older version's layout). If it is nowhere,
/// the path it would have in today's day folder (so `.exists()` says false).
pub fn finished(dir: &Path, name: impl AsRef<std::ffi::OsStr>) -> PathBuf {
    let name = name.as_ref();
    day_folders(dir)
        .into_iter()
        .rev()
        .chain([dir.to_path_buf()])
        .map(|folder| folder.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| today(dir).join(name))
}

/// Today's (UTC) day folder of a `done/` or `failed/` type folder.
pub fn today(dir: &Path) -> PathBuf {
    dir.join(
        chrono::Utc::now()
            .date_naive()
            .format("%Y-%m-%d")
            .to_string(),
    )
}

pub fn count(dir: &Path) -> usize {
    event_files(dir).len()
}

/// The expected tables, computed independently of the daemon from the event files: for each
/// entity, the version with the greatest (updated_at, event_at, event_id) for cards and
/// (event_at, event_id) for users, comparing the producers' text forms (which sort in time order).
///
/// Cards without `user_id` are the reference producer's 'bad' events: the default schema rejects
/// them, so the oracle leaves them out.
pub fn oracle(files: &[PathBuf]) -> (Value, Value) {
    oracle_of(files, true)
}

/// The oracle of the relaxed rule an operator can choose: cards without `user_id` load with a
/// NULL owner.
pub fn oracle_owner_optional(files: &[PathBuf]) -> (Value, Value) {
    oracle_of(files, false)
}

/// Whether the default card schema rejects this document for lacking its owner.
pub fn is_ownerless_card(doc: &Value) -> bool {
    doc["metadata"]["type"] == "card" && doc["payload"].get("user_id").is_none()
}

/// How many of `files` are cards without an owner (rejected by the default schema).
pub fn ownerless_cards(files: &[PathBuf]) -> usize {
    files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("readable");
            serde_json::from_str::<Value>(&text).is_ok_and(|doc| is_ownerless_card(&doc))
        })
        .count()
}

fn oracle_of(files: &[PathBuf], owner_required: bool) -> (Value, Value) {
    let mut users: BTreeMap<i64, (Vec<String>, Value)> = BTreeMap::new();
    let mut cards: BTreeMap<i64, (Vec<String>, Value)> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("readable");
        let Ok(doc) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let meta = &doc["metadata"];
        let p = &doc["payload"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_lowercase();
        match meta["type"].as_str() {
            Some("user") => {
                let key = vec![s(&meta["event_at"]), s(&meta["event_id"])];
                let row = serde_json::json!({
                    "id": p["id"], "name": p["name"], "address": p["address"], "job": p["job"],
                    "score": p["score"], "event_at": meta["event_at"], "event_id": s(&meta["event_id"]),
                });
                keep_max(&mut users, p["id"].as_i64().expect("id"), key, row);
            }
            Some("card") if owner_required && is_ownerless_card(&doc) => {}
            Some("card") => {
                let key = vec![
                    s(&p["updated_at"]),
                    s(&meta["event_at"]),
                    s(&meta["event_id"]),
                ];
                let row = serde_json::json!({
                    "id": p["id"], "user_id": p.get("user_id").cloned().unwrap_or(Value::Null),
                    "created_by_name": p["created_by_name"], "created_at": p["created_at"],
                    "updated_at": p["updated_at"], "active": p["active"], "event_id": s(&meta["event_id"]),
                });
                keep_max(&mut cards, p["id"].as_i64().expect("id"), key, row);
            }
            _ => {}
        }
    }
    let rows = |m: BTreeMap<i64, (Vec<String>, Value)>| {
        Value::Array(m.into_values().map(|(_, v)| v).collect())
    };
    (rows(users), rows(cards))
}

fn keep_max(map: &mut BTreeMap<i64, (Vec<String>, Value)>, id: i64, key: Vec<String>, row: Value) {
    match map.get(&id) {
        Some((best, _)) if *best >= key => {}
        _ => {
            map.insert(id, (key, row));
        }
    }
}

/// Copies the reference producers' sample files (including the cards inbox's `__id_counter`).
pub fn copy_samples(env: &Env) {
    for kind in TYPES {
        let from = Path::new(SAMPLES).join(kind);
        for entry in std::fs::read_dir(&from).expect("samples exist") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name");
            std::fs::copy(&path, env.inbox(kind).join(name)).expect("copy sample");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reliability fixtures: the daemon as a separate process (to kill or signal it), polling with
// deadlines, and the bookkeeping invariants every reliability test checks.
// ---------------------------------------------------------------------------------------------

/// Feeds `files` to the daemon in `chunks` of the given size, in the given order, draining after
/// each chunk, so the arrival order is really the one asked for. A file's kind is the name of
/// the folder it comes from (`users` or anything else for cards).
pub async fn feed_in_order(env: &Env, files: &[PathBuf], chunk: usize, config: Config) {
    for part in files.chunks(chunk.max(1)) {
        for file in part {
            let kind = if file
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "users")
            {
                "users"
            } else {
                "cards"
            };
            let name = file.file_name().expect("name");
            std::fs::copy(file, env.inbox(kind).join(name)).expect("copy");
        }
        env.drain_with(config.clone()).await;
    }
}

/// Every event file of both inboxes (or both `done/`, `failed/` folders) under `events/<stage>/`.
pub fn files_in(env: &Env, stage: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in TYPES {
        files.extend(event_files(&env.config.events_dir().join(stage).join(kind)));
    }
    files
}

/// The event id a producer-written file is named after (`<event_id>.json`).
pub fn event_id_of(file: &Path) -> String {
    file.file_stem()
        .and_then(|s| s.to_str())
        .expect("file named <event_id>.json")
        .to_lowercase()
}

/// Every row of both entity tables of the database at `url`, as [`Env::dump`] returns them.
pub fn dump_at(url: &str) -> (Value, Value) {
    let query = |select: &str| -> Value {
        let sql = format!("SELECT coalesce(json_agg(t ORDER BY id), '[]') FROM ({select}) t");
        let out = testkit::pg::psql(url, &sql).expect("query runs");
        serde_json::from_str(&out).expect("json_agg output")
    };
    let users = query(
        "SELECT id, name, address, job, score, to_char(event_at, 'YYYY-MM-DD HH24:MI:SS') AS event_at,
                event_id::text AS event_id FROM users",
    );
    let cards = query(
        "SELECT id, user_id, created_by_name, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS') AS created_at,
                to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS') AS updated_at, active,
                event_id::text AS event_id FROM cards",
    );
    (users, cards)
}

/// The ids in the raw zone (`events`) of the database at `url`.
pub fn committed_event_ids(url: &str) -> HashSet<String> {
    testkit::pg::psql(url, "SELECT event_id::text FROM events")
        .expect("query runs")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Leftovers of interrupted writes anywhere under `events/`: dotfiles and `*.tmp` files.
pub fn stray_files(env: &Env) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable dir").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path, found);
            } else if name.starts_with('.') || name.ends_with(".tmp") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&env.config.events_dir(), &mut found);
    found
}

/// Polls `done` every 50 ms until it holds or `limit` has passed; returns whether it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An `etl` process started by a test. Its stdout and stderr (JSON log lines) go to a file the
/// test can read while it runs. Dropping it kills the process if it is still running, so a
/// failing test leaves nothing behind.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Env {
    /// Starts `etl <args>` with JSON logs and this environment's settings plus `vars`; `name`
    /// names its log file (kept in the test's temp dir).
    pub fn spawn_etl(&self, name: &str, args: &[&str], vars: &[(&str, String)]) -> Daemon {
        let log = self.dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file handle");
        let mut cmd = self.etl();
        cmd.args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (key, value) in vars {
            cmd.env(key, value);
        }
        let child = cmd.spawn().expect("etl binary starts");
        Daemon { child, log }
    }
}

impl Daemon {
    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits in pid_t");
        // SAFETY: a plain syscall on our own child, which has not been reaped yet.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            sent,
            0,
            "cannot signal etl: {}",
            std::io::Error::last_os_error()
        );
    }

    /// SIGKILL, then reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(limit, || {
            status = self.child.try_wait().expect("wait on etl");
            status.is_some()
        });
        status
    }

    /// Waits up to `limit` for the exit, and fails the test if it does not come.
    pub fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        match self.wait_timeout(limit) {
            Some(status) => status,
            None => {
                self.kill();
                panic!(
                    "etl did not exit within {limit:?}; its log:\n{}",
                    self.log_tail(40)
                );
            }
        }
    }

    /// Waits for a daemon started with `FAULT_POINTS=<step>` (`point:kill:N`, see
    /// `etl/src/faults.rs`) to die at that point: by SIGKILL, with the fault module's line
    /// naming the point in its log (any other death, or none, fails the test).
    pub fn dies_at(&mut self, step: &str, limit: Duration) {
        use std::os::unix::process::ExitStatusExt;
        let status = self.exit_within(limit);
        let point = step.split_once(':').map_or(step, |(point, _)| point);
        assert!(
            status.signal() == Some(libc::SIGKILL)
                && self.log().contains(&format!("FAULT_POINTS: {point} hit")),
            "the daemon did not die at {step} ({status}): {}",
            self.log_tail(20)
        );
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait on etl").is_none()
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Log lines parsed as JSON (lines that are not JSON, e.g. a panic message, are skipped).
    pub fn log_lines(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Log lines of `level` (`"ERROR"`, `"WARN"`, …).
    pub fn lines_at(&self, level: &str) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|line| line["level"] == level)
            .collect()
    }

    /// The WARN line announcing that the file called `name` was rejected, if logged.
    pub fn rejection_line(&self, name: &str) -> Option<Value> {
        self.lines_at("WARN").into_iter().find(|line| {
            let text = line.to_string();
            text.contains("rejected") && text.contains(name)
        })
    }

    /// Waits up to `limit` for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.log().contains(needle))
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits up to `limit` until `n` log lines contain `needle`: a pass or a retry that logs
    /// each time it runs has run that often. This, not a sleep, is how a test knows that
    /// something that must not happen has had its chances.
    pub fn wait_for_log_count(&self, needle: &str, n: usize, limit: Duration) -> bool {
        wait_until(limit, || self.log_count(needle) >= n)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Producer fixtures: the real `users` and `cards` binaries writing into a test's inbox.
// ---------------------------------------------------------------------------------------------

/// A binary of the `services` crate (`users`, `cards`, `loadgen`). Cargo puts it next to the `etl`
/// binary when it builds the whole workspace (`cargo test --workspace`), but `cargo test -p etl`
/// alone does not build it, so a missing one is a clear panic rather than a spawn error.
pub fn producer_binary(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_etl"))
        .parent()
        .expect("the etl binary is in a directory");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the producers first (`cargo build -p services`, or run \
         `cargo test --workspace`, which builds every binary)",
        path.display()
    );
    path
}

impl Env {
    /// Starts the producer `name` (`users` or `cards`) writing into this environment's inbox, from
    /// the temp dir, with `args` added. Its log (plain text, no colours) goes to `<name>.log` there.
    /// The returned [`Daemon`] signals, waits for and (when dropped) kills it like an etl process.
    pub fn spawn_producer(&self, name: &str, args: &[&str]) -> Daemon {
        let inbox = self.config.events_dir().join("inbox");
        self.spawn_producer_into(name, &inbox, name, args)
    }

    /// [`Env::spawn_producer`] writing into `inbox` (another host's folder), logging to
    /// `<log_name>.log` in the temp dir.
    pub fn spawn_producer_into(
        &self,
        name: &str,
        inbox: &Path,
        log_name: &str,
        args: &[&str],
    ) -> Daemon {
        let log = self.dir.path().join(format!("{log_name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file handle");
        let child = Command::new(producer_binary(name))
            .arg("--events-dir")
            .arg(inbox)
            .args(args)
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon { child, log }
    }
}

/// The sum of every sample of metric `name` (all label sets) in the `/metrics` of the daemon on
/// `addr`; 0 when absent or unreachable.
pub fn metric_total(addr: &str, name: &str) -> f64 {
    try_get(addr, "/metrics")
        .map(|(_, body)| {
            body.lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(0.0)
}

/// Waits up to `limit` until the daemon on `addr` has retried batches after a database error
/// `n` more times than when called: each retry was a chance to reject an event for trouble
/// that is not the event's.
pub fn wait_for_db_retries(addr: &str, n: u32, limit: Duration) -> bool {
    let before = metric_total(addr, "etl_db_retries_total");
    wait_until(limit, || {
        metric_total(addr, "etl_db_retries_total") >= before + f64::from(n)
    })
}

/// Generates a producer backlog into `events_dir` (`users/`, `cards/`) without the producer's
/// ownerless cards, for tests about faults rather than validation (their rejection is tested in
/// `core`, `ops` and `producers`). Returns every event file it holds, users first.
pub fn valid_backlog(events_dir: &Path, users: usize, cards: usize, seed: u64) -> Vec<PathBuf> {
    services::generate_backlog(events_dir, users, cards, seed).expect("backlog");
    let mut files = Vec::new();
    for kind in TYPES {
        for file in event_files(&events_dir.join(kind)) {
            let text = std::fs::read_to_string(&file).expect("readable");
            let doc: Value = serde_json::from_str(&text).expect("generated files are JSON");
            if is_ownerless_card(&doc) {
                std::fs::remove_file(&file).expect("remove");
            } else {
                files.push(file);
            }
        }
    }
    files
}

/// Makes sure `python3` can import each `(module, pip package)` pair, installing the missing
/// packages from PyPI once (under a file lock: test processes run in parallel). Independent
/// readers and validators (pyarrow, duckdb, schemathesis…) are Python programs; a fresh machine
/// has none of them, so the tests fetch what they use, as `.ci/run` does.
pub fn python_with(packages: &[(&str, &str)]) {
    let importable = |module: &str| {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if packages.iter().all(|(module, _)| importable(module)) {
        return;
    }
    let lock_path = std::env::temp_dir().join("etl-tests-pip.lock");
    let lock = std::fs::File::create(&lock_path).expect("pip lock file");
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function owns; released when `lock` is dropped.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(module, _)| !importable(module))
        .map(|(_, pip)| *pip)
        .collect();
    if missing.is_empty() {
        return;
    }
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(&missing)
        .status()
        .expect("python3 -m pip runs");
    assert!(status.success(), "pip install {missing:?} failed");
}

/// The repository's root (the shipped schemas, types, migrations and examples).
const REPO_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A project folder with the shipped schemas, types and migrations, plus the transactions
/// example when `with_example`; the environment's configuration points at it.
pub fn project(env: &mut Env, with_example: bool) -> PathBuf {
    let root = env.dir.path().join("project");
    for (from, to) in [
        ("schemas", "schemas"),
        ("types", "types"),
        ("db/migrations", "db/migrations"),
    ] {
        let target = root.join(to);
        std::fs::create_dir_all(&target).expect("mkdir");
        for entry in std::fs::read_dir(Path::new(REPO_ROOT).join(from)).expect("shipped folder") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, target.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    if with_example {
        let example = Path::new(REPO_ROOT).join("examples/transactions");
        for (file, to) in [
            ("transactions.schema.json", "schemas"),
            ("transactions.toml", "types"),
            ("migrations/1000_transactions.sql", "db/migrations"),
        ] {
            let from = example.join(file);
            let name = from.file_name().expect("name").to_owned();
            std::fs::copy(&from, root.join(to).join(name)).expect("install the example");
        }
    }
    env.config.schemas_dir = root.join("schemas");
    env.config.types_dir = root.join("types");
    env.config.database.migrations_dir = root.join("db/migrations");
    root
}

// ---------------------------------------------------------------------------------------------
// Hand-made event documents, for tests about one file's fate.
// ---------------------------------------------------------------------------------------------

/// A fixed, valid event id numbered `n`.
pub fn event_id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A valid card event (owner 311) with id `id` and event id number `n`.
pub fn card(id: i64, n: u32) -> Value {
    serde_json::json!({
        "payload": {"id": id, "user_id": 311, "created_by_name": "A B",
                    "updated_at": "2024-05-01 12:00:03", "created_at": "2024-05-01 11:58:40",
                    "active": true},
        "metadata": {"type": "card", "event_at": "2024-05-01 12:00:03", "event_id": event_id(n)}
    })
}
