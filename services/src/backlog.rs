//! A reproducible backlog of event files for load tests and benchmarks, written fast.
//!
//! It is the two services' output compressed in time: a simulated clock instead of the wall clock
//! and no pauses between cycles. Events are written as they are generated, so memory holds only the
//! card cache (bounded by the number of cards) and the capped set of pending transactions, not the
//! backlog: a million events are fine.

use crate::event::{EventKind, TIMESTAMP_FORMAT};
use crate::generate::{
    CardChange, CardGenerator, TransactionChange, TransactionGenerator, UserGenerator,
};
use crate::writer::{EventWriter, WriteMode};
use anyhow::Context;
use chrono::{Duration, NaiveDateTime};
use std::fmt;
use std::path::Path;

/// The simulated clock's start: fixed so that a seed reproduces the files byte for byte.
pub const BACKLOG_START: &str = "2024-05-01 12:00:00";
/// User events per simulated second ("spread over the first seconds", as the users service's
/// burst at start-up would be).
pub const USERS_PER_SECOND: u64 = 250;

/// What to put into a backlog; [`generate_backlog_with`] writes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BacklogSpec {
    /// User events, for user ids `0..users`.
    pub users: usize,
    pub card_events: usize,
    /// Transaction events (the transactions example); 0 writes no `transactions/` directory.
    pub transaction_events: usize,
    /// The same seed gives byte-identical files.
    pub seed: u64,
}

/// What [`generate_backlog`] or [`generate_backlog_with`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BacklogSummary {
    pub users: usize,
    pub card_events: usize,
    pub new_cards_with_user: usize,
    pub new_cards_without_user: usize,
    pub card_modifications: usize,
    pub transaction_events: usize,
    pub new_transactions: usize,
    pub settled_transactions: usize,
    pub declined_transactions: usize,
    /// The simulated clock at the last card or transaction event.
    pub last_event_at: Option<NaiveDateTime>,
}

impl fmt::Display for BacklogSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} user events, {} card events ({} new with user, {} new without user, {} modifications)",
            self.users,
            self.card_events,
            self.new_cards_with_user,
            self.new_cards_without_user,
            self.card_modifications
        )?;
        // Only when there are any, so that a backlog without transactions reads as it always did.
        if self.transaction_events > 0 {
            write!(
                f,
                ", {} transaction events ({} new, {} settled, {} declined)",
                self.transaction_events,
                self.new_transactions,
                self.settled_transactions,
                self.declined_transactions
            )?;
        }
        if let Some(at) = self.last_event_at {
            write!(
                f,
                ", simulated clock {BACKLOG_START} .. {}",
                at.format(TIMESTAMP_FORMAT)
            )?;
        }
        Ok(())
    }
}

/// Writes `users` user events to `out/users/` and `card_events` card events to `out/cards/`
/// (creating both), atomically, with the services' mix, from `seed`.
///
/// User `i` is stamped `start + i / USERS_PER_SECOND` s; the card clock starts at the same instant
/// and advances one second per cycle of 5–10 card events.
pub fn generate_backlog(
    out: &Path,
    users: usize,
    card_events: usize,
    seed: u64,
) -> anyhow::Result<BacklogSummary> {
    generate_backlog_with(
        out,
        &BacklogSpec {
            users,
            card_events,
            transaction_events: 0,
            seed,
        },
    )
}

/// [`generate_backlog`], plus `spec.transaction_events` transaction events in `out/transactions/`.
///
/// Each simulated second has a cycle of 5–10 card events, then one of 5–10 transaction events
/// (while each stream lasts), so transactions use the cards created so far. Transactions are
/// drawn from their own rng, so the users and cards are byte for byte those of
/// `generate_backlog(out, users, card_events, seed)`.
pub fn generate_backlog_with(out: &Path, spec: &BacklogSpec) -> anyhow::Result<BacklogSummary> {
    let start = NaiveDateTime::parse_from_str(BACKLOG_START, TIMESTAMP_FORMAT)
        .expect("BACKLOG_START is written in TIMESTAMP_FORMAT");
    let writer = EventWriter::new(out, WriteMode::Atomic);
    let mut summary = BacklogSummary {
        users: spec.users,
        card_events: spec.card_events,
        transaction_events: spec.transaction_events,
        ..BacklogSummary::default()
    };

    let mut user_generator = UserGenerator::new(spec.seed);
    for id in 0..spec.users as u64 {
        let at = start + Duration::seconds((id / USERS_PER_SECOND) as i64);
        writer.write(&user_generator.event(id, at))?;
    }

    let mut card_generator = CardGenerator::new(spec.seed, 0);
    let mut transaction_generator = TransactionGenerator::new(spec.seed, 0);
    let mut now = start;
    let mut cards_written = 0;
    let mut transactions_written = 0;
    while cards_written < spec.card_events || transactions_written < spec.transaction_events {
        if cards_written < spec.card_events {
            let cycle = card_generator
                .cycle_len()
                .min(spec.card_events - cards_written);
            for _ in 0..cycle {
                let (change, event) = card_generator.next_event(now);
                writer.write(&event)?;
                match change {
                    CardChange::NewWithUser => summary.new_cards_with_user += 1,
                    CardChange::NewWithoutUser => summary.new_cards_without_user += 1,
                    CardChange::Modified => summary.card_modifications += 1,
                }
            }
            cards_written += cycle;
        }
        if transactions_written < spec.transaction_events {
            let cycle = transaction_generator
                .cycle_len()
                .min(spec.transaction_events - transactions_written);
            for _ in 0..cycle {
                let (change, event) =
                    transaction_generator.next_event(now, 0..card_generator.next_id());
                writer.write(&event)?;
                match change {
                    TransactionChange::New => summary.new_transactions += 1,
                    TransactionChange::Settled => summary.settled_transactions += 1,
                    TransactionChange::Declined => summary.declined_transactions += 1,
                }
            }
            transactions_written += cycle;
        }
        summary.last_event_at = Some(now);
        now += Duration::seconds(1);
    }

    // Directories exist even for an empty backlog, so consumers can rely on the layout. Not
    // `transactions/`: without transactions the output must stay exactly what it always was.
    for kind in [EventKind::User, EventKind::Card] {
        let dir = out.join(kind.dir_name());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(summary)
}
