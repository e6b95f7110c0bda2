//! The system as it runs: the real `users` and `cards` producers writing into the inbox of a running
//! `etl run`, atomically and in place, and the scripts that start and stop it all (`clean.sh`
//! here, `rerun.sh` in an ignored test because it makes a release build).

use crate::common;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    committed_event_ids, event_files, event_id_of, files_in, free_port, oracle, ownerless_cards,
    producer_binary, stray_files, wait_until, Daemon, Env,
};

/// How long the producers write while the daemon follows: the cards producer's fast cycle gives a
/// few hundred card events, most cards several versions.
const PRODUCE_FOR: Duration = Duration::from_secs(3);
const USERS: usize = 1_000;

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn producers_writing_atomically_feed_a_running_daemon() {
    producers_feed_a_running_daemon(&[]);
}

/// In place, the daemon sees files half-written; the settle window (300 ms here, far above the
/// microseconds between the producer's two writes) must keep every one of them out of failed/
/// (only the producer's ownerless cards go there).
#[test]
fn producers_writing_in_place_feed_a_running_daemon_without_rejecting_half_written_files() {
    producers_feed_a_running_daemon(&["--in-place"]);
}

fn producers_feed_a_running_daemon(write_mode: &[&str]) {
    let env = Env::new();
    let http = common::free_addr();
    let mut etl = env.spawn_etl("etl", &["run"], &[("ETL_HTTP_ADDR", http.clone())]);
    let state = env.dir.path().join("state");
    let state = state.to_str().expect("utf-8 temp path");
    let users_args = [&["--seed", "3", "--count", "1000"][..], write_mode].concat();
    let cards_args = [
        &["--seed", "4", "--cycle-ms", "50-150", "--state-dir", state][..],
        write_mode,
    ]
    .concat();
    let mut users = env.spawn_producer("users", &users_args);
    let mut cards = env.spawn_producer("cards", &cards_args);

    // The daemon loads while the producers write, not only once they stop.
    assert!(
        wait_until(Duration::from_secs(30), || !files_in(&env, "done")
            .is_empty()),
        "nothing reached done/ while the producers ran; etl log:\n{}",
        etl.log_tail(30)
    );
    std::thread::sleep(PRODUCE_FOR);
    // On a loaded machine the users producer may need longer than PRODUCE_FOR for its 1,000.
    assert!(
        users.wait_for_log("all user events written", Duration::from_secs(60)),
        "{}",
        users.log_tail(5)
    );
    users.signal(libc::SIGTERM);
    cards.signal(libc::SIGTERM);
    let users_log = stopped_cleanly("users", &mut users);
    let cards_log = stopped_cleanly("cards", &mut cards);
    assert!(users_log.contains("all user events written"), "{users_log}");
    let written = USERS + cards_written(&cards_log);

    assert!(
        wait_until(Duration::from_secs(60), || files_in(&env, "inbox")
            .is_empty()),
        "{} files still in the inbox; etl log:\n{}",
        files_in(&env, "inbox").len(),
        etl.log_tail(30)
    );

    // Every file the producers wrote was loaded or, for the cards producer's 'bad' events (no
    // user_id), rejected with its reason and one WARN line; none left half-way.
    assert_eq!(
        fs::read_dir(env.config.failed("users"))
            .expect("failed/ exists")
            .count(),
        0,
        "valid user events rejected"
    );
    let failed = event_files(&env.config.failed("cards"));
    assert_eq!(
        ownerless_cards(&failed),
        failed.len(),
        "only ownerless cards are rejected: {failed:?}"
    );
    for file in &failed {
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        // Beside the file, in the same day folder.
        let reason = fs::read_to_string(file.with_file_name(etl::layout::sidecar_name(name)))
            .expect("reason file");
        assert!(
            reason.contains("\"schema\"") && reason.contains("user_id"),
            "{reason}"
        );
        assert!(
            etl.rejection_line(name).is_some(),
            "no WARN line for {name}"
        );
    }
    // The rejection counter operators alert on says the same.
    let metrics = common::try_get(&http, "/metrics")
        .map(|r| r.1)
        .unwrap_or_default();
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("etl_events_rejected_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted as usize, failed.len(), "{metrics}");
    assert_eq!(stray_files(&env), Vec::<PathBuf>::new());
    let done = files_in(&env, "done");
    assert_eq!(
        done.len() + failed.len(),
        written,
        "files written vs files in done/ and failed/"
    );
    assert_eq!(ownerless_cards(&done), 0);

    // The warehouse holds exactly those events, and each entity at its latest version according
    // to the files themselves.
    let ids: HashSet<String> = done.iter().map(|f| event_id_of(f)).collect();
    assert_eq!(committed_event_ids(&env.db.url), ids);
    let (users_rows, cards_rows) = oracle(&done);
    assert_eq!(users_rows.as_array().map(Vec::len), Some(USERS));
    let card_versions = done.len() - USERS;
    let cards_known = cards_rows.as_array().map_or(0, Vec::len);
    assert!(
        cards_known > 0 && card_versions > cards_known,
        "expected cards with several versions: {card_versions} events for {cards_known} cards"
    );
    assert_eq!(env.dump(), (users_rows, cards_rows), "warehouse vs oracle");

    etl.signal(libc::SIGTERM);
    let status = etl.exit_within(Duration::from_secs(30));
    assert!(
        status.success(),
        "etl exited with {status}:\n{}",
        etl.log_tail(30)
    );
}

/// Waits for a producer that was sent SIGTERM, checks it exited 0, and returns its log.
fn stopped_cleanly(name: &str, producer: &mut Daemon) -> String {
    let status = producer
        .wait_timeout(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{name} did not stop within 10 s of SIGTERM"));
    assert!(
        status.success(),
        "{name} exited with {status}:\n{}",
        producer.log_tail(20)
    );
    producer.log()
}

/// The count in the cards producer's last line, `stopping written=N next_card_id=M`.
fn cards_written(log: &str) -> usize {
    log.lines()
        .filter(|line| line.contains("stopping"))
        .find_map(|line| {
            let (_, rest) = line.split_once("written=")?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no `stopping written=N` line in the cards log:\n{log}"))
}

// ---------------------------------------------------------------------------------------------
// clean.sh and rerun.sh
// ---------------------------------------------------------------------------------------------

/// `clean.sh` stops a process its pid file names (gracefully: the producer exits 0), leaves alone
/// a process whose pid merely matches a stale pid file, and resets data/ to the versioned layout,
/// which has, for every type declared in types/ (a type added there too), its inbox, done/ and
/// failed/ folders and a log folder logs/<type>/ for producers that mount it (a folder Docker
/// would otherwise create as root).
#[test]
fn clean_sh_stops_what_runs_and_resets_the_layout() {
    let dir = world_readable_tempdir();
    let root = dir.path();
    fs::copy(Path::new(WORKSPACE).join("clean.sh"), root.join("clean.sh")).expect("copy");
    fs::create_dir_all(root.join("types")).expect("mkdir");
    for toml in [
        "types/users.toml",
        "types/cards.toml",
        "examples/transactions/transactions.toml",
    ] {
        let from = Path::new(WORKSPACE).join(toml);
        let name = from.file_name().expect("file name").to_owned();
        fs::copy(&from, root.join("types").join(name)).expect("copy");
    }
    let data = root.join("data");
    for junk in [
        "events/done/cards/x.json",
        "pg/data/PG_VERSION",
        "logs/etl.log",
    ] {
        fs::create_dir_all(data.join(junk).parent().expect("parent")).expect("mkdir");
        fs::write(data.join(junk), "junk").expect("write");
    }
    fs::create_dir_all(data.join("run")).expect("mkdir");
    let mut users = Command::new(producer_binary("users"))
        .arg("--events-dir")
        .arg(data.join("events/inbox"))
        .args(["--count", "1"])
        .stderr(Stdio::null())
        .spawn()
        .expect("users starts");
    // Once it idles, its signal handlers are installed.
    assert!(wait_until(Duration::from_secs(10), || data
        .join("events/inbox/users")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some())));
    let mut bystander = Command::new("sleep").arg("60").spawn().expect("sleep");
    fs::write(data.join("run/users.pid"), users.id().to_string()).expect("pid file");
    fs::write(data.join("run/etl.pid"), bystander.id().to_string()).expect("pid file");

    let out = Command::new("bash")
        .arg(root.join("clean.sh"))
        .env("RERUN_MODE", "native")
        .output()
        .expect("clean.sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "clean.sh failed:\n{stderr}");

    let status = users.try_wait().expect("wait on users");
    assert!(
        status.is_some_and(|s| s.success()),
        "users should have stopped gracefully, got {status:?}\n{stderr}"
    );
    let untouched = bystander.try_wait().expect("wait on sleep").is_none();
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(untouched, "clean.sh signalled a process that is not etl");
    let mut expected = versioned_layout();
    for folder in ["inbox", "done", "failed"] {
        expected.insert(PathBuf::from(format!(
            "events/{folder}/transactions/.gitkeep"
        )));
    }
    expected.insert(PathBuf::from("logs/transactions/.gitkeep"));
    for name in ["users", "cards"] {
        assert!(
            expected.contains(&PathBuf::from(format!("logs/{name}/.gitkeep"))),
            "data/logs/{name}/ is not part of the versioned layout"
        );
    }
    assert_eq!(files_under(&data), expected);
}

/// `RERUN_FOR=30 ./rerun.sh` in a copy of the workspace, as a new user would run it on a machine
/// without Docker: the warehouse fills, a bad file is rejected with its reason file and log line,
/// and everything stops afterwards with status 0.
#[test]
#[ignore = "makes a release build (minutes without a warm target/release); run with --ignored"]
fn rerun_sh_runs_the_whole_system_natively() {
    let dir = world_readable_tempdir();
    let root = dir.path();
    copy_tree(Path::new(WORKSPACE), root);
    let pg_port = free_port();
    let http = common::free_addr();
    let log = root.join("rerun.out");
    let out = fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file handle");
    let mut rerun = Command::new("bash")
        .arg(root.join("rerun.sh"))
        .current_dir(root)
        .env("RERUN_FOR", "30")
        .env("RERUN_MODE", "native")
        .env("RERUN_PG_PORT", pg_port.to_string())
        .env("ETL_HTTP_ADDR", &http)
        // The workspace's own target dir: the copy shares its compiled dependencies.
        .env("CARGO_TARGET_DIR", Path::new(WORKSPACE).join("target"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("rerun.sh starts");
    let output = || fs::read_to_string(&log).unwrap_or_default();
    let url = format!("postgres://postgres@127.0.0.1:{pg_port}/dwh");
    let rows = |table: &str| {
        testkit::pg::psql(&url, &format!("SELECT count(*) FROM {table}"))
            .ok()
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0)
    };

    assert!(
        wait_until(Duration::from_secs(900), || output().contains("Ctrl-C")),
        "rerun.sh did not start the system:\n{}",
        output()
    );
    assert!(
        wait_until(Duration::from_secs(15), || rows("users") == 1_000
            && rows("cards") > 0),
        "the warehouse did not fill:\n{}",
        output()
    );
    let data = root.join("data");
    fs::write(
        data.join("events/inbox/cards/bad.json"),
        r#"{"payload": 1}"#,
    )
    .expect("write");
    let reason = common::finished(&data.join("events/failed/cards"), "bad.json.error.json");
    assert!(
        wait_until(Duration::from_secs(15), || reason.exists()),
        "no reason file for the bad card"
    );
    let etl_log = fs::read_to_string(data.join("logs/etl.log")).expect("etl.log");
    assert!(
        etl_log
            .lines()
            .any(|l| l.contains("rejected") && l.contains("bad.json")),
        "{etl_log}"
    );

    let exited = wait_until(Duration::from_secs(90), || {
        rerun.try_wait().expect("wait").is_some()
    });
    if !exited {
        let _ = rerun.kill();
    }
    let status = rerun.wait().expect("wait");
    let out = output();
    assert!(exited && status.success(), "rerun.sh: {status}\n{out}");
    for service in ["etl", "users", "cards"] {
        assert!(
            out.contains(&format!("{service} exited with status 0")),
            "{out}"
        );
    }
    assert!(
        !data.join("pg/data/postmaster.pid").exists(),
        "PostgreSQL still runs"
    );
    assert!(
        testkit::pg::psql(&url, "SELECT 1").is_err(),
        "PostgreSQL still answers"
    );
    assert_eq!(
        files_under(&data.join("run")),
        BTreeSet::new(),
        "pid files left"
    );
}

/// The `.gitkeep` files that keep data/'s empty layout in git, relative to data/.
fn versioned_layout() -> BTreeSet<PathBuf> {
    files_under(&Path::new(WORKSPACE).join("data"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == ".gitkeep"))
        .collect()
}

/// Every file below `dir`, relative to it.
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, base: &Path, found: &mut BTreeSet<PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path, base, found);
            } else {
                found.insert(path.strip_prefix(base).expect("below base").to_owned());
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(dir, dir, &mut found);
    found
}

/// The workspace's sources, without build output, runtime data or history.
fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("readable").flatten() {
        let name = entry.file_name();
        if ["target", "data", ".git"].iter().any(|skip| name == *skip) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().expect("file type").is_dir() {
            fs::create_dir_all(&dst).expect("mkdir");
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// A temp dir the `postgres` user can enter (the scripts run the server as that user when run as
/// root; temp dirs are private by default).
fn world_readable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}
