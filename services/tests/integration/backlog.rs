//! `generate_backlog`: reproducible, with the producers' mix and card semantics.

use crate::common;

use common::*;
use services::generate_backlog;
use std::collections::HashMap;
use std::path::Path;

/// Every user and card file under `root` as (relative path, bytes), sorted.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    common::snapshot(root, &["users", "cards"])
}

#[test]
fn the_same_seed_gives_byte_identical_backlogs_and_another_seed_does_not() {
    let [first, second, other] = [(); 3].map(|()| tempfile::tempdir().expect("temp dir"));
    let summary = generate_backlog(first.path(), 100, 1_000, 42).expect("first");
    assert_eq!(
        generate_backlog(second.path(), 100, 1_000, 42).expect("second"),
        summary
    );
    generate_backlog(other.path(), 100, 1_000, 43).expect("other seed");

    let first = snapshot(first.path());
    assert_eq!(first.len(), 1_100);
    assert!(
        first == snapshot(second.path()),
        "same seed, different files"
    );
    let other = snapshot(other.path());
    assert_ne!(
        first.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        other.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
}

#[test]
fn card_mix_and_lifecycle_over_twenty_thousand_events() {
    let out = tempfile::tempdir().expect("temp dir");
    let summary = generate_backlog(out.path(), 0, 20_000, 7).expect("backlog");

    // Rebuild each card's history from the files alone, not from the generator's own account.
    let mut versions: HashMap<u64, Vec<services::CardPayload>> = HashMap::new();
    for path in json_files(&out.path().join("cards")) {
        let card = parse_card(&path).payload;
        versions.entry(card.id).or_default().push(card);
    }
    let events: usize = versions.values().map(Vec::len).sum();
    assert_eq!(events, 20_000, "one file per event, no event id reused");

    let created = versions.len();
    let created_without_user = versions
        .values()
        .filter(|history| history[0].user_id.is_none())
        .count();
    let created_with_user = created - created_without_user;
    let share = |count: usize| count as f64 / events as f64;
    assert!(
        (share(created_with_user) - 0.40).abs() < 0.02,
        "new with user: {created_with_user}"
    );
    assert!(
        (share(created_without_user) - 0.05).abs() < 0.01,
        "new without user: {created_without_user}"
    );
    assert_eq!(summary.new_cards_with_user, created_with_user);
    assert_eq!(summary.new_cards_without_user, created_without_user);
    assert_eq!(summary.card_modifications, events - created);

    // Ids come from a counter starting at 0.
    let mut ids: Vec<u64> = versions.keys().copied().collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..created as u64).collect::<Vec<_>>());

    for (id, history) in &versions {
        let first = &history[0];
        for version in history {
            // Owner (or its absence), creator and creation time never change; in particular a card
            // created without user_id never gets one later.
            assert_eq!(version.user_id, first.user_id, "card {id}");
            assert_eq!(version.created_by_name, first.created_by_name, "card {id}");
            assert_eq!(version.created_at, first.created_at, "card {id}");
            assert!(version.updated_at >= version.created_at, "card {id}");
            assert!(version.user_id.is_none_or(|user| user <= 1000), "card {id}");
        }
    }
    assert!(
        versions
            .values()
            .any(|history| history.len() > 1 && history[0].user_id.is_none()),
        "some cards without user_id are modified, so the invariant above was exercised"
    );
    assert!(
        dotfiles_under(out.path()).is_empty(),
        "atomic writes leave no dotfile behind"
    );
}

#[test]
fn simulated_clock_advances_one_second_per_cycle_of_five_to_ten_events() {
    let out = tempfile::tempdir().expect("temp dir");
    let summary = generate_backlog(out.path(), 600, 3_000, 3).expect("backlog");
    let mut per_second: HashMap<_, usize> = HashMap::new();
    for path in json_files(&out.path().join("cards")) {
        *per_second
            .entry(parse_card(&path).metadata.event_at)
            .or_default() += 1;
    }
    let mut seconds: Vec<_> = per_second.keys().copied().collect();
    seconds.sort();
    assert_eq!(
        seconds.first().map(|at| at.to_string()).as_deref(),
        Some("2024-05-01 12:00:00")
    );
    assert_eq!(seconds.last().copied(), summary.last_event_at);
    for pair in seconds.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            1,
            "no gaps in the simulated clock"
        );
    }
    let last = seconds.last().expect("some seconds");
    for (at, count) in &per_second {
        assert!(
            at == last || (5..=10).contains(count),
            "{count} events at {at}"
        );
    }

    let mut user_times: Vec<_> = json_files(&out.path().join("users"))
        .iter()
        .map(|path| parse_user(path).metadata.event_at)
        .collect();
    user_times.sort();
    user_times.dedup();
    assert_eq!(
        user_times.len(),
        3,
        "600 users at 250 per second span three seconds"
    );
}
