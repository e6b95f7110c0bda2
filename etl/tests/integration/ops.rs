//! Operability: metrics that match what happened, readiness that follows the database, replay
//! of fixed files, `etl status`, and the log file operators tail.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    count, event_files, free_addr, oracle, oracle_owner_optional, ownerless_cards, try_get as get,
    Daemon, Env,
};

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sum of every sample of a metric (all label sets) whose labels contain `labels`.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A following daemon serving its endpoints on `addr`: a process of its own, since the metrics
/// recorder and the log file are per process.
fn follow(env: &Env, addr: &str, extra: &[(&str, &str)]) -> Daemon {
    let mut vars = vec![
        ("ETL_HTTP_ADDR", addr.to_owned()),
        ("ETL_PROGRESS_INTERVAL_SECS", "1".to_owned()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env.spawn_etl("follow", &["run"], &vars)
}

#[test]
fn metrics_counters_match_what_happened() {
    let env = Env::new();
    let inbox = env.config.events_dir().join("inbox");
    services::generate_backlog(&inbox, 100, 3_000, 5).expect("backlog");
    // The generated cards include the reference producer's 'bad' ones (no user_id).
    let ownerless = ownerless_cards(&event_files(&env.inbox("cards")));
    assert!(ownerless > 10, "ownerless cards: {ownerless}");
    let ownerless_f = ownerless as f64;
    std::fs::write(env.inbox("cards").join("bad-1.json"), "[]").expect("write");
    std::fs::write(env.inbox("users").join("bad-2.json"), "{").expect("write");
    let addr = free_addr();
    let mut daemon = follow(
        &env,
        &addr,
        &[("ETL_BATCH_SIZE", "50"), ("ETL_SETTLE_MS", "0")],
    );

    wait_for("the endpoints", Duration::from_secs(30), || {
        get(&addr, "/healthz").is_some_and(|(c, _)| c == 200)
    });
    // Scraped while the backlog drains, and once it is done.
    let during = get(&addr, "/metrics").expect("metrics answer").1;
    assert!(during.contains("etl_events_applied_total"), "{during}");
    wait_for("the inbox to empty", Duration::from_secs(60), || {
        count(&env.inbox("cards")) + count(&env.inbox("users")) == 0
    });
    wait_for("the counters to settle", Duration::from_secs(10), || {
        let m = get(&addr, "/metrics").map(|r| r.1).unwrap_or_default();
        metric(&m, "etl_files_moved_total", "to=\"done\"") == 3_100.0 - ownerless_f
    });
    let m = get(&addr, "/metrics").expect("metrics").1;

    let cards = env.scalar("SELECT count(*) FROM cards") as f64;
    assert_eq!(
        metric(&m, "etl_events_applied_total", "type=\"users\""),
        100.0
    );
    let card_events = metric(&m, "etl_events_applied_total", "type=\"cards\"")
        + metric(&m, "etl_events_stale_total", "type=\"cards\"");
    assert_eq!(card_events, 3_000.0 - ownerless_f);
    assert!(metric(&m, "etl_events_applied_total", "type=\"cards\"") >= cards);
    assert_eq!(
        metric(&m, "etl_events_rejected_total", ""),
        2.0 + ownerless_f
    );
    // The ownerless cards, and bad-1.json (an array, not an object).
    assert_eq!(
        metric(
            &m,
            "etl_events_rejected_total",
            "type=\"cards\",reason=\"schema\""
        ),
        ownerless_f + 1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "etl_events_rejected_total", "reason=\"invalid_json\""),
        1.0
    );
    assert_eq!(
        metric(&m, "etl_files_moved_total", "to=\"failed\""),
        2.0 + ownerless_f
    );
    assert!(metric(&m, "etl_batch_size_count", "") > 0.0, "{m}");
    assert!(m.contains("etl_commit_seconds_bucket"), "{m}");
    assert_eq!(get(&addr, "/readyz").map(|r| r.0), Some(200));

    // The log file operators tail has one `rejected` line per rejected file.
    let log = std::fs::read_to_string(env.config.logs_dir().join("etl.log")).expect("etl.log");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"message\":\"rejected\""))
            .count(),
        2 + ownerless,
        "{log}"
    );
    daemon.kill();
}

#[test]
fn readiness_follows_the_database() {
    let cluster = testkit::pg::Cluster::start().expect("private cluster");
    let mut env = Env::new();
    testkit::pg::psql(&cluster.url(), "CREATE DATABASE ready").expect("create db");
    let url = cluster.url();
    let (server, _) = url.rsplit_once('/').expect("url with a database");
    env.config.database.url = format!("{server}/ready");
    let addr = free_addr();
    let _daemon = follow(&env, &addr, &[]);

    wait_for("ready", Duration::from_secs(30), || {
        get(&addr, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    cluster.stop().expect("stop");
    wait_for("not ready", Duration::from_secs(30), || {
        get(&addr, "/readyz").is_some_and(|(c, _)| c == 503)
    });
    assert_eq!(
        get(&addr, "/healthz").map(|r| r.0),
        Some(200),
        "alive while the database is down"
    );
    cluster.start_again().expect("start");
    wait_for("ready again", Duration::from_secs(30), || {
        get(&addr, "/readyz").is_some_and(|(c, _)| c == 200)
    });
}

#[test]
fn a_fixed_schema_and_replay_reprocess_a_rejected_file() {
    let env = Env::new();
    let user = r#"{"metadata": {"type": "user", "event_at": "2024-05-01 12:00:03",
        "event_id": "6f1c1c4e-7a53-4b8e-9d3a-1f0e9b2c3d4e"},
        "payload": {"id": 17, "name": "N", "address": "A\nB", "job": "J", "score": 1.5}}"#;
    std::fs::write(env.inbox("users").join("u17.json"), user).expect("write");
    let out = env.run_etl(&["run", "--drain"]);
    assert!(out.status.success());
    let failed = env.config.failed("users");
    assert!(common::finished(&failed, "u17.json").exists());
    let reason = std::fs::read_to_string(common::finished(&failed, "u17.json.error.json"))
        .expect("reason file");
    assert!(reason.contains("maximum"), "{reason}");

    // The operator widens the schema in a schemas folder of their own, then replays.
    let schemas = env.dir.path().join("schemas");
    std::fs::create_dir_all(&schemas).expect("mkdir");
    let strict =
        std::fs::read_to_string(env.config.schemas_dir.join("users.schema.json")).expect("schema");
    let relaxed = strict.replace(
        r#""minimum": 0, "maximum": 1 }"#,
        r#""minimum": 0, "maximum": 2 }"#,
    );
    assert_ne!(strict, relaxed, "the test must really change the schema");
    std::fs::write(schemas.join("users.schema.json"), relaxed).expect("write schema");

    let replay = env.run_etl(&["replay", "--type", "users", "--reason", "no-such-reason"]);
    assert!(replay.status.success());
    assert!(
        common::finished(&failed, "u17.json").exists(),
        "a non-matching filter moves nothing"
    );
    let replay = env.run_etl(&["replay", "--type", "users", "--reason", "MAXIMUM"]);
    assert!(String::from_utf8_lossy(&replay.stdout).contains("moved 1"));
    assert!(env.inbox("users").join("u17.json").exists());
    assert!(!common::finished(&failed, "u17.json.error.json").exists());

    let out = env.drain_with_schemas(&schemas);
    assert!(out.status.success());
    assert!(common::finished(&env.config.done("users"), "u17.json").exists());
    assert_eq!(
        env.scalar("SELECT count(*) FROM users WHERE id = 17 AND score = 1.5"),
        1
    );

    let status = env.run_etl(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        // users: 0 in the inbox, 0 failed, done/ has one day folder (today's).
        text.lines().any(|l| {
            let today = chrono::Utc::now().date_naive().to_string();
            l.split_whitespace().collect::<Vec<_>>()
                == ["users", "0", "0", "1", &format!("{today}..{today}")]
        }),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["users", "1"]),
        "{text}"
    );
}

/// The reference producer's 'bad' cards (no `user_id`) are rejected by default; an operator who
/// wants them makes `user_id` optional, restarts and replays, and they load with a NULL owner.
#[test]
fn ownerless_cards_are_rejected_until_the_operator_relaxes_the_schema_and_replays() {
    let env = Env::new();
    let inbox = env.config.events_dir().join("inbox");
    services::generate_backlog(&inbox, 50, 1_000, 23).expect("backlog");
    let mut all = event_files(&env.inbox("users"));
    all.extend(event_files(&env.inbox("cards")));
    let ownerless = ownerless_cards(&all);
    assert!(ownerless > 5, "ownerless cards: {ownerless}");
    let (strict_rule, relaxed_rule) = (oracle(&all), oracle_owner_optional(&all));

    let out = env.run_etl(&["run", "--drain"]);
    assert!(out.status.success());
    assert_eq!(env.dump(), strict_rule, "strict rule");
    assert_eq!(count(&env.config.failed("cards")), ownerless);
    assert_eq!(
        env.scalar("SELECT count(*) FROM cards WHERE user_id IS NULL"),
        0
    );

    // The operator's edit: user_id no longer required, in a schemas folder of their own.
    let schemas = env.dir.path().join("schemas");
    std::fs::create_dir_all(&schemas).expect("mkdir");
    for name in ["users.schema.json", "cards.schema.json"] {
        std::fs::copy(env.config.schemas_dir.join(name), schemas.join(name)).expect("copy");
    }
    let strict = std::fs::read_to_string(schemas.join("cards.schema.json")).expect("schema");
    let relaxed = strict.replace(r#"["id", "user_id", "#, r#"["id", "#);
    assert_ne!(strict, relaxed, "the test must really change the schema");
    std::fs::write(schemas.join("cards.schema.json"), relaxed).expect("write schema");

    let replay = env.run_etl(&["replay", "--type", "cards"]);
    assert!(replay.status.success());
    assert!(
        String::from_utf8_lossy(&replay.stdout).contains(&format!("moved {ownerless}")),
        "{}",
        String::from_utf8_lossy(&replay.stdout)
    );
    let out = env.drain_with_schemas(&schemas);
    assert!(out.status.success());
    assert_eq!(count(&env.config.failed("cards")), 0);
    assert_eq!(count(&env.inbox("cards")), 0);
    assert_eq!(env.dump(), relaxed_rule, "relaxed rule");
    assert!(env.scalar("SELECT count(*) FROM cards WHERE user_id IS NULL") > 0);
    assert_eq!(env.scalar("SELECT count(*) FROM events"), all.len() as i64);
}
