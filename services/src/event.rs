//! The event files' data model: what a producer writes, in the reference producers' exact layout.
//!
//! The reference producers pretty-print with a 2-space indent and no trailing newline, put `metadata`
//! before `payload` for users but `payload` before `metadata` for cards, and leave `user_id` out of a
//! card that has none. serde serializes struct fields in declaration order, so the declaration order
//! below *is* the file format: do not reorder fields.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The naive, one-second-resolution timestamp format of `event_at`, `updated_at` and `created_at`.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Which entity an event describes; also decides the inbox sub-directory it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    User,
    Card,
}

impl EventKind {
    /// Sub-directory of the inbox that holds this kind's files (`users/`, `cards/`).
    pub fn dir_name(self) -> &'static str {
        match self {
            EventKind::User => "users",
            EventKind::Card => "cards",
        }
    }
}

/// The envelope every event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(rename = "type")]
    pub kind: EventKind,
    #[serde(with = "timestamp")]
    pub event_at: NaiveDateTime,
    /// Also the file name (`<event_id>.json`), which is what makes a re-sent file recognisable.
    pub event_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPayload {
    pub id: u64,
    pub name: String,
    /// Two lines, `"street\ncity, ST zip"`, like the reference producers' fake addresses.
    pub address: String,
    pub job: String,
    /// In `[0, 1)`.
    pub score: f64,
}

/// A user event: `metadata` first, then `payload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEvent {
    pub metadata: Metadata,
    pub payload: UserPayload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardPayload {
    pub id: u64,
    /// `None` for the invalid cards created without an owner: the key is then absent from the file
    /// (not `null`), exactly as the reference producer writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    pub created_by_name: String,
    #[serde(with = "timestamp")]
    pub updated_at: NaiveDateTime,
    #[serde(with = "timestamp")]
    pub created_at: NaiveDateTime,
    pub active: bool,
}

/// A card event: `payload` first, then `metadata`; `metadata.event_at == payload.updated_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardEvent {
    pub payload: CardPayload,
    pub metadata: Metadata,
}

/// What the writer needs from any event, so users and cards share one write path.
pub trait Event: Serialize {
    const KIND: EventKind;

    fn metadata(&self) -> &Metadata;

    /// `<event_id>.json`.
    fn file_name(&self) -> String {
        format!("{}.json", self.metadata().event_id)
    }

    /// The file's exact bytes: pretty-printed, 2-space indent, no trailing newline.
    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect(
            "event structs have only string keys and finite numbers, so they always serialize",
        )
    }
}

impl Event for UserEvent {
    const KIND: EventKind = EventKind::User;

    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}

impl Event for CardEvent {
    const KIND: EventKind = EventKind::Card;

    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}

/// serde adapter for [`TIMESTAMP_FORMAT`]; chrono's own serde format is ISO 8601 with a `T`.
mod timestamp {
    use super::TIMESTAMP_FORMAT;
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &NaiveDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&at.format(TIMESTAMP_FORMAT))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<NaiveDateTime, D::Error> {
        // Owned, not borrowed: a borrowed &str fails on readers and escaped strings.
        let text = String::deserialize(deserializer)?;
        NaiveDateTime::parse_from_str(&text, TIMESTAMP_FORMAT).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, TIMESTAMP_FORMAT).expect("test timestamp is valid")
    }

    #[test]
    fn card_without_owner_has_no_user_id_key_at_all() {
        let event = CardEvent {
            payload: CardPayload {
                id: 15,
                user_id: None,
                created_by_name: "Amber Mclaughlin".into(),
                updated_at: at("2026-11-22 02:58:16"),
                created_at: at("2026-11-22 02:58:14"),
                active: true,
            },
            metadata: Metadata {
                kind: EventKind::Card,
                event_at: at("2026-11-22 02:58:16"),
                event_id: Uuid::nil(),
            },
        };
        let text = String::from_utf8(event.to_json()).expect("serde_json writes UTF-8");
        assert!(!text.contains("user_id"), "{text}");
        assert!(text.starts_with("{\n  \"payload\": {\n    \"id\": 15,\n    \"created_by_name\""));
        assert!(text.ends_with("}\n}"), "no trailing newline: {text:?}");
    }
}
