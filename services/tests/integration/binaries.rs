//! The `users`, `cards` and `loadgen` binaries, run as real processes.

use crate::common;

use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("binary starts");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn cards(inbox: &Path, state: &Path, seed: &str, max_events: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cards"));
    command
        .arg("--events-dir")
        .arg(inbox)
        .arg("--state-dir")
        .arg(state);
    command.args([
        "--seed",
        seed,
        "--max-events",
        max_events,
        "--cycle-ms",
        "0-2",
    ]);
    command
}

fn card_ids(files: &[std::path::PathBuf]) -> BTreeSet<u64> {
    files
        .iter()
        .map(|path| parse_card(path).payload.id)
        .collect()
}

#[test]
fn cards_continues_the_id_counter_across_restarts() {
    let root = tempfile::tempdir().expect("temp dir");
    let inbox = root.path().join("inbox");
    let state = root.path().join("state");

    run(&mut cards(&inbox, &state, "5", "30"));
    let first_run = json_files(&inbox.join("cards"));
    assert_eq!(first_run.len(), 30);
    let first_ids = card_ids(&first_run);
    let counter =
        fs::read_to_string(state.join("cards_id_counter")).expect("counter file in state dir");
    let next: u64 = counter.trim().parse().expect("counter is a number");
    assert_eq!(
        Some(next - 1),
        first_ids.last().copied(),
        "counter holds the next id"
    );
    assert!(
        !inbox.join("cards").join("cards_id_counter").exists(),
        "counter stays out of the inbox"
    );

    // Same seed on purpose: the restart must neither reuse ids nor replay event ids.
    run(&mut cards(&inbox, &state, "5", "30"));
    let all = json_files(&inbox.join("cards"));
    assert_eq!(all.len(), 60, "no file of the first run was overwritten");
    let second_ids: BTreeSet<u64> = card_ids(&all).difference(&first_ids).copied().collect();
    assert_eq!(second_ids.first().copied(), Some(next));
    let second_run: Vec<_> = all
        .into_iter()
        .filter(|path| !first_run.contains(path))
        .collect();
    assert!(
        card_ids(&second_run).iter().all(|id| *id >= next),
        "a restart only modifies its own cards"
    );
    assert!(
        dotfiles_under(root.path()).is_empty(),
        "atomic mode leaves no dotfile"
    );
}

#[test]
fn cards_in_place_writes_complete_files() {
    let root = tempfile::tempdir().expect("temp dir");
    let inbox = root.path().join("inbox");
    run(cards(&inbox, &root.path().join("state"), "9", "12").arg("--in-place"));
    let files = json_files(&inbox.join("cards"));
    assert_eq!(files.len(), 12);
    for path in &files {
        let event = parse_card(path);
        assert_eq!(event.metadata.event_at, event.payload.updated_at);
    }
}

#[test]
fn users_once_writes_every_user_once_and_exits() {
    let root = tempfile::tempdir().expect("temp dir");
    run(Command::new(env!("CARGO_BIN_EXE_users"))
        .arg("--events-dir")
        .arg(root.path())
        .args(["--seed", "1", "--count", "25", "--once"]));
    let files = json_files(&root.path().join("users"));
    let ids: BTreeSet<u64> = files
        .iter()
        .map(|path| parse_user(path).payload.id)
        .collect();
    assert_eq!(files.len(), 25);
    assert_eq!(ids, (0..25).collect());
}

/// Waits until `dir` holds `count` event files, failing after a generous timeout.
fn wait_for_files(dir: &Path, count: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.exists() || json_files(dir).len() < count {
        if let Some(status) = child.try_wait().expect("poll child") {
            panic!("service exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {count} files in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM and expects a clean exit soon after.
fn terminate(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            assert!(status.success(), "exit after SIGTERM: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("service ignored SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn users_idles_after_writing_and_stops_cleanly_on_sigterm() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_users"))
        .arg("--events-dir")
        .arg(root.path())
        .args(["--count", "10"])
        .stderr(Stdio::null())
        .spawn()
        .expect("users starts");
    wait_for_files(&root.path().join("users"), 10, &mut child);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().expect("poll").is_none(),
        "users keeps running like a service"
    );
    terminate(&mut child);
}

#[test]
fn cards_runs_until_sigterm() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cards"))
        .arg("--events-dir")
        .arg(root.path().join("inbox"))
        .arg("--state-dir")
        .arg(root.path().join("state"))
        .args(["--cycle-ms", "50-100"])
        .stderr(Stdio::null())
        .spawn()
        .expect("cards starts");
    wait_for_files(&root.path().join("inbox/cards"), 15, &mut child);
    terminate(&mut child);
    assert!(dotfiles_under(root.path()).is_empty());
}

#[test]
fn loadgen_prints_a_one_line_summary_and_writes_the_backlog() {
    let root = tempfile::tempdir().expect("temp dir");
    let output = run(Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--users",
            "20",
            "--card-events",
            "70",
            "--seed",
            "4",
            "--out",
        ])
        .arg(root.path()));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("20 user events, 70 card events"),
        "{stdout}"
    );
    assert!(!stdout.contains("transaction"), "{stdout}");
    assert_eq!(json_files(&root.path().join("users")).len(), 20);
    assert_eq!(json_files(&root.path().join("cards")).len(), 70);
    assert!(!root.path().join("transactions").exists());
}

#[test]
fn bad_arguments_are_rejected_with_a_usage_error() {
    for args in [
        &["--cycle-ms", "3000-1000"][..],
        &["--max-events", "many"][..],
        &["--transactions-per-cycle", "-1"][..],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_cards"))
            .args(["--events-dir", "unused"])
            .args(args)
            .output()
            .expect("cards starts");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn cards_with_transactions_per_cycle_writes_transactions_for_known_cards() {
    for in_place in [false, true] {
        let root = tempfile::tempdir().expect("temp dir");
        let inbox = root.path().join("inbox");
        let mut command = cards(&inbox, &root.path().join("state"), "6", "30");
        command.args(["--transactions-per-cycle", "4"]);
        if in_place {
            command.arg("--in-place");
        }
        run(&mut command);

        let card_files = json_files(&inbox.join("cards"));
        assert_eq!(card_files.len(), 30, "--max-events counts card events");
        let known_cards = card_ids(&card_files);
        let transactions = json_files(&inbox.join("transactions"));
        // Four per cycle, and 30 card events take 3 to 6 cycles of 5-10.
        assert!(
            transactions.len().is_multiple_of(4) && (12..=24).contains(&transactions.len()),
            "{} transaction files",
            transactions.len()
        );
        for path in &transactions {
            let event = parse_transaction(path);
            assert_eq!(event.metadata.event_at, event.payload.updated_at);
            assert!(
                known_cards.contains(&event.payload.card_id),
                "card {} was never written",
                event.payload.card_id
            );
        }
        assert!(
            dotfiles_under(root.path()).is_empty(),
            "in_place={in_place} left a dotfile"
        );
    }
}

#[test]
fn cards_without_transactions_per_cycle_writes_no_transactions() {
    let root = tempfile::tempdir().expect("temp dir");
    let inbox = root.path().join("inbox");
    run(&mut cards(&inbox, &root.path().join("state"), "6", "12"));
    assert!(!inbox.join("transactions").exists());
}

#[test]
fn loadgen_transaction_events_adds_transactions_to_the_backlog_and_the_summary() {
    let root = tempfile::tempdir().expect("temp dir");
    let output = run(Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--users",
            "20",
            "--card-events",
            "70",
            "--transaction-events",
            "90",
            "--seed",
            "4",
            "--out",
        ])
        .arg(root.path()));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("20 user events, 70 card events")
            && stdout.contains("90 transaction events"),
        "{stdout}"
    );
    assert_eq!(json_files(&root.path().join("users")).len(), 20);
    assert_eq!(json_files(&root.path().join("cards")).len(), 70);
    assert_eq!(json_files(&root.path().join("transactions")).len(), 90);
}
