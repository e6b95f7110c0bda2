//! User events: one fake person per id.

use super::{stream_rng, FakeData};
use crate::event::{EventKind, Metadata, UserEvent, UserPayload};
use chrono::NaiveDateTime;

/// Builds user events; the caller decides which ids to send and when (each id once).
pub struct UserGenerator {
    data: FakeData,
}

impl UserGenerator {
    pub fn new(seed: u64) -> Self {
        Self {
            data: FakeData::new(stream_rng(seed, EventKind::User, 0)),
        }
    }

    /// The event announcing user `id`, stamped `now`.
    pub fn event(&mut self, id: u64, now: NaiveDateTime) -> UserEvent {
        UserEvent {
            metadata: Metadata {
                kind: EventKind::User,
                event_at: now,
                event_id: self.data.event_id(),
            },
            payload: UserPayload {
                id,
                name: self.data.person_name(),
                address: self.data.address(),
                job: self.data.job(),
                score: self.data.score(),
            },
        }
    }
}
