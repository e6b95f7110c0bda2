//! A batch of events applied in one transaction, and its reduction to one version per entity.

use std::collections::HashMap;

use crate::event::{Event, Kind};

/// Events gathered by one worker. All of them go to the raw zone; only the winning version of
/// each entity goes to the entity tables, because one statement cannot update a row twice.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
}

impl Batch {
    pub fn new(events: Vec<Event>) -> Batch {
        Batch { events }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The greatest version of each entity of `kind` in the batch, sorted by entity id so that
    /// every transaction locks rows in the same order (no deadlocks between daemons).
    pub fn winners(&self, kind: Kind) -> Vec<&Event> {
        let mut best: HashMap<i64, &Event> = HashMap::new();
        for event in self.events.iter().filter(|e| e.kind() == kind) {
            best.entry(event.entity_id())
                .and_modify(|current| {
                    if event.version() > current.version() {
                        *current = event;
                    }
                })
                .or_insert(event);
        }
        let mut winners: Vec<&Event> = best.into_values().collect();
        winners.sort_unstable_by_key(|e| e.entity_id());
        winners
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Card, Metadata, Payload};
    use chrono::NaiveDateTime;
    use uuid::Uuid;

    fn card(id: i64, updated_at: &str, event_id: u128) -> Event {
        let at = NaiveDateTime::parse_from_str(updated_at, "%Y-%m-%d %H:%M:%S").expect("ts");
        Event {
            meta: Metadata {
                kind: Kind::Card,
                event_at: at,
                event_id: Uuid::from_u128(event_id),
            },
            payload: Payload::Card(Card {
                id,
                user_id: None,
                created_by_name: "x".into(),
                updated_at: at,
                created_at: at,
                active: true,
            }),
            raw_payload: serde_json::Value::Null,
            origin: format!("cards/{event_id}.json"),
            ack: crate::source::Ack::detached(),
        }
    }

    #[test]
    fn the_latest_version_of_each_card_wins_whatever_the_order() {
        let batch = Batch::new(vec![
            card(2, "2024-05-01 12:00:05", 1),
            card(1, "2024-05-01 12:00:09", 2),
            card(2, "2024-05-01 12:00:07", 3),
            card(1, "2024-05-01 12:00:01", 4),
            card(2, "2024-05-01 12:00:07", 5), // same second: the greater event_id breaks the tie
        ]);
        let winners: Vec<_> = batch
            .winners(Kind::Card)
            .iter()
            .map(|e| (e.entity_id(), e.meta.event_id.as_u128()))
            .collect();
        assert_eq!(winners, vec![(1, 2), (2, 5)]);
        assert!(batch.winners(Kind::User).is_empty());
    }
}
