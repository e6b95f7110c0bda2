//! The event files' data model: what a producer writes, in the reference producers' exact layout.
//!
//! The reference producers pretty-print with a 2-space indent and no trailing newline, put `metadata`
//! before `payload` for users but `payload` before `metadata` for cards, and leave `user_id` out of a
//! card that has none. serde serializes struct fields in declaration order, so the declaration order
//! below *is* the file format: do not reorder fields.
//!
//! Transactions have no reference producer; they follow the cards' layout (`payload` first), being
//! the same kind of entity: versioned by `updated_at` and re-sent whole on every change.

use chrono::NaiveDateTime;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The naive, one-second-resolution timestamp format of `event_at`, `updated_at` and `created_at`.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Which entity an event describes; also decides the inbox sub-directory it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    User,
    Card,
    Transaction,
}

impl EventKind {
    /// Sub-directory of the inbox that holds this kind's files (`users/`, `cards/`, `transactions/`).
    pub fn dir_name(self) -> &'static str {
        match self {
            EventKind::User => "users",
            EventKind::Card => "cards",
            EventKind::Transaction => "transactions",
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

/// A money amount, held in the currency's minor unit (cents) so it is exact, and written as a JSON
/// number in the major unit with at most two decimals (`12.5`, `499.99`, `7.0`).
///
/// Written as an `f64`: `cents / 100.0` is correctly rounded, so it is the double nearest to the
/// two-decimal value, and serde_json writes the shortest text that reads back as that double, which
/// can never need more decimals than the two-decimal text that already does. That holds while the
/// cents are exact in an `f64` (below 2^53), which [`Amount::from_cents`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount {
    cents: u64,
}

/// Largest number of cents an `f64` holds exactly (2^53).
const MAX_EXACT_CENTS: u64 = 1 << 53;

impl Amount {
    /// `None` above 2^53 cents, where the written number would no longer be exact.
    pub fn from_cents(cents: u64) -> Option<Self> {
        (cents <= MAX_EXACT_CENTS).then_some(Self { cents })
    }

    pub fn cents(self) -> u64 {
        self.cents
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.cents as f64 / 100.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    /// Accepts what [`Serialize`] writes; refuses negative amounts, more than two decimals and
    /// values too large to be exact, rather than rounding someone else's money.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        let cents = (value * 100.0).round();
        // The tolerance absorbs the binary error of `value * 100.0` (far below a thousandth of a
        // cent for any exact amount) while still catching a third decimal.
        let whole_cents = (value * 100.0 - cents).abs() < 1e-6;
        if !(value >= 0.0 && whole_cents && cents <= MAX_EXACT_CENTS as f64) {
            return Err(serde::de::Error::custom(format!(
                "amount {value} is not a non-negative number with at most two decimals"
            )));
        }
        Ok(Self {
            cents: cents as u64,
        })
    }
}

/// Where a transaction stands; it starts `pending` and changes at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransactionStatus {
    Pending,
    Settled,
    Declined,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionPayload {
    pub id: u64,
    /// Not necessarily a card that exists: nothing checks it, as with a card's `user_id`.
    pub card_id: u64,
    pub amount: Amount,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    pub merchant: String,
    pub status: TransactionStatus,
    /// The version clock: a status change re-sends the transaction with a later `updated_at`.
    #[serde(with = "timestamp")]
    pub updated_at: NaiveDateTime,
}

/// A transaction event: `payload` first, then `metadata`, like cards;
/// `metadata.event_at == payload.updated_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionEvent {
    pub payload: TransactionPayload,
    pub metadata: Metadata,
}

/// What the writer needs from any event, so every kind shares one write path.
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

impl Event for TransactionEvent {
    const KIND: EventKind = EventKind::Transaction;

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

    fn amount_text(cents: u64) -> String {
        let amount = Amount::from_cents(cents).expect("small amount");
        serde_json::to_string(&amount).expect("an amount serializes")
    }

    #[test]
    fn amounts_are_written_with_at_most_two_decimals_and_read_back_exactly() {
        // Every amount the generator can draw, plus some large ones.
        for cents in (0..=50_000).chain([12_345_678_901, MAX_EXACT_CENTS - 1, MAX_EXACT_CENTS]) {
            let text = amount_text(cents);
            let decimals = text
                .split_once('.')
                .map_or(0, |(_, fraction)| fraction.len());
            assert!(
                decimals <= 2 && !text.contains(['e', 'E']),
                "{cents} -> {text}"
            );
            let back: Amount = serde_json::from_str(&text).expect("reads back");
            assert_eq!(back.cents(), cents, "{text}");
        }
        assert_eq!(amount_text(1250), "12.5");
        assert_eq!(amount_text(49_999), "499.99");
        assert!(Amount::from_cents(MAX_EXACT_CENTS + 1).is_none());
    }

    #[test]
    fn amounts_that_are_not_money_are_refused() {
        for text in ["-1", "0.125", "1e300", "\"1.00\""] {
            assert!(serde_json::from_str::<Amount>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn transaction_has_the_card_layout_with_lowercase_status() {
        let event = TransactionEvent {
            payload: TransactionPayload {
                id: 3,
                card_id: 15,
                amount: Amount::from_cents(1999).expect("small amount"),
                currency: "EUR".into(),
                merchant: "Smith and Sons".into(),
                status: TransactionStatus::Settled,
                updated_at: at("2024-05-01 12:00:03"),
            },
            metadata: Metadata {
                kind: EventKind::Transaction,
                event_at: at("2024-05-01 12:00:03"),
                event_id: Uuid::nil(),
            },
        };
        let text = String::from_utf8(event.to_json()).expect("serde_json writes UTF-8");
        assert_eq!(
            text,
            r#"{
  "payload": {
    "id": 3,
    "card_id": 15,
    "amount": 19.99,
    "currency": "EUR",
    "merchant": "Smith and Sons",
    "status": "settled",
    "updated_at": "2024-05-01 12:00:03"
  },
  "metadata": {
    "type": "transaction",
    "event_at": "2024-05-01 12:00:03",
    "event_id": "00000000-0000-0000-0000-000000000000"
  }
}"#
        );
        let back: TransactionEvent = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, event);
    }
}
