//! The core contract: a backlog drained into the warehouse equals the latest version of every
//! entity, whatever the order, the worker count or duplicates; bad files go to failed/ with a
//! reason; other files in the inbox are left alone.

use crate::common;

use std::fs;

use common::{count, event_files, feed_in_order, oracle, ownerless_cards, Env};
use rand::seq::SliceRandom;
use rand::SeedableRng;

#[test]
fn drain_over_a_backlog_leaves_the_latest_version_of_every_entity() {
    let env = Env::new();
    let inbox = env.config.events_dir().join("inbox");
    services::generate_backlog(&inbox, 1_000, 20_000, 7).expect("backlog");
    // A few invalid files among the valid ones, and the producer's counter file.
    fs::write(env.inbox("cards").join("broken.json"), "{\"payload\": ").expect("write");
    fs::write(env.inbox("users").join("array.json"), "[1, 2]").expect("write");
    fs::write(env.inbox("cards").join("__id_counter"), "57").expect("write");
    let mut all = event_files(&env.inbox("users"));
    all.extend(event_files(&env.inbox("cards")));
    let expected = oracle(&all);
    // The generator, like the reference producer, emits some cards without an owner.
    let ownerless = ownerless_cards(&all);
    assert!(ownerless > 100, "ownerless cards generated: {ownerless}");

    let output = env.run_etl(&["run", "--drain"]);
    assert!(
        output.status.success(),
        "etl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    assert_eq!(env.dump(), expected, "warehouse differs from the oracle");
    assert_eq!(env.scalar("SELECT count(*) FROM users"), 1_000);
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        21_000 - ownerless as i64
    );
    for kind in common::TYPES {
        assert_eq!(count(&env.inbox(kind)), 0, "{kind} inbox not empty");
    }
    assert_eq!(count(&env.config.done("users")), 1_000);
    assert_eq!(count(&env.config.done("cards")), 20_000 - ownerless);
    assert_eq!(count(&env.config.failed("cards")), 1 + ownerless);
    assert_eq!(count(&env.config.failed("users")), 1);
    let counter = fs::read_to_string(env.inbox("cards").join("__id_counter")).expect("left alone");
    assert_eq!(counter, "57");
}

#[test]
fn the_reference_samples_load_and_the_counter_file_stays() {
    let env = Env::new();
    common::copy_samples(&env);
    let samples: Vec<_> = common::TYPES
        .iter()
        .flat_map(|k| event_files(&env.inbox(k)))
        .collect();
    let expected = oracle(&samples);

    let output = env.run_etl(&["run", "--drain"]);
    assert!(output.status.success());
    assert_eq!(env.dump(), expected);
    // Card 15 has no user_id in the samples: both of its versions are the reference's 'bad'
    // events, rejected with a reason that names the missing field.
    assert_eq!(env.scalar("SELECT count(*) FROM cards WHERE id = 15"), 0);
    assert_eq!(env.scalar("SELECT count(*) FROM cards"), 5);
    assert!(env.inbox("cards").join("__id_counter").exists());
    assert_eq!(count(&env.config.done("cards")), 6);
    assert_eq!(count(&env.config.done("users")), 3);
    let failed = event_files(&env.config.failed("cards"));
    assert_eq!(failed.len(), 2);
    for file in failed {
        let reason_file = file.with_file_name(format!(
            "{}.error.json",
            file.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
        ));
        let reason: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&reason_file).expect("reason file"))
                .expect("reason is JSON");
        assert_eq!(reason["code"], "schema", "{reason}");
        assert!(
            reason["reason"].as_str().unwrap_or("").contains("user_id"),
            "{reason}"
        );
    }
    let stderr = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stderr.lines().filter(|l| l.contains(" rejected")).count(),
        2,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_order_and_worker_count_do_not_change_the_tables() {
    let source = tempfile::tempdir().expect("tmp");
    services::generate_backlog(source.path(), 200, 3_000, 11).expect("backlog");
    let mut files = event_files(&source.path().join("users"));
    files.extend(event_files(&source.path().join("cards")));
    let expected = oracle(&files);

    let mut dumps = Vec::new();
    for (seed, workers, batch_size) in [(1u64, 1usize, 1000usize), (2, 4, 7), (3, 4, 1000)] {
        let mut order = files.clone();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let env = Env::new();
        let config = etl::config::Config {
            workers,
            batch_size,
            ..env.config.clone()
        };
        feed_in_order(&env, &order, 500, config).await;
        dumps.push(env.dump());
    }
    for dump in &dumps {
        assert_eq!(*dump, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_event_changes_nothing() {
    let env = Env::new();
    let source = tempfile::tempdir().expect("tmp");
    services::generate_backlog(source.path(), 50, 500, 3).expect("backlog");
    let files: Vec<_> = ["users", "cards"]
        .iter()
        .flat_map(|k| event_files(&source.path().join(k)))
        .collect();
    feed_in_order(&env, &files, files.len(), env.config.clone()).await;
    let before = env.dump();
    let events_before = env.scalar("SELECT count(*) FROM events");

    // Every file again (same names, same contents), then a copy under another name.
    feed_in_order(&env, &files, 100, env.config.clone()).await;
    let card = &event_files(&source.path().join("cards"))[0];
    fs::copy(card, env.inbox("cards").join("copy-of-a-card.json")).expect("copy");
    let summary = env.drain().await;

    assert_eq!(env.dump(), before);
    assert_eq!(env.scalar("SELECT count(*) FROM events"), events_before);
    assert_eq!(summary.stats.applied, 0);
    assert_eq!(summary.stats.stale, 1);
    assert!(common::finished(&env.config.done("cards"), "copy-of-a-card.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_version_never_overwrites_a_newer_one() {
    let env = Env::new();
    let card = |event_id: &str, updated_at: &str, active: bool| {
        format!(
            r#"{{"payload": {{"id": 1, "user_id": 2, "created_by_name": "A", "updated_at": "{updated_at}",
            "created_at": "2024-05-01 12:00:00", "active": {active}}},
            "metadata": {{"type": "card", "event_at": "{updated_at}", "event_id": "{event_id}"}}}}"#
        )
    };
    let newer = card(
        "00000000-0000-4000-8000-000000000002",
        "2024-05-01 12:00:09",
        false,
    );
    let older = card(
        "00000000-0000-4000-8000-000000000001",
        "2024-05-01 12:00:05",
        true,
    );
    fs::write(env.inbox("cards").join("newer.json"), newer).expect("write");
    env.drain().await;
    fs::write(env.inbox("cards").join("older.json"), older).expect("write");
    let summary = env.drain().await;

    assert_eq!(summary.stats.stale, 1);
    assert_eq!(
        env.scalar("SELECT count(*) FROM cards WHERE id = 1 AND NOT active"),
        1
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        2,
        "both versions are in the raw zone"
    );
}

/// The pipeline in follow mode, in this process, stopped through its handle: a file written
/// after it started is committed and moved to `done/` before the stop returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_pipeline_takes_new_files_and_stops_on_its_handle() {
    let env = Env::new();
    let running = env.follow();
    let user = r#"{"metadata": {"type": "user", "event_at": "2024-05-01 12:00:03",
        "event_id": "6f1c1c4e-7a53-4b8e-9d3a-1f0e9b2c3d4e"},
        "payload": {"id": 17, "name": "N", "address": "A", "job": "J", "score": 0.5}}"#;
    // Written atomically (a dotfile renamed in), as producers do.
    let tmp = env.inbox("users").join(".u17.json.tmp");
    fs::write(&tmp, user).expect("write");
    fs::rename(&tmp, env.inbox("users").join("u17.json")).expect("rename");
    let done = common::finished(&env.config.done("users"), "u17.json");
    let moved = tokio::task::spawn_blocking(move || {
        common::wait_until(std::time::Duration::from_secs(30), || done.exists())
    })
    .await
    .expect("wait");
    let summary = running.shutdown().await.expect("stops");

    assert!(moved, "the new file was not moved to done/");
    assert!(summary.graceful);
    assert_eq!((summary.stats.done, summary.stats.applied), (1, 1));
    assert_eq!(env.scalar("SELECT count(*) FROM users WHERE id = 17"), 1);
}
