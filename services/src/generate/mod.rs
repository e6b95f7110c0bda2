//! Seeded generation of the events the reference producers send: fake people for users, a cache of
//! cards that are created and then modified for cards; and of the transactions example, a bounded
//! set of pending transactions that later settle or are declined.
//!
//! Everything random — fake data, UUIDs, the card and transaction mixes — is drawn from one seeded [`StdRng`] per
//! stream, so a seed reproduces the output exactly (for a given `Cargo.lock`: `StdRng`'s algorithm
//! may change between `rand` releases).

mod cards;
mod fake_data;
mod transactions;
mod users;

pub use cards::{
    CardChange, CardGenerator, CYCLE_LEN, MAX_USER_ID, NEW_WITHOUT_USER_SHARE, NEW_WITH_USER_SHARE,
};
pub use fake_data::FakeData;
pub use transactions::{
    TransactionChange, TransactionGenerator, AMOUNT_CENTS, CURRENCIES, FALLBACK_MAX_CARD_ID,
    MAX_PENDING, NEW_TRANSACTION_SHARE, SETTLED_SHARE,
};
pub use users::UserGenerator;

use crate::event::EventKind;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// The rng of one event stream.
///
/// The seed alone is not enough: the users and cards services are usually started with the same
/// `--seed`, and a restarted cards service with the same seed would replay the same UUIDs and so
/// overwrite (or duplicate) event ids already in the inbox. Mixing in the kind and a `run`
/// discriminator (the first card id of the run) keeps every stream's event ids distinct. The kind
/// also keeps the streams independent: adding transactions to a backlog leaves its cards alone.
pub fn stream_rng(seed: u64, kind: EventKind, run: u64) -> StdRng {
    let kind_tag: u64 = match kind {
        EventKind::User => 1,
        EventKind::Card => 2,
        EventKind::Transaction => 3,
    };
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&kind_tag.to_le_bytes());
    key[16..24].copy_from_slice(&run.to_le_bytes());
    StdRng::from_seed(key)
}
