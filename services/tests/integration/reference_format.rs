//! Generated files are indistinguishable in layout from the reference producers' files.

use crate::common;

use common::*;
use services::{generate_backlog, CardEvent, Event, UserEvent};
use std::fs;
use std::path::Path;

#[test]
fn reference_samples_survive_a_round_trip_through_the_model_byte_for_byte() {
    let reference = reference_events_dir();
    let users = json_files(&reference.join("users"));
    let cards = json_files(&reference.join("cards"));
    assert!(
        !users.is_empty() && !cards.is_empty(),
        "no samples under {}",
        reference.display()
    );

    for path in &users {
        let event: UserEvent = parse_user(path);
        assert_eq!(
            String::from_utf8(event.to_json()).expect("UTF-8"),
            read_text(path),
            "{}",
            path.display()
        );
    }
    for path in &cards {
        let event: CardEvent = parse_card(path);
        assert_eq!(
            String::from_utf8(event.to_json()).expect("UTF-8"),
            read_text(path),
            "{}",
            path.display()
        );
    }
}

/// Skeleton of a reference file of the given kind (cards: with or without `user_id`).
fn reference_skeleton(kind: &str, with_user_id: Option<bool>) -> Vec<String> {
    let dir = reference_events_dir().join(kind);
    json_files(&dir)
        .into_iter()
        .map(|path| read_text(&path))
        .find(|text| with_user_id.is_none_or(|wanted| text.contains("\"user_id\"") == wanted))
        .map(|text| skeleton(&text))
        .unwrap_or_else(|| panic!("no reference {kind} sample with user_id={with_user_id:?}"))
}

fn assert_named_after_event_id(path: &Path, event: &impl Event) {
    assert_eq!(
        path.file_name().and_then(|name| name.to_str()),
        Some(format!("{}.json", event.metadata().event_id).as_str())
    );
}

#[test]
fn every_generated_file_parses_is_named_by_its_event_id_and_has_the_reference_layout() {
    let out = tempfile::tempdir().expect("temp dir");
    generate_backlog(out.path(), 50, 400, 11).expect("backlog");

    let user_skeleton = reference_skeleton("users", None);
    let users = json_files(&out.path().join("users"));
    assert_eq!(users.len(), 50);
    for path in &users {
        let text = read_text(path);
        assert!(
            text.is_ascii() && !text.ends_with('\n'),
            "{}",
            path.display()
        );
        assert_eq!(skeleton(&text), user_skeleton, "{}", path.display());
        let event = parse_user(path);
        assert_named_after_event_id(path, &event);
        assert!((0.0..1.0).contains(&event.payload.score));
        assert_eq!(
            event.payload.address.matches('\n').count(),
            1,
            "{:?}",
            event.payload.address
        );
    }

    let with_user = reference_skeleton("cards", Some(true));
    let without_user = reference_skeleton("cards", Some(false));
    let cards = json_files(&out.path().join("cards"));
    assert_eq!(cards.len(), 400);
    let mut seen_without_user = false;
    for path in &cards {
        let text = read_text(path);
        assert!(
            text.is_ascii() && !text.ends_with('\n'),
            "{}",
            path.display()
        );
        let event = parse_card(path);
        assert_named_after_event_id(path, &event);
        assert_eq!(event.metadata.event_at, event.payload.updated_at);
        let expected = if event.payload.user_id.is_some() {
            &with_user
        } else {
            seen_without_user = true;
            &without_user
        };
        assert_eq!(&skeleton(&text), expected, "{}", path.display());
    }
    assert!(
        seen_without_user,
        "400 card events should include a card without user_id"
    );
    assert!(dotfiles_under(out.path()).is_empty());
    assert_eq!(
        fs::read_dir(out.path()).expect("list").count(),
        2,
        "only users/ and cards/"
    );
}
