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

    /// For each type in the batch (in name order): its number of events, and the greatest
    /// version of each of its entities, sorted by entity id so that every transaction locks
    /// rows in the same order (no deadlocks between daemons).
    pub fn winners(&self) -> Vec<(&Kind, u64, Vec<&Event>)> {
        let mut best: HashMap<(&str, i64), &Event> = HashMap::with_capacity(self.events.len());
        let mut counts: Vec<(&Kind, u64)> = Vec::new();
        for event in &self.events {
            match counts.iter_mut().find(|(k, _)| *k == event.kind()) {
                Some((_, n)) => *n += 1,
                None => counts.push((event.kind(), 1)),
            }
            best.entry((event.kind().name(), event.entity_id()))
                .and_modify(|current| {
                    if event.version_cmp(current).is_gt() {
                        *current = event;
                    }
                })
                .or_insert(event);
        }
        counts.sort_by(|a, b| a.0.name().cmp(b.0.name()));
        let mut by_type: Vec<(&Kind, u64, Vec<&Event>)> = counts
            .into_iter()
            .map(|(kind, n)| (kind, n, Vec::new()))
            .collect();
        for event in best.into_values() {
            if let Some((_, _, winners)) = by_type.iter_mut().find(|(k, _, _)| *k == event.kind()) {
                winners.push(event);
            }
        }
        for (_, _, winners) in &mut by_type {
            winners.sort_unstable_by_key(|e| e.entity_id());
        }
        by_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, Cell};
    use crate::event::Metadata;
    use chrono::NaiveDateTime;
    use uuid::Uuid;

    fn card(cards: &Kind, id: i64, updated_at: &str, event_id: u128) -> Event {
        let at = NaiveDateTime::parse_from_str(updated_at, "%Y-%m-%d %H:%M:%S").expect("ts");
        Event {
            kind: cards.clone(),
            meta: Metadata {
                event_at: at,
                event_id: Uuid::from_u128(event_id),
            },
            row: vec![
                Cell::Int(id),
                Cell::Null,
                Cell::Text("x".into()),
                Cell::Timestamp(at),
                Cell::Timestamp(at),
                Cell::Bool(true),
            ],
            document: Vec::new(),
            payload: None,
            origin: format!("cards/{event_id}.json"),
            ack: crate::event::Ack::detached(),
        }
    }

    #[test]
    fn the_latest_version_of_each_card_wins_whatever_the_order() {
        let catalog = Catalog::builtin().expect("built-in types");
        let cards = catalog.get("cards").expect("cards");
        let batch = Batch::new(vec![
            card(cards, 2, "2024-05-01 12:00:05", 1),
            card(cards, 1, "2024-05-01 12:00:09", 2),
            card(cards, 2, "2024-05-01 12:00:07", 3),
            card(cards, 1, "2024-05-01 12:00:01", 4),
            card(cards, 2, "2024-05-01 12:00:07", 5), // same second: the greater event_id breaks the tie
        ]);
        let by_type = batch.winners();
        assert_eq!(by_type.len(), 1, "only cards are in the batch");
        let (kind, events, winners) = &by_type[0];
        assert_eq!((kind.name(), *events), ("cards", 5));
        let winners: Vec<_> = winners
            .iter()
            .map(|e| (e.entity_id(), e.meta.event_id.as_u128()))
            .collect();
        assert_eq!(winners, vec![(1, 2), (2, 5)]);
    }
}
