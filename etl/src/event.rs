//! The typed event model shared by every stage: what a valid user or card event is.

use std::fmt;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kinds of entity the warehouse knows. Everything that differs between users and cards
/// hangs off this enum (folder, schema, SQL), so the pipeline itself has a single code path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    User,
    Card,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::User, Kind::Card];

    /// The value of `metadata.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Card => "card",
        }
    }

    /// The folder name under `inbox/`, `done/` and `failed/`.
    pub fn folder(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Card => "cards",
        }
    }

    pub fn from_folder(folder: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.folder() == folder)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Producers write naive local times with one-second resolution (`2024-05-01 12:00:03`).
pub mod timestamp {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

    pub fn serialize<S: Serializer>(ts: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&ts.format(FORMAT))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
        let text = <&str>::deserialize(d)?;
        NaiveDateTime::parse_from_str(text, FORMAT).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not a valid date-time: {e}"))
        })
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Metadata {
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(with = "timestamp")]
    pub event_at: NaiveDateTime,
    pub event_id: Uuid,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub address: String,
    pub job: String,
    pub score: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Card {
    pub id: i64,
    /// About 5% of cards never get an owner; such a card stays without one.
    #[serde(default)]
    pub user_id: Option<i64>,
    pub created_by_name: String,
    #[serde(with = "timestamp")]
    pub updated_at: NaiveDateTime,
    #[serde(with = "timestamp")]
    pub created_at: NaiveDateTime,
    pub active: bool,
}

/// The typed body of an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    User(User),
    Card(Card),
}

/// Total order of the versions of one entity: the greatest wins, whatever the arrival order.
/// `clock` is the producer's own version clock (`updated_at` for cards, `event_at` for users);
/// `event_at` and `event_id` break its one-second ties deterministically. The SQL guards in
/// `load::warehouse` compare exactly the same tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub clock: NaiveDateTime,
    pub event_at: NaiveDateTime,
    pub event_id: Uuid,
}

/// A validated event, with where it came from and the handle that tells its source its fate
/// (resolved by the pool once the event is committed or refused).
#[derive(Debug)]
pub struct Event {
    pub meta: Metadata,
    pub payload: Payload,
    /// The payload exactly as received, for the raw zone (keeps fields we do not model).
    pub raw_payload: serde_json::Value,
    /// Where it came from, as its source names it (the raw zone's `source_file`).
    pub origin: String,
    pub ack: crate::source::Ack,
}

impl Event {
    pub fn kind(&self) -> Kind {
        self.meta.kind
    }

    pub fn entity_id(&self) -> i64 {
        match &self.payload {
            Payload::User(u) => u.id,
            Payload::Card(c) => c.id,
        }
    }

    /// JSON pointer of the field that is this event's version clock.
    pub fn clock_pointer(&self) -> &'static str {
        match &self.payload {
            Payload::User(_) => "/metadata/event_at",
            Payload::Card(_) => "/payload/updated_at",
        }
    }

    pub fn version(&self) -> Version {
        let clock = match &self.payload {
            Payload::User(_) => self.meta.event_at,
            Payload::Card(c) => c.updated_at,
        };
        Version {
            clock,
            event_at: self.meta.event_at,
            event_id: self.meta.event_id,
        }
    }
}
