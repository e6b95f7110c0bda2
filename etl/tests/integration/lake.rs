//! The Parquet lake (`etl export`, and the export and raw retention inside `etl run`), read back
//! by independent readers (pyarrow and DuckDB, from PyPI) and compared with the warehouse row
//! for row; retention with a crash in the middle; old events replayed after their retirement.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// What pyarrow and DuckDB read from the lake at `dir` (see `lake/read_lake.py`).
fn read_lake(dir: &Path) -> Value {
    python_with(&[("pyarrow", "pyarrow"), ("duckdb", "duckdb")]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/integration/lake/read_lake.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the lake reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the reader prints JSON")
}

/// The raw zone as the warehouse holds it, keyed by event id, in the reader's representation.
fn raw_rows(env: &Env) -> BTreeMap<String, Value> {
    let out = testkit::pg::psql(
        &env.db.url,
        "SELECT coalesce(json_agg(t), '[]') FROM (
           SELECT event_id::text AS event_id, type, entity_id, event_at, payload::text AS payload,
                  source_file, (extract(epoch FROM ingested_at) * 1000000)::bigint AS ingested_at
             FROM events) t",
    )
    .expect("query runs");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("json");
    by_id(rows)
}

/// Rows keyed by their `event_id`; a second row with the same id fails the test.
fn by_id(rows: Vec<Value>) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for row in rows {
        let id = row["event_id"].as_str().expect("event_id").to_owned();
        assert!(
            map.insert(id.clone(), row).is_none(),
            "event {id} is in the raw zone twice"
        );
    }
    map
}

/// The lake's raw zone, keyed by event id, after checking each row sits in the partition of
/// its UTC ingestion date.
fn lake_raw(lake: &Value) -> BTreeMap<String, Value> {
    let rows = lake["tables"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rows = rows
        .into_iter()
        .map(|mut row| {
            let micros = row["ingested_at"].as_i64().expect("ingested_at µs");
            let date = chrono::DateTime::from_timestamp_micros(micros)
                .expect("a time")
                .date_naive()
                .to_string();
            let partition = row
                .as_object_mut()
                .and_then(|o| o.remove("date"))
                .expect("the date partition column");
            assert_eq!(
                partition.as_str().map(str::to_owned),
                Some(date),
                "a row in the wrong date partition"
            );
            row
        })
        .collect();
    by_id(rows)
}

/// A current table as the reader represents it: ISO timestamps, uuids as text.
fn table_rows(env: &Env, select: &str) -> Value {
    env.query_json(select)
}

const CARDS: &str = "SELECT id, user_id, created_by_name, created_at, updated_at, active, event_at,
                            event_id::text AS event_id FROM cards";
const USERS: &str =
    "SELECT id, name, address, job, score, event_at, event_id::text AS event_id FROM users";

/// Copies every event file of a backlog folder (`users/`, `cards/`) into the inbox.
fn copy_backlog(env: &Env, from: &Path) {
    for kind in TYPES {
        for file in event_files(&from.join(kind)) {
            let name = file.file_name().expect("name");
            std::fs::copy(&file, env.inbox(kind).join(name)).expect("copy");
        }
    }
}

fn drain(env: &Env) {
    let out = env.run_etl(&["run", "--drain"]);
    assert!(
        out.status.success(),
        "drain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn export(env: &Env, lake: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["export", "--format", "parquet", "--to"];
    let lake = lake.to_str().expect("utf-8 path");
    args.push(lake);
    args.extend_from_slice(extra);
    env.run_etl(&args)
}

/// Every file under `dir` whose name starts with a dot (an interrupted write's leftover).
fn dotfiles(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().starts_with('.') {
                found.push(entry.path());
            }
        }
    }
    found
}

/// Reason files (`*.error.json`) anywhere under `failed/`, with their text.
fn reasons(env: &Env) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![env.config.events_dir().join("failed")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().ends_with(".error.json") {
                found.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    found
}

#[test]
fn the_export_reads_back_row_for_row_and_each_raw_event_once() {
    let env = Env::new();
    copy_samples(&env);
    drain(&env);
    let lake = env.dir.path().join("lake");

    let out = export(&env, &lake, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = read_lake(&lake);
    // The curated zone, row for row, with its logical types.
    assert_eq!(read["tables"]["cards"], table_rows(&env, CARDS));
    assert_eq!(read["tables"]["users"], table_rows(&env, USERS));
    let types = &read["types"];
    assert_eq!(types["cards"]["id"], "int64");
    assert_eq!(types["cards"]["user_id"], "int64");
    assert_eq!(types["cards"]["active"], "bool");
    assert_eq!(types["cards"]["updated_at"], "timestamp[us]");
    assert_eq!(types["cards"]["event_id"], "string");
    assert_eq!(types["users"]["score"], "double");
    assert_eq!(types["events"]["entity_id"], "int64");
    assert_eq!(types["events"]["ingested_at"], "timestamp[us, tz=UTC]");
    assert_eq!(types["events"]["payload"], "string");
    // The raw zone, row for row.
    let warehouse = raw_rows(&env);
    assert!(warehouse.len() > 5, "the samples were loaded");
    assert_eq!(lake_raw(&read), warehouse);
    let active = env.scalar("SELECT count(*) FROM cards WHERE active");
    assert_eq!(read["duckdb"]["active_cards"], active);
    assert_eq!(read["duckdb"]["events"], warehouse.len());
    assert_eq!(read["duckdb"]["distinct_ids"], warehouse.len());

    // Again with nothing new: the snapshots are replaced, the raw zone gains no file.
    let files_before = read["files"]["events"].clone();
    let out = export(&env, &lake, &[]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 rows  in 0 new file(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let read = read_lake(&lake);
    assert_eq!(read["files"]["events"], files_before);
    assert_eq!(
        read["files"]["cards"],
        serde_json::json!(["snapshot.parquet"])
    );

    // New events: only they are added, and the lake still holds each event once.
    let more = env.dir.path().join("more");
    valid_backlog(&more, 20, 40, 7);
    copy_backlog(&env, &more);
    drain(&env);
    let out = export(&env, &lake, &[]);
    assert!(out.status.success());
    let read = read_lake(&lake);
    let warehouse = raw_rows(&env);
    assert_eq!(lake_raw(&read), warehouse);
    assert_eq!(read["tables"]["cards"], table_rows(&env, CARDS));
    assert!(
        read["files"]["events"].as_array().map_or(0, Vec::len)
            > files_before.as_array().map_or(0, Vec::len),
        "the new rows are in new files"
    );
    assert!(dotfiles(&lake).is_empty(), "{:?}", dotfiles(&lake));

    // Requests that would break the guarantees are refused with a reason and exit 2.
    let out = export(&env, &lake, &["--since", "2020-01-01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds the raw zone"));
    let out = export(&env, &lake, &["--type", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    // --type refreshes one table's snapshot and leaves the raw zone alone.
    let out = export(&env, &lake, &["--type", "cards"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("events"));
}

#[test]
fn retention_moves_old_raw_rows_to_the_lake_and_still_knows_their_ids() {
    let env = Env::new();
    let backlog = env.dir.path().join("backlog");
    let files = valid_backlog(&backlog, 100, 300, 11);
    copy_backlog(&env, &backlog);
    drain(&env);
    let tables = env.dump();
    // The cards' raw rows look 40 days old; the users' are recent.
    env.scalar("WITH u AS (UPDATE events SET ingested_at = ingested_at - interval '40 days' WHERE type = 'cards' RETURNING 1) SELECT count(*) FROM u");
    let old = env.scalar("SELECT count(*) FROM events WHERE type = 'cards'");
    let everything = raw_rows(&env);
    assert_eq!(everything.len(), files.len());

    let lake = env.dir.path().join("lake");
    let lake_dir = lake.to_str().expect("utf-8").to_owned();
    let vars = [
        ("ETL_LAKE_DIR", lake_dir.clone()),
        ("ETL_LAKE_EXPORT_INTERVAL_SECS", "1".to_owned()),
        ("ETL_RAW_RETENTION_DAYS", "30".to_owned()),
        ("ETL_RETIRED_IDS_DAYS", "90".to_owned()),
    ];
    let mut daemon = env.spawn_etl("run", &["run"], &vars);
    assert!(
        wait_until(Duration::from_secs(30), || env
            .scalar("SELECT count(*) FROM events WHERE type = 'cards'")
            == 0),
        "the old raw rows were not retired: {}",
        daemon.log_tail(20)
    );
    assert_eq!(env.scalar("SELECT count(*) FROM retired_events"), old);
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        everything.len() as i64 - old
    );
    let read = read_lake(&lake);
    assert_eq!(
        lake_raw(&read),
        everything,
        "the lake has every raw row, once"
    );
    assert_eq!(env.dump(), tables, "the current tables are untouched");

    // Old card files replayed: known ids, so no raw row and no second copy in the lake.
    let old_cards = event_files(&backlog.join("cards"));
    for file in &old_cards[..5] {
        std::fs::copy(
            file,
            env.inbox("cards").join(file.file_name().expect("name")),
        )
        .expect("copy");
    }
    assert!(
        wait_until(Duration::from_secs(20), || count(&env.inbox("cards")) == 0),
        "the replayed files were not processed"
    );
    // Two more passes, after the replayed files were processed.
    let passes = daemon.log_count("\"lake export\"");
    assert!(
        daemon.wait_for_log_count("\"lake export\"", passes + 2, Duration::from_secs(30)),
        "{}",
        daemon.log_tail(20)
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM events"),
        everything.len() as i64 - old
    );
    let read = read_lake(&lake);
    assert_eq!(lake_raw(&read), everything, "no second copy in the lake");
    assert_eq!(env.dump(), tables);

    // Their ids' own retention passes: the horizon moves up to the newest forgotten event...
    env.scalar("WITH u AS (UPDATE retired_events SET retired_at = now() - interval '100 days' RETURNING 1) SELECT count(*) FROM u");
    assert!(
        wait_until(Duration::from_secs(20), || env.scalar(
            "SELECT count(*) FROM raw_horizon WHERE forgotten_through IS NOT NULL"
        ) == 1),
        "the horizon did not move: {}",
        daemon.log_tail(20)
    );
    // ...the running decoders learn it (within their refresh)...
    assert!(daemon.wait_for_log("horizon moved", Duration::from_secs(20)));
    // ...and an event that old is refused with its reason.
    let file = &old_cards[10];
    std::fs::copy(
        file,
        env.inbox("cards").join(file.file_name().expect("name")),
    )
    .expect("copy");
    assert!(
        wait_until(Duration::from_secs(30), || reasons(&env)
            .iter()
            .any(|r| r.contains("beyond_horizon"))),
        "the old event was not refused: {}",
        daemon
            .log()
            .lines()
            .filter(|l| !l.contains("lake export"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Once the horizon has been announced long enough, the ids it covers are deleted.
    env.scalar("WITH u AS (UPDATE raw_horizon SET set_at = now() - interval '1 hour' RETURNING 1) SELECT count(*) FROM u");
    assert!(
        wait_until(Duration::from_secs(20), || env
            .scalar("SELECT count(*) FROM retired_events")
            == 0),
        "the retired ids were not forgotten: {}",
        daemon.log_tail(20)
    );
    assert_eq!(lake_raw(&read_lake(&lake)), everything);

    daemon.signal(libc::SIGTERM);
    let status = daemon.exit_within(Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", daemon.log_tail(10));
    assert!(dotfiles(&lake).is_empty(), "{:?}", dotfiles(&lake));
}

#[test]
fn a_crash_in_the_middle_of_a_retention_pass_loses_and_duplicates_nothing() {
    let env = Env::new();
    let backlog = env.dir.path().join("backlog");
    let files = valid_backlog(&backlog, 2000, 6000, 5);
    copy_backlog(&env, &backlog);
    drain(&env);
    env.scalar("WITH u AS (UPDATE events SET ingested_at = ingested_at - interval '40 days' RETURNING 1) SELECT count(*) FROM u");
    let everything = raw_rows(&env);
    assert_eq!(everything.len(), files.len());

    let lake = env.dir.path().join("lake");
    let vars = [
        ("ETL_LAKE_DIR", lake.to_str().expect("utf-8").to_owned()),
        ("ETL_LAKE_EXPORT_INTERVAL_SECS", "1".to_owned()),
        ("ETL_RAW_RETENTION_DAYS", "30".to_owned()),
    ];
    // More rows than one retirement batch (5,000), so a pass has a step between two batches.
    assert!(everything.len() > 5_000, "{} rows", everything.len());
    // The daemon SIGKILLs itself at each named step of a pass (see `etl/src/faults.rs`), in
    // the order a pass reaches them: rows written to a temporary Parquet file; a file
    // published, its watermark not yet moved; export done, nothing retired; one batch
    // retired, the next not. Named points rather than sleeps: a pass takes a few hundred
    // milliseconds, so a timer lands wherever the machine's speed puts it.
    let steps = [
        "lake.export.written:kill:1",
        "lake.export.published:kill:1",
        "lake.retire:kill:1",
        "lake.retire:kill:2",
    ];
    let mut cut_short = 0;
    for (i, step) in steps.into_iter().enumerate() {
        let armed = [&vars[..], &[("FAULT_POINTS", step.to_owned())]].concat();
        let mut daemon = env.spawn_etl(&format!("killed-{i}"), &["run"], &armed);
        daemon.dies_at(step, Duration::from_secs(60));
        let retired = env.scalar("SELECT count(*) FROM retired_events");
        if retired < everything.len() as i64 && !daemon.log().contains("lake export") {
            cut_short += 1;
        }
        // At every step: each raw row is in the warehouse, or retired and then in the lake.
        let in_warehouse = env.scalar("SELECT count(*) FROM events");
        assert_eq!(in_warehouse + retired, everything.len() as i64);
        // A kill before the first retirement retires nothing; the one after it, one batch.
        let expected = if i < 3 { 0 } else { 5_000 };
        assert_eq!(retired, expected, "{step}");
    }
    assert_eq!(cut_short, steps.len(), "every kill landed inside a pass");
    assert!(cut_short >= 1, "no kill landed before a pass ended");

    let mut daemon = env.spawn_etl("final", &["run"], &vars);
    assert!(
        wait_until(Duration::from_secs(60), || env
            .scalar("SELECT count(*) FROM events")
            == 0),
        "the retention did not finish: {}",
        daemon.log_tail(20)
    );
    // A whole pass of its own, which cleans what a killed one left.
    assert!(daemon.wait_for_log("lake export", Duration::from_secs(30)));
    assert!(dotfiles(&lake).is_empty(), "{:?}", dotfiles(&lake));
    daemon.signal(libc::SIGTERM);
    let status = daemon.exit_within(Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", daemon.log_tail(10));
    let read = read_lake(&lake);
    assert_eq!(lake_raw(&read), everything, "every row once, none lost");
    assert_eq!(
        env.scalar("SELECT count(*) FROM retired_events"),
        everything.len() as i64
    );
}
