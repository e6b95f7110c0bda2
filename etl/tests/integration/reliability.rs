//! Reliability: the daemon is killed, loses its database, meets half-written files, misses
//! watch events, is asked to stop mid-drain, or shares its folder with a second daemon — and
//! the warehouse still ends up equal to the oracle, with every file in its final folder.
//!
//! These tests run the real `etl` binary (it has to be killed or signalled) against a real
//! PostgreSQL. Waits poll with generous deadlines; nothing asserts on speed.

use crate::common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::Kind;
use common::{
    committed_event_ids, dump_at, event_id_of, files_in, oracle, stray_files, wait_until, Daemon,
    Env,
};
use serde_json::Value;

/// Deadline for anything that should take a second or two on an idle machine: generous,
/// because the suite runs tests in parallel on two cores in debug mode.
const PATIENCE: Duration = Duration::from_secs(60);

/// Writes a producer backlog into the env's inbox and returns every event file it holds.
/// These tests are about faults, not validation: every file they deliver is valid (see
/// `common::valid_backlog`).
fn backlog(env: &Env, users: usize, cards: usize, seed: u64) -> Vec<PathBuf> {
    common::valid_backlog(&env.config.events_dir().join("inbox"), users, cards, seed);
    files_in(env, "inbox")
}

/// Valid event files written into a scratch folder (not an inbox), to be put into the inbox
/// later, in whatever way a test needs. Returned as (kind, path).
fn scratch_events(dir: &Path, users: usize, cards: usize, seed: u64) -> Vec<(Kind, PathBuf)> {
    common::valid_backlog(dir, users, cards, seed)
        .into_iter()
        .map(|file| {
            let folder = file.parent().and_then(|p| p.file_name()).expect("folder");
            let kind = common::type_of_folder(&folder.to_string_lossy()).expect("a type folder");
            (kind, file)
        })
        .collect()
}

/// Asserts the crash-safety invariant: a file only reaches `done/` after its event committed.
fn assert_done_implies_committed(env: &Env, url: &str) {
    let done = files_in(env, "done");
    if done.is_empty() {
        return; // (and a daemon killed while migrating may not have created `events` yet)
    }
    let committed = committed_event_ids(url);
    let uncommitted: Vec<PathBuf> = done
        .into_iter()
        .filter(|f| !committed.contains(&event_id_of(f)))
        .collect();
    assert!(
        uncommitted.is_empty(),
        "{} file(s) in done/ whose event is not in the events table, e.g. {:?}",
        uncommitted.len(),
        uncommitted.first()
    );
}

fn assert_all_settled(env: &Env, valid: usize, invalid: &[(Kind, &str)]) {
    assert_eq!(
        files_in(env, "inbox"),
        Vec::<PathBuf>::new(),
        "inbox not empty"
    );
    assert_eq!(files_in(env, "done").len(), valid, "files in done/");
    for (kind, name) in invalid {
        let failed = env.config.failed(kind);
        assert!(
            common::finished(&failed, name).exists(),
            "{name} not in failed/"
        );
        assert!(
            common::finished(&failed, etl::layout::sidecar_name(name)).exists(),
            "{name} has no reason file"
        );
    }
    assert_eq!(
        files_in(env, "failed").len(),
        invalid.len(),
        "files in failed/"
    );
    assert_eq!(stray_files(env), Vec::<PathBuf>::new(), "temp files left");
}

fn var(key: &str, value: impl ToString) -> (&str, String) {
    (key, value.to_string())
}

// ---------------------------------------------------------------------------------------------
// 1. SIGKILL at any moment
// ---------------------------------------------------------------------------------------------

/// Kill -9 at every kind of moment of a drain loses nothing and duplicates nothing: the files
/// not yet moved are simply processed again by the next run.
#[test]
fn sigkill_at_any_moment_loses_and_duplicates_nothing() {
    let env = Env::new();
    let mut files = backlog(&env, 1_000, 29_000, 41);
    let invalid = [
        ("cards", "truncated.json"),
        ("cards", "wrong-type.json"),
        ("users", "array.json"),
    ];
    fs::write(env.inbox("cards").join(invalid[0].1), "{\"payload\": {").expect("write");
    fs::write(env.inbox("cards").join(invalid[1].1), "{\"payload\": 1}").expect("write");
    fs::write(env.inbox("users").join(invalid[2].1), "[]").expect("write");
    files.extend(invalid.iter().map(|(k, n)| env.inbox(k).join(n)));
    let expected = oracle(&files);
    let valid = files.len() - invalid.len();
    let batches = [var("ETL_BATCH_SIZE", 200)];

    // Each run SIGKILLs itself at a named step (see `etl/src/faults.rs`), from the first
    // moments (migrations applied, not committed) to well into the drain: right after a
    // batch's commit, before any of its files is moved (the window where a crash makes the
    // next run load them again), and between two moves. Named points instead of sleeps: how
    // far a drain gets in 200 ms depends on the machine. Together they move fewer than half
    // of the ~30,000 files, so every run dies at its point with files left.
    let steps = [
        "migrated:kill:1",
        "load.committed:kill:1",
        "move:kill:150",
        "load.committed:kill:10",
        "move:kill:2000",
        "load.committed:kill:25",
        "move:kill:5000",
    ];
    let mut killed = 0;
    for (run, step) in steps.into_iter().enumerate() {
        let armed = [&batches[..], &[var("FAULT_POINTS", step)]].concat();
        let mut etl = env.spawn_etl(&format!("killed-{run}"), &["run", "--drain"], &armed);
        let status = etl.exit_within(Duration::from_secs(300));
        if status.success() {
            // A run that ends by itself with files left would be a bug.
            assert!(
                files_in(&env, "inbox").is_empty(),
                "run {run} ended before its SIGKILL with files left: {}",
                etl.log_tail(20)
            );
            break;
        }
        etl.dies_at(step, Duration::from_secs(1));
        killed += 1;
        assert_done_implies_committed(&env, &env.db.url);
        if files_in(&env, "inbox").is_empty() {
            break;
        }
    }
    assert_eq!(killed, steps.len(), "every run died at its point");
    assert!(killed >= 2, "only {killed} kill(s) landed mid-drain");

    // And one SIGKILL from outside, wherever it lands (once 500 more files have left the
    // inbox, or after the drain ended): for the steps no point names. Nothing asserted here
    // depends on where it lands: done implies committed, and the final drain matches the
    // oracle, whatever the moment.
    let left = files_in(&env, "inbox").len();
    let mut anywhere = env.spawn_etl("killed-anywhere", &["run", "--drain"], &batches);
    wait_until(Duration::from_secs(120), || {
        !anywhere.is_running() || files_in(&env, "inbox").len() + 500 <= left
    });
    anywhere.kill();
    assert_done_implies_committed(&env, &env.db.url);

    let mut last = env.spawn_etl("final", &["run", "--drain"], &batches);
    let status = last.exit_within(Duration::from_secs(300));
    assert!(
        status.success(),
        "final drain failed: {}",
        last.log_tail(20)
    );

    assert_eq!(env.dump(), expected, "warehouse differs from the oracle");
    assert_eq!(env.scalar("SELECT count(*) FROM events"), valid as i64);
    assert_all_settled(&env, valid, &invalid);
}

// ---------------------------------------------------------------------------------------------
// 2. Database outage
// ---------------------------------------------------------------------------------------------

/// How long the database is down. The issue asks for a 20 s outage; the retry backoff is capped
/// at 1 s in this test, so 20 s means many failed attempts on every worker.
const OUTAGE: Duration = Duration::from_secs(20);

/// A private server the test can stop, with a database `etl` on it.
fn private_server() -> (testkit::pg::Cluster, String) {
    let cluster = testkit::pg::Cluster::start().expect("private PostgreSQL server starts");
    testkit::pg::psql(&cluster.url(), "CREATE DATABASE etl").expect("create database");
    let url = format!("postgres://postgres@127.0.0.1:{}/etl", cluster.port());
    (cluster, url)
}

/// Copies files into their inbox the way the reference producers write (in place).
fn deliver(env: &Env, files: &[(Kind, PathBuf)]) {
    for (kind, file) in files {
        let name = file.file_name().expect("name");
        fs::copy(file, env.inbox(kind).join(name)).expect("copy into the inbox");
    }
}

#[test]
fn a_database_outage_delays_events_but_loses_and_rejects_none() {
    let (cluster, url) = private_server();
    let mut env = Env::new();
    env.config.database.url = url.clone();
    let source = tempfile::tempdir().expect("tmp");
    let files = scratch_events(source.path(), 60, 540, 5);
    let expected = oracle(&files.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>());
    let (before, rest) = files.split_at(200);
    let (during, after) = rest.split_at(200);

    let mut etl = env.spawn_etl(
        "follow",
        &["run"],
        &[
            var("ETL_RESCAN_INTERVAL_SECS", 1),
            var("ETL_MAX_RETRY_BACKOFF_MS", 1000),
        ],
    );
    deliver(&env, before);
    assert!(
        wait_until(PATIENCE, || files_in(&env, "done").len() == before.len()),
        "the first events were not loaded: {}",
        etl.log_tail(20)
    );

    cluster.stop().expect("stop the server");
    let outage = Instant::now();
    deliver(&env, during);
    while outage.elapsed() < OUTAGE {
        assert!(etl.is_running(), "etl died: {}", etl.log_tail(20));
        assert_eq!(files_in(&env, "failed"), Vec::<PathBuf>::new());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        files_in(&env, "done").len(),
        before.len(),
        "nothing can be done while the database is down"
    );
    cluster.start_again().expect("restart the server");
    deliver(&env, after);

    let loaded = wait_until(PATIENCE, || {
        files_in(&env, "inbox").is_empty() && dump_at(&url) == expected
    });
    assert!(loaded, "not everything arrived: {}", etl.log_tail(20));
    let errors = etl.lines_at("ERROR");
    assert!(
        errors
            .iter()
            .any(|l| l["message"].as_str().unwrap_or("").contains("database")),
        "no database error was logged during the outage"
    );
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(PATIENCE).success(), "{}", etl.log_tail(20));

    assert_eq!(files_in(&env, "done").len(), files.len());
    assert_eq!(files_in(&env, "failed"), Vec::<PathBuf>::new());
    assert_eq!(committed_event_ids(&url).len(), files.len());
}

#[test]
fn a_daemon_started_while_the_database_is_down_waits_for_it() {
    let (cluster, url) = private_server();
    let mut env = Env::new();
    env.config.database.url = url.clone();
    let files = backlog(&env, 20, 180, 6);
    let expected = oracle(&files);
    cluster.stop().expect("stop the server");

    // Its patience is the test's: within --wait it keeps trying, and loads once the server is
    // back (past --wait it would give up: `startup::a_drain_with_no_warehouse_gives_up_…`).
    let wait = PATIENCE.as_secs().to_string();
    let mut etl = env.spawn_etl(
        "drain",
        &["--wait", &wait, "run", "--drain"],
        &[var("ETL_MAX_RETRY_BACKOFF_MS", 1000)],
    );
    // It keeps trying: several failed attempts (each a WARN line: it may still come), and
    // still running.
    let attempts = || {
        etl.lines_at("WARN")
            .iter()
            .filter(|l| l.to_string().contains("cannot migrate"))
            .count()
    };
    assert!(
        wait_until(PATIENCE, || attempts() >= 3),
        "no migration retries logged: {}",
        etl.log_tail(20)
    );
    assert!(etl.is_running(), "etl gave up: {}", etl.log_tail(20));
    cluster.start_again().expect("restart the server");

    assert!(etl.exit_within(PATIENCE).success(), "{}", etl.log_tail(20));
    assert_eq!(dump_at(&url), expected);
    assert_all_settled(&env, files.len(), &[]);
}

// ---------------------------------------------------------------------------------------------
// 3. Half-written files
// ---------------------------------------------------------------------------------------------

/// Settle window of these tests, as the issue specifies.
const SETTLE_MS: u64 = 2000;

fn follow_with_settle(env: &Env, name: &str) -> Daemon {
    env.spawn_etl(
        name,
        &["run"],
        &[
            var("ETL_SETTLE_MS", SETTLE_MS),
            var("ETL_RESCAN_INTERVAL_SECS", 1),
            // The "looks half-written" line is DEBUG: it shows the test hit the case it is about.
            var("RUST_LOG", "info,etl=debug"),
        ],
    )
}

/// Writes `bytes` in place like a slow producer: the first half, a pause, the rest, close.
fn write_slowly(path: &Path, bytes: &[u8], pause: Duration) {
    let (first, second) = bytes.split_at(bytes.len() / 2);
    let mut file = fs::File::create(path).expect("create");
    file.write_all(first).expect("write");
    file.flush().expect("flush");
    std::thread::sleep(pause);
    file.write_all(second).expect("write");
}

#[test]
fn files_written_slowly_in_place_are_waited_for_not_rejected() {
    let env = Env::new();
    let source = tempfile::tempdir().expect("tmp");
    let files = scratch_events(source.path(), 12, 48, 9);
    let expected = oracle(&files.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>());
    let mut etl = follow_with_settle(&env, "follow");
    assert!(etl.wait_for_log("pipeline started", PATIENCE));

    // Four producers, each writing its share one file after the other, 300 ms mid-file.
    std::thread::scope(|scope| {
        for share in files.chunks(files.len().div_ceil(4)) {
            let env = &env;
            scope.spawn(move || {
                for (kind, file) in share {
                    let bytes = fs::read(file).expect("read source");
                    let target = env.inbox(kind).join(file.file_name().expect("name"));
                    write_slowly(&target, &bytes, Duration::from_millis(300));
                }
            });
        }
    });

    let loaded = wait_until(PATIENCE, || files_in(&env, "done").len() == files.len());
    assert!(loaded, "not all files loaded: {}", etl.log_tail(20));
    assert_eq!(files_in(&env, "failed"), Vec::<PathBuf>::new());
    assert_eq!(env.dump(), expected);
    assert!(
        etl.log().contains("half-written"),
        "no rescan caught a file mid-write, so this run proved nothing"
    );
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(PATIENCE).success());
}

#[test]
fn a_half_written_file_present_at_startup_is_waited_for() {
    let env = Env::new();
    let source = tempfile::tempdir().expect("tmp");
    let (kind, file) = scratch_events(source.path(), 0, 1, 21).remove(0);
    let bytes = fs::read(&file).expect("read source");
    let name = file
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let target = env.inbox(kind).join(&name);

    // A producer is mid-write when the daemon starts: 40% written, then a byte every 100 ms
    // (so the file keeps changing) until the daemon's startup scan has seen it half-written.
    let mut writer = fs::File::create(&target).expect("create");
    let mut written = bytes.len() * 2 / 5;
    writer.write_all(&bytes[..written]).expect("write");
    let mut etl = follow_with_settle(&env, "follow");
    let seen = wait_until(PATIENCE, || {
        if etl.log().contains("half-written") {
            return true;
        }
        if written < bytes.len() * 9 / 10 {
            writer.write_all(&bytes[written..=written]).expect("write");
            written += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    });
    assert!(
        seen,
        "the startup scan never saw the file: {}",
        etl.log_tail(20)
    );
    std::thread::sleep(Duration::from_millis(500));
    writer.write_all(&bytes[written..]).expect("write");
    drop(writer);

    let done = common::finished(&env.config.done(kind), &name);
    assert!(
        wait_until(PATIENCE, || done.exists()),
        "file not loaded: {}",
        etl.log_tail(20)
    );
    assert_eq!(files_in(&env, "failed"), Vec::<PathBuf>::new());
    assert_eq!(env.dump(), oracle(&[file]));
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(PATIENCE).success());
}

#[test]
fn a_truncated_file_that_never_completes_is_rejected_after_the_settle_window() {
    let env = Env::new();
    let mut etl = follow_with_settle(&env, "follow");
    assert!(etl.wait_for_log("pipeline started", PATIENCE));

    let written_at = SystemTime::now();
    let name = "truncated.json";
    fs::write(
        env.inbox("cards").join(name),
        r#"{"payload": {"id": 7, "user_id": 1, "created_by_"#,
    )
    .expect("write");
    let sidecar = common::finished(&env.config.failed("cards"), etl::layout::sidecar_name(name));
    assert!(
        wait_until(PATIENCE, || sidecar.exists()),
        "truncated file never rejected: {}",
        etl.log_tail(20)
    );

    let record: Value =
        serde_json::from_str(&fs::read_to_string(&sidecar).expect("read")).expect("reason JSON");
    assert_eq!(record["code"], "invalid_json");
    let reason = record["reason"].as_str().expect("reason");
    assert!(reason.contains("EOF"), "{reason}");
    let rejected_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(record["rejected_at"].clone()).expect("timestamp");
    // Not before the producer had SETTLE_MS to finish it (minus the mtime clock's granularity).
    let earliest = chrono::DateTime::<chrono::Utc>::from(written_at)
        + chrono::Duration::milliseconds(SETTLE_MS as i64 - 50);
    assert!(rejected_at >= earliest, "rejected too early: {rejected_at}");
    assert!(
        wait_until(PATIENCE, || etl.rejection_line(name).is_some()),
        "no WARN line for the rejection: {}",
        etl.log_tail(20)
    );
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(PATIENCE).success());
}

// ---------------------------------------------------------------------------------------------
// 4. Missed watch events
// ---------------------------------------------------------------------------------------------

/// A hard link made into the inbox raises no close-after-write or moved-in event, so only the
/// periodic rescan can find it.
#[test]
fn a_file_the_watcher_never_reports_is_found_by_the_rescan() {
    let env = Env::new();
    // In the env's temp dir: a hard link needs the same file system as the inbox.
    let source = env.dir.path().join("elsewhere");
    let files = scratch_events(&source, 1, 1, 24);
    assert_eq!(files.len(), 2, "a seed whose first card has an owner");
    let mut etl = env.spawn_etl("follow", &["run"], &[var("ETL_RESCAN_INTERVAL_SECS", 1)]);

    // A file delivered normally, first: once it is done, the startup scan is behind us.
    let (kind, first) = &files[1];
    deliver(&env, &files[1..]);
    let first_done = common::finished(&env.config.done(kind), first.file_name().expect("name"));
    assert!(wait_until(PATIENCE, || first_done.exists()));

    let (kind, linked) = &files[0];
    let name = linked.file_name().expect("name");
    fs::hard_link(linked, env.inbox(kind).join(name)).expect("hard link");
    let done = common::finished(&env.config.done(kind), name);
    assert!(
        wait_until(Duration::from_secs(15), || done.exists()),
        "the rescan did not pick up the hard-linked file: {}",
        etl.log_tail(20)
    );
    assert!(committed_event_ids(&env.db.url).contains(&event_id_of(linked)));
    assert!(linked.exists(), "the link's other name is untouched");
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(PATIENCE).success());
}

// ---------------------------------------------------------------------------------------------
// 5. Graceful shutdown
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_mid_drain_commits_what_is_in_flight_and_exits_zero() {
    let env = Env::new();
    let files = backlog(&env, 200, 4_800, 13);
    let expected = oracle(&files);
    let bound_secs = 10;
    let mut etl = env.spawn_etl(
        "follow",
        &["run"],
        &[
            var("ETL_SHUTDOWN_TIMEOUT_SECS", bound_secs),
            var("ETL_BATCH_SIZE", 100),
        ],
    );
    assert!(
        wait_until(PATIENCE, || !files_in(&env, "done").is_empty()),
        "nothing processed: {}",
        etl.log_tail(20)
    );

    etl.signal(libc::SIGTERM);
    let status = etl.exit_within(Duration::from_secs(bound_secs + 20));
    assert!(
        status.success(),
        "exit status {status}: {}",
        etl.log_tail(20)
    );
    let finished = etl
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == "finished")
        .expect("a closing summary line");
    assert_eq!(finished["graceful"], true, "in-flight work was abandoned");

    let done = files_in(&env, "done").len();
    let inbox = files_in(&env, "inbox").len();
    assert!(
        done < files.len(),
        "SIGTERM came after the end of the drain"
    );
    assert_eq!(done + inbox, files.len(), "a file went missing");
    assert_eq!(files_in(&env, "failed"), Vec::<PathBuf>::new());
    assert_done_implies_committed(&env, &env.db.url);

    let output = env.run_etl(&["run", "--drain"]);
    assert!(output.status.success());
    assert_eq!(env.dump(), expected);
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        files.len() as i64
    );
    assert_all_settled(&env, files.len(), &[]);
}

// ---------------------------------------------------------------------------------------------
// 6. Two daemons on one folder
// ---------------------------------------------------------------------------------------------

#[test]
fn two_daemons_on_one_folder_share_the_work_without_errors() {
    let env = Env::new();
    let files = backlog(&env, 500, 9_500, 17);
    let expected = oracle(&files);
    let invalid = [("cards", "broken-1.json"), ("users", "broken-2.json")];
    for (kind, name) in invalid {
        fs::write(env.inbox(kind).join(name), "{\"payload\": ").expect("write");
    }
    let vars = [var("ETL_BATCH_SIZE", 200), var("ETL_SETTLE_MS", 0)];
    let mut a = env.spawn_etl("a", &["run", "--drain"], &vars);
    let mut b = env.spawn_etl("b", &["run", "--drain"], &vars);

    for etl in [&mut a, &mut b] {
        let status = etl.exit_within(Duration::from_secs(300));
        assert!(status.success(), "{}", etl.log_tail(20));
    }
    assert_eq!(env.dump(), expected);
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        files.len() as i64
    );
    assert_all_settled(&env, files.len(), &invalid);
    // Each bad file is announced once, by whichever daemon moved it.
    for (_, name) in invalid {
        let announced = [&a, &b]
            .iter()
            .filter(|etl| etl.rejection_line(name).is_some())
            .count();
        assert_eq!(announced, 1, "{name} announced {announced} times");
    }
    // A file the other daemon took first is not a problem worth a WARN or an ERROR.
    for etl in [&a, &b] {
        let complaints: Vec<Value> = ["WARN", "ERROR"]
            .iter()
            .flat_map(|level| etl.lines_at(level))
            .filter(|line| !line["message"].as_str().unwrap_or("").contains("rejected"))
            .collect();
        assert_eq!(complaints, Vec::<Value>::new(), "unexpected complaints");
    }
}

// ---------------------------------------------------------------------------------------------
// A file whose fate cannot be recorded
// ---------------------------------------------------------------------------------------------

/// If a file can never reach its final folder (here `done/cards/<name>` is taken by a
/// directory), a drain must still end, leaving that file in the inbox with an ERROR line,
/// instead of rescanning and reprocessing it for ever.
#[test]
fn a_drain_ends_even_if_a_file_cannot_be_moved() {
    let env = Env::new();
    let source = tempfile::tempdir().expect("tmp");
    let files = scratch_events(source.path(), 0, 3, 29);
    deliver(&env, &files);
    let (kind, stuck) = &files[0];
    let name = stuck.file_name().expect("name");
    let blocker = common::finished(&env.config.done(kind), name);
    fs::create_dir_all(blocker.join("occupied")).expect("mkdir");

    let mut etl = env.spawn_etl("drain", &["run", "--drain"], &[]);
    let status = etl.wait_timeout(Duration::from_secs(30));
    let errors = etl.lines_at("ERROR").len();
    etl.kill();
    assert!(
        status.is_some(),
        "the drain never ended ({errors} ERROR lines so far)"
    );
    assert!(
        status.is_some_and(|s| !s.success()),
        "a drain that leaves a file behind must not claim success"
    );
    assert!(env.inbox(kind).join(name).exists());
    // The blocking directory is itself named like an event file: count regular files only.
    let done_files = files_in(&env, "done")
        .iter()
        .filter(|p| p.is_file())
        .count();
    assert_eq!(done_files, files.len() - 1);
    assert!(errors >= 1, "the stuck file was not reported");
}

/// A stop requested while the database is down cannot commit what is in flight: it must still
/// exit 0 within the shutdown bound, leave those files in the inbox, and a later run loads them.
#[test]
fn sigterm_during_an_outage_exits_within_the_bound_and_loses_nothing() {
    let (cluster, url) = private_server();
    let mut env = Env::new();
    env.config.database.url = url.clone();
    let source = tempfile::tempdir().expect("tmp");
    let files = scratch_events(source.path(), 10, 90, 31);
    let expected = oracle(&files.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>());
    let (before, during) = files.split_at(50);
    let bound_secs = 3;
    let mut etl = env.spawn_etl(
        "follow",
        &["run"],
        &[
            var("ETL_SHUTDOWN_TIMEOUT_SECS", bound_secs),
            var("ETL_MAX_RETRY_BACKOFF_MS", 500),
            // Tiny queues, so the files delivered during the outage fill every stage and block
            // intake itself (the watcher and the rescan): the bound must still hold.
            var("ETL_CHANNEL_CAPACITY", 1),
            var("ETL_BATCH_SIZE", 1),
            var("ETL_READERS", 1),
            var("ETL_WORKERS", 1),
            var("ETL_RESCAN_INTERVAL_SECS", 1),
        ],
    );
    deliver(&env, before);
    assert!(wait_until(PATIENCE, || files_in(&env, "done").len() == before.len()));

    cluster.stop().expect("stop the server");
    deliver(&env, during);
    assert!(
        etl.wait_for_log("database unavailable", PATIENCE),
        "no retry logged: {}",
        etl.log_tail(20)
    );
    std::thread::sleep(Duration::from_secs(2)); // a rescan now blocks on the full queue
    etl.signal(libc::SIGTERM);
    let status = etl.exit_within(Duration::from_secs(bound_secs + 20));
    assert!(status.success(), "{}", etl.log_tail(20));
    assert_eq!(files_in(&env, "done").len(), before.len());
    assert_eq!(files_in(&env, "inbox").len(), during.len());
    assert_eq!(files_in(&env, "failed"), Vec::<PathBuf>::new());

    cluster.start_again().expect("restart the server");
    let mut drain = env.spawn_etl("drain", &["run", "--drain"], &[]);
    assert!(
        drain.exit_within(PATIENCE).success(),
        "{}",
        drain.log_tail(20)
    );
    assert_eq!(dump_at(&url), expected);
    assert_all_settled(&env, files.len(), &[]);
}

/// The data folder turns read-only mid-drain (injected at a named point: every move from the
/// 200th fails with EROFS until the test releases it): nothing is lost, the failure is logged
/// once when it starts and then as a count at most every 10 s (not one ERROR line per file),
/// `/readyz` is 503 naming the folder while it lasts, and once the folder can be written again
/// a WARN line says so, `/readyz` is 200 and every file reaches `done/`.
#[test]
fn a_read_only_data_folder_is_reported_per_cause_not_per_file_and_makes_readyz_503() {
    let env = Env::new();
    let files = backlog(&env, 100, 1400, 41);
    let expected = oracle(&files);
    let release = env.dir.path().join("release-the-fault");
    let addr = common::free_addr();
    let started = Instant::now();
    let mut etl = env.spawn_etl(
        "follow",
        &["run"],
        &[
            var("ETL_HTTP_ADDR", &addr),
            var("ETL_RESCAN_INTERVAL_SECS", 1),
            var("FAULT_POINTS", "move:erofs:200"),
            var("FAULT_POINTS_RELEASE", release.display()),
        ],
    );
    assert!(
        etl.wait_for_log("cannot move files into the data folder", PATIENCE),
        "{}",
        etl.log_tail(20)
    );
    // Every event commits although no file can be moved: their files wait in the inbox.
    assert!(
        wait_until(PATIENCE, || env.scalar("SELECT count(*) FROM events")
            == files.len() as i64),
        "{}",
        etl.log_tail(20)
    );
    let readyz = common::try_get(&addr, "/readyz");
    let (code, body) = readyz.clone().expect("/readyz answers");
    assert_eq!(code, 503, "{body}");
    let done_folder = env.config.done("users");
    let cards_done = env.config.done("cards");
    assert!(
        body.contains("data folder: cannot write")
            && (body.contains(&*done_folder.to_string_lossy())
                || body.contains(&*cards_done.to_string_lossy()))
            && body.contains("Read-only file system"),
        "{body}"
    );
    let stuck_in_inbox = files_in(&env, "inbox").len();
    assert!(stuck_in_inbox >= files.len() - 200, "{stuck_in_inbox}");

    fs::write(&release, "").expect("release the fault");
    assert!(
        wait_until(PATIENCE, || files_in(&env, "inbox").is_empty()
            && files_in(&env, "done").len() == files.len()),
        "{}",
        etl.log_tail(20)
    );
    assert!(
        etl.wait_for_log("the data folder can be written again", PATIENCE),
        "{}",
        etl.log_tail(20)
    );
    assert!(
        wait_until(PATIENCE, || common::try_get(&addr, "/readyz")
            .is_some_and(|(code, _)| code == 200)),
        "{:?}",
        common::try_get(&addr, "/readyz")
    );
    let elapsed = started.elapsed().as_secs();
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(PATIENCE).success());

    // Thousands of failed moves (every stuck file, at each rescan), said in a few lines: one
    // when it started, a count at most every 10 s.
    let errors = etl.lines_at("ERROR");
    assert!(
        !errors.is_empty() && errors.len() as u64 <= 2 + elapsed / 10,
        "{} ERROR lines in {elapsed} s: {errors:?}",
        errors.len()
    );
    let recovered: Vec<Value> = etl
        .lines_at("WARN")
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("written again"))
        })
        .collect();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert!(
        recovered[0]["failures"].as_u64().unwrap_or(0) >= (files.len() - 200) as u64,
        "{recovered:?}"
    );
    assert_eq!(env.dump(), expected);
}
