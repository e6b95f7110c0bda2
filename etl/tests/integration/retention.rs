//! Bounded growth of the file folders: finished files land in day folders, and the retention
//! inside `etl run` removes (or archives) whole old days of `done/`, `failed/` and the HTTP
//! sources' landing zone, files older versions' flat files into day folders, and runs in one
//! replica at a time. `etl replay` and `etl status` work with the day folders.
//!
//! Old days are made by creating folders with old names (`done/cards/2020-01-01/`), and old
//! flat files by setting their modification time: nothing waits for days to pass.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{NaiveDate, Utc};
use common::*;
use serde_json::Value;

const PASS: &str = "file folders retention pass";

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn days_ago(n: u64) -> NaiveDate {
    today() - chrono::Days::new(n)
}

/// `dir/<day>/<name>` with some content, folders made as needed.
fn put(dir: &Path, day: NaiveDate, name: &str) -> PathBuf {
    let folder = dir.join(day.to_string());
    fs::create_dir_all(&folder).expect("mkdir");
    let path = folder.join(name);
    fs::write(&path, "{}").expect("write");
    path
}

/// A flat file (an older version's layout) last modified on `day`.
fn put_flat(dir: &Path, name: &str, day: NaiveDate) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, "{}").expect("write");
    set_mtime(&path, day);
    path
}

fn set_mtime(path: &Path, day: NaiveDate) {
    let noon = day.and_hms_opt(12, 0, 0).expect("a time").and_utc();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(noon.timestamp() as u64);
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .expect("set mtime");
}

/// A landed page of source `source` on `day`: `lake/raw/<source>/<yyyy>/<mm>/<dd>/p.ndjson`.
fn land(env: &Env, source: &str, day: NaiveDate) -> PathBuf {
    let folder = env
        .config
        .landing_dir()
        .join(source)
        .join(day.format("%Y/%m/%d").to_string());
    fs::create_dir_all(&folder).expect("mkdir");
    let path = folder.join("000000.000-00001.ndjson");
    fs::write(&path, "{}\n").expect("write");
    path
}

/// Runs `etl run` with `vars` until its first retention pass is logged; returns the pass's
/// log line and the daemon's `/metrics` text, then stops it.
fn one_pass(env: &Env, vars: &[(&str, String)]) -> (Value, String) {
    let addr = free_addr();
    let mut vars = vars.to_vec();
    vars.push(("ETL_HTTP_ADDR", addr.clone()));
    let mut etl = env.spawn_etl("run", &["run"], &vars);
    assert!(
        etl.wait_for_log(PASS, Duration::from_secs(60)),
        "no retention pass: {}",
        etl.log_tail(30)
    );
    let line = etl
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == PASS)
        .expect("the pass line");
    let metrics = try_get(&addr, "/metrics").map(|r| r.1).unwrap_or_default();
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(Duration::from_secs(30)).success());
    (line, metrics)
}

/// The value of a counter line of `/metrics`, e.g. `etl_retention_removed_total{folder="done"}`.
fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in /metrics:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_files_go_to_the_day_folder_of_their_move() {
    let env = Env::new();
    fs::write(env.inbox("cards").join("bad.json"), "{").expect("write");
    copy_samples(&env);
    env.drain().await;
    let done = env.config.done("cards");
    let failed = env.config.failed("cards");
    assert_eq!(
        day_folders(&done),
        vec![common::today(&done)],
        "one day folder, today's (UTC)"
    );
    assert!(common::today(&failed).join("bad.json").is_file());
    assert!(common::today(&failed).join("bad.json.error.json").is_file());
    let flat: Vec<PathBuf> = fs::read_dir(&done)
        .expect("done/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(
        flat,
        Vec::<PathBuf>::new(),
        "nothing directly in done/cards/"
    );
}

/// A day folder removed while the mover has it cached (an operator, a replica with its clock
/// ahead) is made again on the next move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_folder_removed_under_a_running_daemon_is_made_again() {
    let env = Env::new();
    let running = env.follow();
    let done = env.config.done("users");
    let user = |id: u32| {
        format!(
            r#"{{"metadata": {{"type": "user", "event_at": "2024-05-01 12:00:03",
            "event_id": "6f1c1c4e-7a53-4b8e-9d3a-1f0e9b2c3d{id:02}"}},
            "payload": {{"id": {id}, "name": "N", "address": "A", "job": "J", "score": 0.5}}}}"#
        )
    };
    fs::write(env.inbox("users").join("u1.json"), user(1)).expect("write");
    let first = common::today(&done).join("u1.json");
    let wait = |path: PathBuf| {
        tokio::task::spawn_blocking(move || wait_until(Duration::from_secs(30), || path.exists()))
    };
    assert!(wait(first).await.expect("wait"), "u1.json not in done/");
    fs::remove_dir_all(common::today(&done)).expect("remove today's folder");
    fs::write(env.inbox("users").join("u2.json"), user(2)).expect("write");
    let second = common::today(&done).join("u2.json");
    assert!(
        wait(second).await.expect("wait"),
        "u2.json not in a new day folder"
    );
    let summary = running.shutdown().await.expect("stops");
    assert_eq!(summary.stuck, 0);
}

#[test]
fn a_pass_removes_old_days_keeps_recent_ones_and_files_flat_files() {
    let env = Env::new();
    let (done, failed) = (env.config.done("cards"), env.config.failed("cards"));
    // done/ keeps 7 days by default, failed/ and the landing zone 30.
    let done_old = put(&done, "2020-01-01".parse().expect("date"), "a.json");
    let done_10 = put(&done, days_ago(10), "b.json");
    let done_7 = put(&done, days_ago(7), "c.json");
    let done_today = put(&done, today(), "d.json");
    let failed_old = put(&failed, "2020-01-01".parse().expect("date"), "e.json");
    let failed_10 = put(&failed, days_ago(10), "f.json");
    let landed_old = land(&env, "crm", "2020-01-01".parse().expect("date"));
    let landed_recent = land(&env, "crm", days_ago(3));
    // Flat files of an older version: filed by modification time; one whose day has already
    // expired goes into today's folder, so an upgrade deletes nothing at once.
    let legacy_old = put_flat(&done, "old.json", days_ago(400));
    let legacy_recent = put_flat(&done, "recent.json", days_ago(2));
    let legacy_failed = put_flat(&failed, "g.json", days_ago(40));
    let reason = put_flat(&failed, "g.json.error.json", days_ago(3));
    let in_progress = put_flat(&done, ".h.json.tmp", days_ago(400));

    let (line, metrics) = one_pass(&env, &[]);

    for gone in [&done_old, &done_10, &failed_old, &landed_old, &legacy_old] {
        assert!(!gone.exists(), "{} still there", gone.display());
    }
    for kept in [
        &done_7,
        &done_today,
        &failed_10,
        &landed_recent,
        &in_progress,
    ] {
        assert!(kept.exists(), "{} is gone", kept.display());
    }
    assert!(done
        .join(days_ago(2).to_string())
        .join("recent.json")
        .is_file());
    assert!(done.join(today().to_string()).join("old.json").is_file());
    assert!(!legacy_recent.exists() && !legacy_failed.exists() && !reason.exists());
    // A failed file is dated by its reason file (the day it was rejected) and keeps it beside.
    let day = failed.join(days_ago(3).to_string());
    assert!(day.join("g.json").is_file() && day.join("g.json.error.json").is_file());
    // Empty landing months and years before the cutoff go with their last day.
    assert!(!env.config.landing_dir().join("crm/2020").exists());

    // done: 2020-01-01 and 10 days ago; failed: 2020-01-01.
    assert_eq!(line["done_days"], 2, "{line}");
    assert_eq!(line["failed_days"], 1, "{line}");
    assert_eq!(line["landing_days"], 1, "{line}");
    assert_eq!(line["legacy_filed"], 3, "{line}");
    assert_eq!(
        metric(&metrics, r#"etl_retention_removed_total{folder="done"}"#),
        2.0
    );
    assert_eq!(
        metric(&metrics, r#"etl_retention_removed_total{folder="landing"}"#),
        1.0
    );
    assert_eq!(metric(&metrics, "etl_retention_legacy_filed_total"), 3.0);
}

#[test]
fn zero_days_keeps_for_ever_and_a_zero_interval_runs_no_pass() {
    let env = Env::new();
    let done = env.config.done("cards");
    let old = put(&done, "2020-01-01".parse().expect("date"), "a.json");
    let (line, _) = one_pass(&env, &[("ETL_DONE_RETENTION_DAYS", "0".into())]);
    assert_eq!(line["done_days"], 0, "{line}");
    assert!(old.exists());

    let out = env
        .etl()
        .env("ETL_RETENTION_INTERVAL_SECS", "0")
        .env("ETL_DONE_RETENTION_DAYS", "1")
        .args(["run", "--drain"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(!said(&out).contains(PASS));
    assert!(old.exists(), "no pass without an interval");
}

#[test]
fn the_archive_takes_old_days_instead_of_deleting_them() {
    let env = Env::new();
    let archive = env.dir.path().join("archive");
    let (done, failed) = (env.config.done("cards"), env.config.failed("cards"));
    let old: NaiveDate = "2020-01-01".parse().expect("date");
    put(&done, old, "a.json");
    put(&failed, old, "e.json");
    put(&failed, old, "e.json.error.json");
    land(&env, "crm", old);
    // The archive already has part of that day (an earlier pass): the two are merged.
    put(&archive.join("done/cards"), old, "earlier.json");

    let (line, _) = one_pass(
        &env,
        &[("ETL_ARCHIVE_DIR", archive.to_str().expect("utf-8").into())],
    );
    assert_eq!(
        (
            &line["done_days"],
            &line["failed_days"],
            &line["landing_days"]
        ),
        (&1.into(), &1.into(), &1.into()),
        "{line}"
    );
    assert!(!done.join("2020-01-01").exists() && !failed.join("2020-01-01").exists());
    for archived in [
        "done/cards/2020-01-01/a.json",
        "done/cards/2020-01-01/earlier.json",
        "failed/cards/2020-01-01/e.json",
        "failed/cards/2020-01-01/e.json.error.json",
        "landing/crm/2020/01/01/000000.000-00001.ndjson",
    ] {
        assert!(archive.join(archived).is_file(), "{archived} not archived");
    }
}

/// What a run printed (logs go to stdout, panics and clap to stderr).
fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn an_archive_the_retention_cannot_use_stops_the_start() {
    let env = Env::new();
    let inside = env.config.events_dir().join("done").join("archive");
    let out = env
        .etl()
        .env("ETL_ARCHIVE_DIR", &inside)
        .args(["run", "--drain"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let text = said(&out);
    assert!(
        text.contains("archive_dir") && text.contains("outside"),
        "{text}"
    );

    // Another file system, if this machine has one to offer (/dev/shm is usually tmpfs).
    let dev = |p: &Path| std::os::unix::fs::MetadataExt::dev(&fs::metadata(p).expect("stat"));
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && dev(shm) != dev(env.dir.path()) {
        let elsewhere = tempfile::tempdir_in(shm).expect("tmp in /dev/shm");
        let out = env
            .etl()
            .env("ETL_ARCHIVE_DIR", elsewhere.path())
            .args(["run", "--drain"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1));
        let text = said(&out);
        assert!(text.contains("another file system"), "{text}");
    }
}

/// The pass takes an advisory lock of its own: while another session (another replica) holds
/// it, a daemon skips its turn and removes nothing; once it is free, the next pass runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_at_a_time_runs_a_pass() {
    let env = Env::new();
    let old = put(
        &env.config.done("cards"),
        "2020-01-01".parse().expect("date"),
        "a.json",
    );
    let replica = etl::load::connect::session(&env.config)
        .await
        .expect("connect");
    let locked: bool = replica
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended('etl folder retention', 0))",
            &[],
        )
        .await
        .expect("lock")
        .get(0);
    assert!(locked);

    let vars = [
        ("ETL_RETENTION_INTERVAL_SECS", "1".to_owned()),
        ("RUST_LOG", "etl=debug".to_owned()),
    ];
    let etl = env.spawn_etl("a", &["run"], &vars);
    let second = env.spawn_etl("b", &["run"], &vars);
    // Three passes each (a pass a second), all of them skipped: no pass ran under the lock.
    for daemon in [&etl, &second] {
        let skipped = daemon.wait_for_log_count("retention skipped", 3, Duration::from_secs(60));
        assert!(skipped, "{}", daemon.log_tail(20));
    }
    assert!(old.exists(), "a pass ran while the lock was held");
    assert!(!etl.log().contains(PASS) && !second.log().contains(PASS));

    drop(replica);
    let old_gone =
        tokio::task::spawn_blocking(move || wait_until(Duration::from_secs(30), || !old.exists()));
    assert!(old_gone.await.expect("wait"), "{}", etl.log_tail(20));
    // One of them removed it; every pass after that found nothing more to do.
    let removed: i64 = [&etl, &second]
        .iter()
        .flat_map(|d| d.log_lines())
        .filter(|l| l["message"] == PASS)
        .map(|l| l["done_days"].as_i64().expect("done_days"))
        .sum();
    assert_eq!(removed, 1);
}

/// `etl replay` finds failed files in day folders and flat ones an older version left, moves
/// them back with their reason files gone, and the next drain loads them.
#[test]
fn replay_finds_failed_files_in_day_folders_and_flat_ones() {
    let env = Env::new();
    let user = |id: u32| {
        format!(
            r#"{{"metadata": {{"type": "user", "event_at": "2024-05-01 12:00:03",
            "event_id": "6f1c1c4e-7a53-4b8e-9d3a-1f0e9b2c3d{id:02}"}},
            "payload": {{"id": {id}, "name": "N", "address": "A", "job": "J", "score": 1.5}}}}"#
        )
    };
    fs::write(env.inbox("users").join("u17.json"), user(17)).expect("write");
    let out = env.run_etl(&["run", "--drain"]);
    assert!(out.status.success());
    let failed = env.config.failed("users");
    let dated = common::today(&failed);
    assert!(dated.join("u17.json").is_file());
    let reason = fs::read_to_string(dated.join("u17.json.error.json")).expect("reason");
    // The same rejection as an older version filed it: flat, with its reason beside it.
    fs::write(failed.join("u18.json"), user(18)).expect("write");
    fs::write(failed.join("u18.json.error.json"), reason).expect("write");

    // Scores above 1 allowed, in the operator's own schemas folder.
    let schemas = env.dir.path().join("schemas");
    fs::create_dir_all(&schemas).expect("mkdir");
    let strict =
        fs::read_to_string(env.config.schemas_dir.join("users.schema.json")).expect("schema");
    let relaxed = strict.replace(
        r#""minimum": 0, "maximum": 1 }"#,
        r#""minimum": 0, "maximum": 2 }"#,
    );
    assert_ne!(strict, relaxed);
    fs::write(schemas.join("users.schema.json"), relaxed).expect("write schema");

    let replay = env.run_etl(&["replay", "--type", "users", "--reason", "maximum"]);
    assert!(replay.status.success());
    assert!(
        String::from_utf8_lossy(&replay.stdout).contains("moved 2"),
        "{}",
        String::from_utf8_lossy(&replay.stdout)
    );
    let left: Vec<PathBuf> = fs::read_dir(&dated)
        .expect("day folder")
        .chain(fs::read_dir(&failed).expect("failed/"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(left, Vec::<PathBuf>::new(), "files and reason files gone");

    let out = env.drain_with_schemas(&schemas);
    assert!(out.status.success());
    assert_eq!(
        env.scalar("SELECT count(*) FROM users WHERE id IN (17, 18) AND score = 1.5"),
        2
    );
    assert!(common::today(&env.config.done("users"))
        .join("u18.json")
        .is_file());
}

/// `etl status` never lists `done/`: it says how many day folders it has and which days; it
/// counts `failed/` (dated and flat), which waits for an operator.
#[test]
fn status_counts_done_by_day_folders_and_failed_by_files() {
    let env = Env::new();
    let (done, failed) = (env.config.done("cards"), env.config.failed("cards"));
    let first: NaiveDate = "2020-01-01".parse().expect("date");
    put(&done, first, "a.json");
    put(&done, first, "b.json");
    put(&done, today(), "c.json");
    put(&failed, first, "e.json");
    put(&failed, first, "e.json.error.json");
    put_flat(&failed, "f.json", today());
    let out = env.run_etl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("cards"))
        .expect("a cards line")
        .split_whitespace()
        .collect();
    assert_eq!(
        line,
        ["cards", "0", "2", "2", &format!("2020-01-01..{}", today())],
        "{text}"
    );
}
