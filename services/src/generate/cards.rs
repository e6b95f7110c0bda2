//! Card events: new cards (most with an owner, a few without) and modifications of known cards, in
//! the reference producer's proportions.
//!
//! A modification re-sends the cached card whole with a new `updated_at` and a random `active`, so
//! the generator keeps every card it created in memory. That cache grows with the number of cards
//! (≈45% of card events), which is the one piece of state a producer cannot stream away.

use super::{stream_rng, FakeData};
use crate::event::{CardEvent, CardPayload, EventKind, Metadata};
use chrono::NaiveDateTime;
use rand::RngExt;
use std::ops::RangeInclusive;

/// Share of card events that create a card with a `user_id`.
pub const NEW_WITH_USER_SHARE: f64 = 0.40;
/// Share of card events that create a card *without* a `user_id` (the invalid kind).
pub const NEW_WITHOUT_USER_SHARE: f64 = 0.05;
/// New cards draw `user_id` uniformly from `0..=MAX_USER_ID`. With the default 1000 users (ids
/// `0..1000`) that sometimes names a user that never exists, as the reference producer does.
pub const MAX_USER_ID: u64 = 1000;
/// How many card events one producer cycle sends.
pub const CYCLE_LEN: RangeInclusive<usize> = 5..=10;

/// What a card event did, for statistics and tests (the file itself does not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardChange {
    NewWithUser,
    NewWithoutUser,
    Modified,
}

/// Builds the card event stream and remembers every card it created.
pub struct CardGenerator {
    data: FakeData,
    /// The id the next new card gets; card ids only ever increase.
    next_id: u64,
    /// Latest version of every card created by this generator, for modifications to re-send.
    cache: Vec<CardPayload>,
}

impl CardGenerator {
    /// `first_id` is the first card id to hand out (the persisted counter for a restarted service).
    /// It also salts the rng so that a restart with the same seed does not replay the same UUIDs.
    pub fn new(seed: u64, first_id: u64) -> Self {
        Self {
            data: FakeData::new(stream_rng(seed, EventKind::Card, first_id)),
            next_id: first_id,
            cache: Vec::new(),
        }
    }

    /// Id the next new card will get, i.e. the value to persist so ids continue after a restart.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Number of distinct cards created so far.
    pub fn cards_created(&self) -> usize {
        self.cache.len()
    }

    /// Length of the next producer cycle, drawn from [`CYCLE_LEN`].
    pub fn cycle_len(&mut self) -> usize {
        self.data.rng().random_range(CYCLE_LEN)
    }

    /// The next card event, stamped `now` (`updated_at == event_at == now`).
    pub fn next_event(&mut self, now: NaiveDateTime) -> (CardChange, CardEvent) {
        let roll: f64 = self.data.rng().random();
        let change = if roll < NEW_WITH_USER_SHARE {
            CardChange::NewWithUser
        } else if roll < NEW_WITH_USER_SHARE + NEW_WITHOUT_USER_SHARE {
            CardChange::NewWithoutUser
        } else if self.cache.is_empty() {
            // Nothing to modify yet: the reference producer creates a card instead.
            CardChange::NewWithUser
        } else {
            CardChange::Modified
        };

        let payload = match change {
            CardChange::NewWithUser | CardChange::NewWithoutUser => {
                let user_id = (change == CardChange::NewWithUser)
                    .then(|| self.data.rng().random_range(0..=MAX_USER_ID));
                let card = CardPayload {
                    id: self.next_id,
                    user_id,
                    created_by_name: self.data.person_name(),
                    updated_at: now,
                    created_at: now,
                    active: self.data.rng().random_bool(0.5),
                };
                self.next_id += 1;
                self.cache.push(card.clone());
                card
            }
            CardChange::Modified => {
                let index = self.data.rng().random_range(0..self.cache.len());
                let active = self.data.rng().random_bool(0.5);
                let card = &mut self.cache[index];
                // Everything else, user_id included (or its absence), is re-sent unchanged.
                card.updated_at = now;
                card.active = active;
                card.clone()
            }
        };

        let event = CardEvent {
            payload,
            metadata: Metadata {
                kind: EventKind::Card,
                event_at: now,
                event_id: self.data.event_id(),
            },
        };
        (change, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TIMESTAMP_FORMAT;

    fn noon() -> NaiveDateTime {
        NaiveDateTime::parse_from_str("2024-05-01 12:00:00", TIMESTAMP_FORMAT).expect("valid")
    }

    #[test]
    fn first_event_creates_a_card_because_there_is_nothing_to_modify() {
        for seed in 0..50 {
            let (change, event) = CardGenerator::new(seed, 40).next_event(noon());
            assert_ne!(change, CardChange::Modified, "seed {seed}");
            assert_eq!(event.payload.id, 40);
        }
    }

    #[test]
    fn modification_resends_the_cached_card_with_new_time() {
        let mut generator = CardGenerator::new(3, 0);
        let mut created = std::collections::HashMap::new();
        let mut now = noon();
        for _ in 0..2_000 {
            now += chrono::Duration::seconds(1);
            let (change, event) = generator.next_event(now);
            let card = event.payload;
            assert_eq!(event.metadata.event_at, card.updated_at);
            assert_eq!(card.updated_at, now);
            match change {
                CardChange::Modified => {
                    let original: &CardPayload = &created[&card.id];
                    assert_eq!(card.user_id, original.user_id);
                    assert_eq!(card.created_by_name, original.created_by_name);
                    assert_eq!(card.created_at, original.created_at);
                    assert!(card.created_at < card.updated_at);
                }
                _ => {
                    assert_eq!(card.created_at, now);
                    assert_eq!(card.user_id.is_some(), change == CardChange::NewWithUser);
                    assert!(card.user_id.is_none_or(|id| id <= MAX_USER_ID));
                    assert_eq!(
                        card.id as usize,
                        created.len(),
                        "ids increase from the counter"
                    );
                    created.insert(card.id, card);
                }
            }
        }
        assert_eq!(generator.cards_created(), created.len());
        assert_eq!(generator.next_id() as usize, created.len());
    }
}
