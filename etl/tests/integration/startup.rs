//! Start-up, as a person, a cron job or a CI step meets it: a one-shot command whose warehouse
//! or broker is absent (or never answers) gives up after `--wait` with exit 1 and one ERROR
//! line naming the target (no password), touching no file; the daemon keeps waiting; `etl
//! dead-letters replay` reaches for the broker only when it has something for it; and a
//! misspelt configuration key gets one line naming it, its place and the nearest known key.
//!
//! Every bound here is passed to the binary (`--wait 2`): the generous outer limits only keep a
//! regression from hanging the suite, they are never what a test measures.

use crate::common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use common::{event_files, free_port, Env, TYPES};

/// The safety net around a command that should end by itself within a few seconds.
const LIMIT: Duration = Duration::from_secs(60);

/// A password that must never appear in any output.
const SECRET: &str = "hunter2-s3cret";

/// Every event file under `events/<stage>/` of both shipped types.
fn files(env: &Env, stage: &str) -> Vec<PathBuf> {
    TYPES
        .iter()
        .flat_map(|kind| event_files(&env.config.events_dir().join(stage).join(kind)))
        .collect()
}

/// A few valid events in the inbox.
fn fill_inbox(env: &Env) {
    for i in 1..=3 {
        let user = serde_json::json!({
            "metadata": {"type": "user", "event_at": "2026-01-02 03:04:05", "event_id": uuid::Uuid::new_v4()},
            "payload": {"id": i, "name": "Ann", "address": "1 Road", "job": "Pilot", "score": 0.5},
        });
        std::fs::write(
            env.inbox("users").join(format!("{i}.json")),
            user.to_string(),
        )
        .expect("write event");
    }
}
/// The daemon, given no broker on `port`, exited 1 after one ERROR line that names the broker
/// with its password redacted, and never showed the password.
fn assert_gave_up_on_the_broker(etl: &mut common::Daemon, port: u16) {
    assert_eq!(etl.exit_within(LIMIT).code(), Some(1), "{}", etl.log());
    let errors = etl.lines_at("ERROR");
    assert_eq!(errors.len(), 1, "one ERROR line: {}", etl.log());
    assert!(
        errors[0]
            .to_string()
            .contains(&format!("nats://etl:***@127.0.0.1:{port}")),
        "{}",
        etl.log()
    );
    assert!(!etl.log().contains(SECRET), "{}", etl.log());
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// --wait: the warehouse
// ---------------------------------------------------------------------------------------------

#[test]
fn a_drain_with_no_warehouse_gives_up_after_wait_and_touches_no_file() {
    let env = Env::new();
    fill_inbox(&env);
    let before = files(&env, "inbox");
    let port = free_port();
    let url = format!("postgres://etl:{SECRET}@127.0.0.1:{port}/dwh");
    let mut etl = env.spawn_etl(
        "drain",
        &["--wait", "2", "run", "--drain"],
        &[("ETL_DATABASE_URL", url)],
    );
    let status = etl.exit_within(LIMIT);
    assert_eq!(status.code(), Some(1), "{}", etl.log());
    let errors = etl.lines_at("ERROR");
    assert_eq!(errors.len(), 1, "one ERROR line: {}", etl.log());
    let error = errors[0].to_string();
    for needle in [
        "gave up after",
        "--wait 2",
        &format!("postgres://etl:***@127.0.0.1:{port}/dwh"),
        "database_url",
    ] {
        assert!(error.contains(needle), "{needle:?} missing: {error}");
    }
    // The first line about it (a WARN retry, or the ERROR if the first attempt took the whole
    // wait) already names the target: a person watching knows what it waits for.
    let first = etl
        .log_lines()
        .into_iter()
        .find(|l| l.to_string().contains("cannot migrate the warehouse"));
    assert!(
        first.is_some_and(|l| l.to_string().contains(&format!("127.0.0.1:{port}"))),
        "{}",
        etl.log()
    );
    assert!(!etl.log().contains(SECRET), "{}", etl.log());
    assert_eq!(
        files(&env, "inbox"),
        before,
        "every file stays in the inbox"
    );
    assert!(files(&env, "done").is_empty() && files(&env, "failed").is_empty());
}

#[test]
fn migrate_against_a_peer_that_never_answers_gives_up_after_wait() {
    let env = Env::new();
    // Accepts connections (the kernel completes the handshake) and never reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let url = format!("postgres://etl:{SECRET}@127.0.0.1:{port}/dwh");
    let mut etl = env.spawn_etl(
        "migrate",
        &["--wait", "2", "migrate"],
        &[("ETL_DATABASE_URL", url)],
    );
    let status = etl.exit_within(LIMIT);
    assert_eq!(status.code(), Some(1), "{}", etl.log());
    let errors = etl.lines_at("ERROR");
    assert_eq!(errors.len(), 1, "one ERROR line: {}", etl.log());
    let error = errors[0].to_string();
    assert!(error.contains("no answer within"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(!etl.log().contains(SECRET), "{}", etl.log());
    drop(silent);
}

#[test]
fn export_with_no_warehouse_gives_up_after_wait_and_writes_nothing() {
    let env = Env::new();
    let port = free_port();
    let lake = env.dir.path().join("lake");
    let lake_arg = lake.display().to_string();
    let mut etl = env.spawn_etl(
        "export",
        &[
            "--wait", "2", "export", "--format", "parquet", "--to", &lake_arg,
        ],
        &[(
            "ETL_DATABASE_URL",
            format!("postgres://etl:{SECRET}@127.0.0.1:{port}/dwh"),
        )],
    );
    assert_eq!(etl.exit_within(LIMIT).code(), Some(1), "{}", etl.log());
    let errors = etl.lines_at("ERROR");
    assert_eq!(errors.len(), 1, "one ERROR line: {}", etl.log());
    assert!(errors[0].to_string().contains(&format!("127.0.0.1:{port}")));
    assert!(!etl.log().contains(SECRET), "{}", etl.log());
    assert!(!lake.exists(), "nothing written");
}

#[test]
fn a_forwarder_drain_with_no_broker_gives_up_after_wait_and_keeps_its_files() {
    let env = Env::new();
    fill_inbox(&env);
    let before = files(&env, "inbox");
    let port = free_port();
    let mut etl = env.spawn_etl(
        "forward",
        &["--wait", "2", "forward", "--drain"],
        &[(
            "ETL_NATS_URL",
            format!("nats://etl:{SECRET}@127.0.0.1:{port}"),
        )],
    );
    assert_gave_up_on_the_broker(&mut etl, port);
    assert_eq!(
        files(&env, "inbox"),
        before,
        "every file stays in the inbox"
    );
    assert!(files(&env, "done").is_empty() && files(&env, "failed").is_empty());
}

#[test]
fn a_replica_drain_with_no_broker_gives_up_after_wait() {
    let env = Env::new();
    let port = free_port();
    let mut etl = env.spawn_etl(
        "replica",
        &["--wait", "2", "run", "--source", "jetstream", "--drain"],
        &[(
            "ETL_NATS_URL",
            format!("nats://etl:{SECRET}@127.0.0.1:{port}"),
        )],
    );
    assert_gave_up_on_the_broker(&mut etl, port);
}

#[test]
fn a_following_daemon_waits_past_wait_for_its_warehouse() {
    let env = Env::new();
    fill_inbox(&env);
    let port = free_port();
    let mut etl = env.spawn_etl(
        "follow",
        &["--wait", "1", "run"],
        &[
            (
                "ETL_DATABASE_URL",
                format!("postgres://etl@127.0.0.1:{port}/dwh"),
            ),
            ("ETL_MAX_RETRY_BACKOFF_MS", "1000".into()),
        ],
    );
    // The fifth attempt comes after 200 + 400 + 800 + 1000 ms of backoff: past the 1 s that
    // --wait would allow a one-shot command, however fast or slow the machine is.
    let retries = || {
        etl.lines_at("WARN")
            .iter()
            .filter(|l| l.to_string().contains("cannot migrate the warehouse"))
            .count()
    };
    assert!(
        common::wait_until(LIMIT, || retries() >= 5),
        "{}",
        etl.log_tail(20)
    );
    assert!(etl.is_running(), "it gave up: {}", etl.log_tail(20));
    assert!(etl.lines_at("ERROR").is_empty(), "{}", etl.log());
    etl.signal(libc::SIGTERM);
    assert!(etl.exit_within(LIMIT).success(), "{}", etl.log_tail(20));
    assert_eq!(files(&env, "inbox").len(), 3);
}

// ---------------------------------------------------------------------------------------------
// dead-letters replay: the broker only when it has something for it
// ---------------------------------------------------------------------------------------------

/// Stores one dead letter of `source` (`http` or `jetstream`) directly, as a replica or an API
/// pull would have.
fn dead_letter(env: &Env, source: &str, subject: &str) {
    let sql = format!(
        "INSERT INTO rejected_events (source, origin, subject, type, event_id, code, reason, bytes)
         VALUES ('{source}', 'test', '{subject}', 'cards', NULL, 'schema',
                 '{{\"code\": \"schema\", \"reason\": \"user_id is a required property\"}}',
                 convert_to('{{\"metadata\": {{}}}}', 'UTF8'))"
    );
    testkit::pg::psql(&env.db.url, &sql).expect("insert a dead letter");
}

fn migrated() -> Env {
    let env = Env::new();
    let out = env.run_etl(&["migrate"]);
    assert!(out.status.success(), "{}", text(&out));
    env
}

#[test]
fn replaying_only_http_dead_letters_needs_no_broker_and_says_how_they_are_replayed() {
    let env = migrated();
    dead_letter(&env, "http", "crm");
    let nats = format!("nats://etl:{SECRET}@127.0.0.1:{}", free_port());
    let mut etl = env.spawn_etl(
        "replay",
        &["dead-letters", "replay"],
        &[("ETL_NATS_URL", nats)],
    );
    let status = etl.exit_within(LIMIT);
    assert!(status.success(), "{}", etl.log());
    let log = etl.log();
    for reached in ["connect to the broker", "reach the broker"] {
        assert!(!log.contains(reached), "it reached for the broker: {log}");
    }
    assert!(log.contains("etl pull crm"), "{log}");
    assert!(log.contains("replayed 0 dead letter(s)"), "{log}");
    assert_eq!(
        env.scalar("SELECT count(*) FROM rejected_events"),
        1,
        "kept"
    );
}

#[test]
fn replaying_broker_dead_letters_with_no_broker_gives_up_after_wait() {
    let env = migrated();
    dead_letter(&env, "jetstream", "events.cards");
    let port = free_port();
    let nats = format!("nats://etl:{SECRET}@127.0.0.1:{port}");
    let mut etl = env.spawn_etl(
        "replay",
        &["--wait", "2", "dead-letters", "replay"],
        &[("ETL_NATS_URL", nats)],
    );
    let status = etl.exit_within(LIMIT);
    assert_eq!(status.code(), Some(1), "{}", etl.log());
    let errors = etl.lines_at("ERROR");
    assert_eq!(errors.len(), 1, "one ERROR line: {}", etl.log());
    let error = errors[0].to_string();
    assert!(
        error.contains(&format!("nats://etl:***@127.0.0.1:{port}")),
        "{error}"
    );
    assert!(error.contains("--wait 2"), "{error}");
    assert!(!etl.log().contains(SECRET), "{}", etl.log());
    assert_eq!(
        env.scalar("SELECT count(*) FROM rejected_events"),
        1,
        "kept"
    );
}

// ---------------------------------------------------------------------------------------------
// A misspelt key: one line, its place, the nearest known key
// ---------------------------------------------------------------------------------------------

/// Runs `etl status` (which reads the configuration first) with `etl.toml` holding `toml` and
/// the extra variables; returns its exit code and its output lines.
fn with_config(env: &Env, toml: &str, vars: &[(&str, &str)]) -> (Option<i32>, Vec<String>) {
    std::fs::write(env.dir.path().join("etl.toml"), toml).expect("write etl.toml");
    let out = env
        .etl()
        .arg("status")
        .envs(vars.iter().copied())
        .output()
        .expect("etl runs");
    let lines = text(&out).lines().map(str::to_owned).collect();
    (out.status.code(), lines)
}

/// A configuration (`etl.toml`'s text, `ETL_*` variables) and what its one line must say.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

#[test]
fn a_misspelt_key_gets_one_line_with_its_place_and_the_nearest_known_key() {
    let env = Env::new();
    let cases: [Case; 7] = [
        (
            "[broker]\nack_wait_sec = 60\n",
            &[],
            &[
                "`ack_wait_sec`",
                "in [broker] of",
                "did you mean `ack_wait_secs`?",
            ],
        ),
        (
            "workers = 0\n",
            &[],
            &[
                "`workers` at the top level of",
                "is 0",
                "set it to at least 1",
            ],
        ),
        (
            // The harness sets ETL_DATABASE_URL: the sectioned name of the same setting too.
            "",
            &[("ETL_DATABASE__URL", "postgres://other@localhost/db")],
            &[
                "ETL_DATABASE__URL and ETL_DATABASE_URL are the same setting",
                "keep one",
            ],
        ),
        (
            "batch_sise = 3\n",
            &[],
            &[
                "`batch_sise`",
                "top level of",
                "etl.toml",
                "did you mean `batch_size`?",
            ],
        ),
        (
            "[[sources]]\nkind = \"http\"\nname = \"crm\"\ntype = \"cards\"\n\
             url = \"https://crm.example/v1\"\nitem = { key = \"/id\", version = \"/v\" }\n\
             page_sise = 10\n",
            &[],
            &[
                "`page_sise`",
                "[[sources]] #1",
                "name = \"crm\"",
                "etl.toml",
                "did you mean `page_size`?",
            ],
        ),
        (
            "[[sources]]\nkind = \"http\"\ntype = \"cards\"\nurl = \"https://crm.example/v1\"\n\
             item = { key = \"/id\", version = \"/v\" }\n",
            &[],
            &["missing key `name`", "[[sources]] #1", "etl.toml"],
        ),
        (
            "",
            &[("ETL_BATCH_SISE", "3")],
            &["ETL_BATCH_SISE", "did you mean ETL_BATCH_SIZE?"],
        ),
    ];
    for (toml, vars, needles) in cases {
        let (code, lines) = with_config(&env, toml, vars);
        assert_eq!(code, Some(2), "{toml}{vars:?}: {lines:?}");
        assert_eq!(lines.len(), 1, "one line: {lines:?}");
        for needle in needles {
            assert!(lines[0].contains(needle), "{needle:?} missing: {lines:?}");
        }
        // Not the wall of every known key.
        assert!(!lines[0].contains("serve_max_in_flight"), "{lines:?}");
    }
}
