//! The transactions example's events, as `generate_backlog_with` writes them: valid against the
//! example's schema, reproducible, independent of the users and cards, and versioned by
//! `updated_at`.

use crate::common;

use common::*;
use serde_json::Value;
use services::{
    generate_backlog, generate_backlog_with, BacklogSpec, BacklogSummary, TransactionPayload,
    TransactionStatus,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn example_schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/transactions/transactions.schema.json")
}

/// The example schema compiled as the etl crate compiles schemas (draft 2020-12).
fn example_validator() -> jsonschema::Validator {
    let path = example_schema_path();
    let schema: Value = serde_json::from_str(&read_text(&path))
        .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()));
    jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|err| panic!("{} does not compile: {err}", path.display()))
}

fn backlog(out: &Path, card_events: usize, transaction_events: usize, seed: u64) -> BacklogSummary {
    generate_backlog_with(
        out,
        &BacklogSpec {
            users: 50,
            card_events,
            transaction_events,
            seed,
        },
    )
    .expect("backlog")
}

#[test]
fn every_generated_transaction_validates_against_the_example_schema() {
    let out = tempfile::tempdir().expect("temp dir");
    let summary = backlog(out.path(), 300, 3_000, 8);
    let validator = example_validator();
    let cards_created = (summary.new_cards_with_user + summary.new_cards_without_user) as u64;

    let files = json_files(&out.path().join("transactions"));
    assert_eq!(files.len(), 3_000);
    for path in &files {
        let text = read_text(path);
        let value: Value = serde_json::from_str(&text).expect("JSON");
        if let Err(err) = validator.validate(&value) {
            panic!("{} is invalid: {err}\n{text}", path.display());
        }
        // The schema cannot say "at most two decimals" reliably (multipleOf 0.01 on binary
        // floats), so check the number's text itself.
        let amount = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("\"amount\": "))
            .expect("an amount line");
        let amount = amount.trim_end_matches(',');
        assert!(
            amount
                .split_once('.')
                .is_none_or(|(_, cents)| cents.len() <= 2),
            "{amount} in {}",
            path.display()
        );
        let event = parse_transaction(path);
        assert_eq!(
            path.file_name().and_then(|name| name.to_str()),
            Some(format!("{}.json", event.metadata.event_id).as_str())
        );
        assert!(
            event.payload.card_id < cards_created,
            "transactions use the cards created so far"
        );
        assert!((50..=50_000).contains(&event.payload.amount.cents()));
    }
    assert!(
        dotfiles_under(out.path()).is_empty(),
        "atomic writes leave no dotfile behind"
    );
}

#[test]
fn the_example_schema_refuses_what_the_generator_must_never_write() {
    let out = tempfile::tempdir().expect("temp dir");
    backlog(out.path(), 20, 1, 1);
    let path = &json_files(&out.path().join("transactions"))[0];
    let valid: Value = serde_json::from_str(&read_text(path)).expect("JSON");
    let validator = example_validator();
    assert!(validator.is_valid(&valid));

    for (field, bad) in [
        ("status", Value::from("refunded")),
        ("currency", Value::from("eur")),
        ("currency", Value::from("EURO")),
        ("amount", Value::from(-1)),
        ("amount", Value::from("12.50")),
        ("merchant", Value::from("")),
        ("merchant", Value::from("x".repeat(201))),
        ("card_id", Value::from(-3)),
        ("updated_at", Value::from("2024-05-01T12:00:00")),
    ] {
        let mut event = valid.clone();
        event["payload"][field] = bad.clone();
        assert!(!validator.is_valid(&event), "{field} = {bad}");
    }
    let mut event = valid.clone();
    event["metadata"]["type"] = Value::from("card");
    assert!(
        !validator.is_valid(&event),
        "metadata.type must be transaction"
    );
    let mut event = valid;
    if let Some(payload) = event["payload"].as_object_mut() {
        payload.remove("amount");
    }
    assert!(!validator.is_valid(&event), "amount is required");
}

#[test]
fn the_same_seed_gives_byte_identical_transactions_and_another_seed_does_not() {
    let [first, second, other] = [(); 3].map(|()| tempfile::tempdir().expect("temp dir"));
    let summary = backlog(first.path(), 500, 2_000, 42);
    assert_eq!(backlog(second.path(), 500, 2_000, 42), summary);
    backlog(other.path(), 500, 2_000, 43);

    let first = snapshot(first.path(), &["transactions"]);
    assert_eq!(first.len(), 2_000);
    assert!(
        first == snapshot(second.path(), &["transactions"]),
        "same seed, different files"
    );
    assert_ne!(first, snapshot(other.path(), &["transactions"]));
}

#[test]
fn transactions_leave_the_users_and_cards_exactly_as_generate_backlog_writes_them() {
    let [plain, none, some] = [(); 3].map(|()| tempfile::tempdir().expect("temp dir"));
    let plain_summary = generate_backlog(plain.path(), 120, 1_500, 9).expect("plain");
    assert_eq!(
        generate_backlog_with(
            none.path(),
            &BacklogSpec {
                users: 120,
                card_events: 1_500,
                transaction_events: 0,
                seed: 9,
            },
        )
        .expect("no transactions"),
        plain_summary
    );
    let with_summary = generate_backlog_with(
        some.path(),
        &BacklogSpec {
            users: 120,
            card_events: 1_500,
            transaction_events: 4_000,
            seed: 9,
        },
    )
    .expect("with transactions");

    let kinds = ["users", "cards", "transactions"];
    let plain_files = snapshot(plain.path(), &kinds);
    assert_eq!(plain_files.len(), 1_620);
    assert!(
        plain_files == snapshot(none.path(), &kinds),
        "0 transaction events change the output"
    );
    assert!(!none.path().join("transactions").exists());
    assert_eq!(
        plain_summary.to_string(),
        summary_line_before_transactions(&plain_summary),
        "a backlog without transactions is summarised as before"
    );

    assert!(
        plain_files == snapshot(some.path(), &["users", "cards"]),
        "transactions changed the users or cards"
    );
    assert_eq!(
        (
            with_summary.new_cards_with_user,
            with_summary.new_cards_without_user,
            with_summary.card_modifications
        ),
        (
            plain_summary.new_cards_with_user,
            plain_summary.new_cards_without_user,
            plain_summary.card_modifications
        )
    );
    assert!(
        with_summary.to_string().contains(&format!(
            ", 4000 transaction events ({} new, {} settled, {} declined)",
            with_summary.new_transactions,
            with_summary.settled_transactions,
            with_summary.declined_transactions
        )),
        "{with_summary}"
    );
}

/// The summary line as it read before transactions existed.
fn summary_line_before_transactions(summary: &BacklogSummary) -> String {
    let clock = summary.last_event_at.map_or(String::new(), |at| {
        format!(", simulated clock 2024-05-01 12:00:00 .. {at}")
    });
    format!(
        "{} user events, {} card events ({} new with user, {} new without user, {} modifications){clock}",
        summary.users,
        summary.card_events,
        summary.new_cards_with_user,
        summary.new_cards_without_user,
        summary.card_modifications
    )
}

#[test]
fn a_status_change_resends_the_whole_transaction_with_a_newer_updated_at() {
    let out = tempfile::tempdir().expect("temp dir");
    let summary = backlog(out.path(), 2_000, 20_000, 7);

    // Rebuild each transaction's history from the files alone.
    let mut versions: HashMap<u64, Vec<TransactionPayload>> = HashMap::new();
    for path in json_files(&out.path().join("transactions")) {
        let event = parse_transaction(&path);
        assert_eq!(event.metadata.event_at, event.payload.updated_at);
        versions
            .entry(event.payload.id)
            .or_default()
            .push(event.payload);
    }
    let events: usize = versions.values().map(Vec::len).sum();
    assert_eq!(events, 20_000, "one file per event, no event id reused");

    let created = versions.len();
    let mut ids: Vec<u64> = versions.keys().copied().collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..created as u64).collect::<Vec<_>>(),
        "ids count up from 0"
    );
    assert_eq!(summary.new_transactions, created);
    assert!(
        (created as f64 / events as f64 - 0.60).abs() < 0.02,
        "new: {created}"
    );

    let (mut settled, mut declined) = (0, 0);
    for (id, history) in &mut versions {
        history.sort_by_key(|version| version.updated_at);
        let (pending, changes) = history.split_first().expect("at least one version");
        assert_eq!(
            pending.status,
            TransactionStatus::Pending,
            "transaction {id}"
        );
        assert!(changes.len() <= 1, "transaction {id} changed twice");
        for change in changes {
            match change.status {
                TransactionStatus::Settled => settled += 1,
                TransactionStatus::Declined => declined += 1,
                TransactionStatus::Pending => panic!("transaction {id} re-sent as pending"),
            }
            assert!(
                change.updated_at > pending.updated_at,
                "transaction {id}: {change:?} is not newer than {pending:?}"
            );
            let unchanged = |version: &TransactionPayload| {
                (
                    version.card_id,
                    version.amount,
                    version.currency.clone(),
                    version.merchant.clone(),
                )
            };
            assert_eq!(unchanged(change), unchanged(pending), "transaction {id}");
        }
    }
    assert_eq!(
        (settled, declined),
        (summary.settled_transactions, summary.declined_transactions)
    );
    let settled_share = settled as f64 / (settled + declined) as f64;
    assert!(
        (settled_share - 0.85).abs() < 0.02,
        "settled share {settled_share}"
    );
    let currencies: std::collections::BTreeSet<_> = versions
        .values()
        .map(|history| history[0].currency.as_str())
        .collect();
    assert_eq!(
        currencies.into_iter().collect::<Vec<_>>(),
        ["CHF", "EUR", "GBP", "SEK", "USD"]
    );
}
