//! Transaction events: cards used at merchants, sent as pending and later re-sent whole as settled
//! or declined, from a bounded set of pending transactions.
//!
//! Unlike the card cache, the pending set is capped ([`MAX_PENDING`]): a transaction only changes
//! once, so a producer that runs for days must not remember all of them. A transaction evicted
//! from the set simply stays pending forever, which a reader has to cope with anyway.

use super::{stream_rng, FakeData, CYCLE_LEN};
use crate::event::{
    Amount, EventKind, Metadata, TransactionEvent, TransactionPayload, TransactionStatus,
};
use chrono::NaiveDateTime;
use rand::RngExt;
use std::collections::VecDeque;
use std::ops::{Range, RangeInclusive};

/// Share of transaction events that create a transaction; the rest change a pending one.
pub const NEW_TRANSACTION_SHARE: f64 = 0.60;
/// Share of status changes that settle the transaction; the rest decline it.
pub const SETTLED_SHARE: f64 = 0.85;
/// Most pending transactions remembered; beyond it the oldest are forgotten (never resolved).
pub const MAX_PENDING: usize = 10_000;
/// With no known card yet, `card_id` is drawn from `0..=FALLBACK_MAX_CARD_ID`, like the cards'
/// `user_id` (so it may name a card that never exists).
pub const FALLBACK_MAX_CARD_ID: u64 = 1000;
/// Amounts in cents: 0.50 to 500.00.
pub const AMOUNT_CENTS: RangeInclusive<u64> = 50..=50_000;
/// ISO 4217 codes transactions are made in.
pub const CURRENCIES: [&str; 5] = ["EUR", "USD", "GBP", "CHF", "SEK"];

/// What a transaction event did, for statistics and tests (the status in the file also says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionChange {
    New,
    Settled,
    Declined,
}

/// Builds the transaction event stream and remembers the pending transactions it may resolve.
pub struct TransactionGenerator {
    data: FakeData,
    /// The id the next new transaction gets; starts at 0 and only increases.
    next_id: u64,
    /// Pending transactions that may still be resolved. New ones go to the back, stamped with the
    /// (clamped, so non-decreasing) clock; a resolved one is swapped with the front before it is
    /// removed. So the deque is always a run of transactions older than the last clock reading, in
    /// any order, followed by a run sorted by `updated_at`: for any clock reading, the ones strictly
    /// older than it form a prefix, found by binary search.
    pending: VecDeque<TransactionPayload>,
    /// The latest clock reading, so that a wall clock stepping back (a DST change, an NTP step)
    /// cannot make a status change older than the pending version it replaces.
    clock: Option<NaiveDateTime>,
}

impl TransactionGenerator {
    /// `run` salts the rng like [`stream_rng`]'s: a restarted service passes something new (the
    /// cards service its first card id) so that it does not replay the same event ids.
    pub fn new(seed: u64, run: u64) -> Self {
        Self {
            data: FakeData::new(stream_rng(seed, EventKind::Transaction, run)),
            next_id: 0,
            pending: VecDeque::new(),
            clock: None,
        }
    }

    /// Id the next new transaction will get, i.e. how many were created.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Number of pending transactions remembered (at most [`MAX_PENDING`]).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Length of the next backlog cycle, drawn from [`CYCLE_LEN`] like the cards'.
    pub fn cycle_len(&mut self) -> usize {
        self.data.rng().random_range(CYCLE_LEN)
    }

    /// The next transaction event, stamped `now` (or the latest earlier reading if the clock went
    /// back; `updated_at == event_at`). A new transaction uses a card from `known_cards` (all card
    /// ids handed out so far), or from `0..=FALLBACK_MAX_CARD_ID` when that is empty.
    pub fn next_event(
        &mut self,
        now: NaiveDateTime,
        known_cards: Range<u64>,
    ) -> (TransactionChange, TransactionEvent) {
        let now = self.clock.map_or(now, |last| last.max(now));
        self.clock = Some(now);

        // Only transactions from an earlier second can change now: updated_at has one-second
        // resolution, and a status change must carry a strictly newer one to win over `pending`.
        let resolvable = self
            .pending
            .partition_point(|pending| pending.updated_at < now);
        let roll: f64 = self.data.rng().random();
        let (change, payload) = if roll < NEW_TRANSACTION_SHARE || resolvable == 0 {
            // Nothing to resolve yet: create one instead, as the cards do with modifications.
            (TransactionChange::New, self.create(now, known_cards))
        } else {
            self.resolve(now, resolvable)
        };

        let event = TransactionEvent {
            payload,
            metadata: Metadata {
                kind: EventKind::Transaction,
                event_at: now,
                event_id: self.data.event_id(),
            },
        };
        (change, event)
    }

    fn create(&mut self, now: NaiveDateTime, known_cards: Range<u64>) -> TransactionPayload {
        let rng = self.data.rng();
        let card_id = if known_cards.is_empty() {
            rng.random_range(0..=FALLBACK_MAX_CARD_ID)
        } else {
            rng.random_range(known_cards)
        };
        let amount = Amount::from_cents(rng.random_range(AMOUNT_CENTS))
            .expect("AMOUNT_CENTS is far below the exact-f64 limit");
        let currency = CURRENCIES[rng.random_range(0..CURRENCIES.len())].to_owned();
        let transaction = TransactionPayload {
            id: self.next_id,
            card_id,
            amount,
            currency,
            merchant: self.data.company_name(),
            status: TransactionStatus::Pending,
            updated_at: now,
        };
        self.next_id += 1;
        if self.pending.len() >= MAX_PENDING {
            // The front is among the oldest (see `pending`), and old pending transactions are the
            // least likely to be waited on.
            self.pending.pop_front();
        }
        self.pending.push_back(transaction.clone());
        transaction
    }

    /// Settles or declines one of the first `resolvable` pending transactions.
    fn resolve(
        &mut self,
        now: NaiveDateTime,
        resolvable: usize,
    ) -> (TransactionChange, TransactionPayload) {
        let index = self.data.rng().random_range(0..resolvable);
        // swap_remove_front keeps removal O(1) and only moves the front, itself resolvable, into
        // the resolvable prefix, which keeps the ordering `pending` relies on.
        let mut transaction = self
            .pending
            .swap_remove_front(index)
            .expect("index < resolvable <= pending.len()");
        let (change, status) = if self.data.rng().random_bool(SETTLED_SHARE) {
            (TransactionChange::Settled, TransactionStatus::Settled)
        } else {
            (TransactionChange::Declined, TransactionStatus::Declined)
        };
        // Everything else is re-sent unchanged: the file is the whole transaction, not a delta.
        transaction.status = status;
        transaction.updated_at = now;
        (change, transaction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TIMESTAMP_FORMAT;
    use chrono::Duration;
    use std::collections::HashMap;

    fn noon() -> NaiveDateTime {
        NaiveDateTime::parse_from_str("2024-05-01 12:00:00", TIMESTAMP_FORMAT).expect("valid")
    }

    #[test]
    fn nothing_resolves_within_the_second_it_was_created() {
        let mut generator = TransactionGenerator::new(1, 0);
        for expected_id in 0..200 {
            let (change, event) = generator.next_event(noon(), 0..10);
            assert_eq!(change, TransactionChange::New);
            assert_eq!(event.payload.id, expected_id);
            assert!((0..10).contains(&event.payload.card_id));
        }
    }

    #[test]
    fn without_known_cards_card_ids_come_from_the_fallback_range() {
        let mut generator = TransactionGenerator::new(2, 0);
        let card_ids: Vec<u64> = (0..500)
            .map(|_| generator.next_event(noon(), 0..0).1.payload.card_id)
            .collect();
        assert!(card_ids.iter().all(|id| *id <= FALLBACK_MAX_CARD_ID));
        assert!(card_ids.iter().any(|id| *id > 500), "spread over the range");
    }

    #[test]
    fn a_clock_stepping_back_never_makes_a_change_older_than_its_pending_version() {
        let mut generator = TransactionGenerator::new(3, 0);
        let mut latest: HashMap<u64, NaiveDateTime> = HashMap::new();
        for step in 0..5_000i64 {
            // A saw-tooth clock: an hour forward, then 59 minutes back, over and over.
            let now = noon() + Duration::minutes(step % 2 * 60 + step);
            let (change, event) = generator.next_event(now, 0..100);
            let payload = event.payload;
            assert_eq!(event.metadata.event_at, payload.updated_at);
            if change != TransactionChange::New {
                let pending_at = latest[&payload.id];
                assert!(payload.updated_at > pending_at, "{payload:?}");
            }
            latest.insert(payload.id, payload.updated_at);
        }
    }

    #[test]
    fn the_mix_holds_and_the_pending_set_stays_bounded() {
        let mut generator = TransactionGenerator::new(4, 0);
        let mut counts: HashMap<TransactionChange, usize> = HashMap::new();
        let mut now = noon();
        let events = 80_000;
        let mut most_pending = 0;
        for event in 0..events {
            // Ten events per second, like a busy backlog cycle.
            if event % 10 == 0 {
                now += Duration::seconds(1);
            }
            let (change, _) = generator.next_event(now, 0..1_000);
            *counts.entry(change).or_default() += 1;
            assert!(generator.pending() <= MAX_PENDING);
            most_pending = most_pending.max(generator.pending());
        }
        // Net +0.2 pending per event reaches the cap after about 50,000 events, so eviction ran.
        assert_eq!(most_pending, MAX_PENDING);
        let share = |change| counts[&change] as f64 / events as f64;
        assert!((share(TransactionChange::New) - NEW_TRANSACTION_SHARE).abs() < 0.01);
        let resolved =
            (counts[&TransactionChange::Settled] + counts[&TransactionChange::Declined]) as f64;
        let settled = counts[&TransactionChange::Settled] as f64 / resolved;
        assert!(
            (settled - SETTLED_SHARE).abs() < 0.01,
            "settled share {settled}"
        );
        assert_eq!(
            generator.next_id() as usize,
            counts[&TransactionChange::New]
        );
    }
}
