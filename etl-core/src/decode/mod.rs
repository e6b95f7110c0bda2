//! Bytes → typed event: parse, check the folder, validate against the schema, then type it.
//! The same step for every source: it sees bytes and a declared type, never where they came from.

use std::time::Duration;

use serde_json::Value;

pub mod json;
pub mod schema;
pub mod shape;

#[cfg(test)]
mod equivalence;

use crate::catalog::column::parse_timestamp;
use crate::catalog::{Cell, Clock, Kind};
use crate::event::{Ack, Record};
use crate::event::{Event, Metadata};
use crate::rejection::{RejectCode, Rejection};

/// Turns records into events: [`decode`], then [`refuse_future`] against the daemon's clock.
pub struct Decoder {
    /// How far ahead of the daemon's clock a version may be (see [`refuse_future`]).
    pub max_future_skew: Duration,
    /// The raw zone's horizon (see [`refuse_beyond_horizon`]); unset when nothing was forgotten.
    pub horizon: Horizon,
}

impl Decoder {
    /// The record's event, carrying its ack on to the pool; or why not, with the ack back so
    /// the caller can tell the source. The record's bytes become the event's document (moved,
    /// not copied).
    pub fn decode(&self, record: Record) -> Result<Event, (Rejection, Ack)> {
        let Record {
            kind,
            bytes,
            origin,
            ack,
        } = record;
        match self.verdict(&kind, bytes) {
            Ok(mut event) => {
                event.origin = origin;
                event.ack = ack;
                Ok(event)
            }
            Err(rejection) => Err((rejection, ack)),
        }
    }

    /// [`decode`], then [`refuse_future`] against the daemon's clock now: the whole verdict on
    /// one document, as the daemon and `etl check` give it.
    pub fn check(&self, kind: &Kind, bytes: &[u8]) -> Result<Event, Rejection> {
        self.verdict(kind, bytes.to_vec())
    }

    fn verdict(&self, kind: &Kind, bytes: Vec<u8>) -> Result<Event, Rejection> {
        let event = decode_owned(kind, bytes)?;
        let now = chrono::Utc::now().naive_utc();
        refuse_future(&event, now, self.max_future_skew)?;
        refuse_beyond_horizon(&event, self.horizon.get())?;
        Ok(event)
    }
}

/// Decodes one document declared to be of type `kind`: parse, check its `metadata.type`,
/// validate against the type's schema, then type each declared column. Every failure is a
/// [`Rejection`] with a reason; nothing here can panic on input (serde_json caps nesting at 128
/// levels, so deep documents are an error, not a stack overflow). The event has no origin and
/// a detached ack until [`Decoder::decode`] gives it its record's.
pub fn decode(kind: &Kind, bytes: &[u8]) -> Result<Event, Rejection> {
    decode_owned(kind, bytes.to_vec())
}

/// [`decode`], keeping `bytes` as the event's document.
fn decode_owned(kind: &Kind, bytes: Vec<u8>) -> Result<Event, Rejection> {
    let (meta, row, payload) = typed(kind, &bytes, true)?;
    Ok(Event {
        kind: kind.clone(),
        meta,
        row,
        document: bytes,
        payload,
        origin: String::new(),
        ack: Ack::detached(),
    })
}

/// The envelope, the typed row and where the payload's text is in `bytes`.
type Typed = (Metadata, Vec<Cell>, Option<std::ops::Range<usize>>);

/// Where `raw`, a slice of `bytes`, is in it.
fn place(bytes: &[u8], raw: &str) -> std::ops::Range<usize> {
    let start = raw.as_ptr() as usize - bytes.as_ptr() as usize;
    start..start + raw.len()
}

/// The envelope, row and payload of `text` (which is `bytes`) by the one-pass read, when the
/// type has a shape and the read can prove the document valid. Everything else, and every
/// rejection with its reason, is the full path's. A NUL (only ever written `\u0000`) is the
/// full path's too: it alone looks for one.
fn one_pass(kind: &Kind, bytes: &[u8], text: &str) -> Option<Typed> {
    let shape = kind.shape.as_ref()?;
    if text.contains("\\u0000") {
        return None;
    }
    let read = shape.read(&kind.columns, &kind.envelope_type, json::without_bom(text))?;
    let meta = Metadata {
        event_at: read.event_at,
        event_id: read.event_id,
    };
    Some((meta, read.row, read.payload.map(|raw| place(bytes, raw))))
}

/// The envelope, row and payload of `bytes`, by the one-pass read when `fast` and it can decide,
/// by the full path otherwise (the tests compare the two).
fn typed(kind: &Kind, bytes: &[u8], fast: bool) -> Result<Typed, Rejection> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Rejection::new(RejectCode::NotUtf8, format!("not UTF-8 text: {e}")))?;
    if json::without_bom(text).trim().is_empty() {
        return Err(Rejection::new(RejectCode::InvalidJson, "the file is empty"));
    }
    if let Some(typed) = one_pass(kind, bytes, text).filter(|_| fast) {
        return Ok(typed);
    }

    // Strict: a repeated key is refused rather than half loaded; a leading BOM is skipped.
    let (document, payload_text) = json::parse_document(text)?;
    let payload = payload_text.map(|raw| place(bytes, raw));

    // Checked before the schema so the reason names the real mistake (a misplaced file), not
    // the `const` keyword it trips.
    let envelope = document.get("metadata");
    if let Some(declared) = envelope.and_then(|m| m.get("type")).and_then(Value::as_str) {
        if declared != kind.envelope_type {
            return Err(Rejection::new(
                RejectCode::WrongFolder,
                format!(
                    "metadata.type is {declared:?} but the file is in the {} folder",
                    kind.name
                ),
            )
            .at("/metadata/type"));
        }
    }

    // A document the one-pass read declined is most likely invalid.
    let likely_valid = !fast || kind.shape.is_none();
    schema::validate(&kind.schema, &document, likely_valid)?;

    // PostgreSQL text and jsonb cannot hold U+0000, so such an event could never be stored:
    // it is the event's fault, and must not be retried as if the database were down.
    // A NUL can only be written `\u0000` in valid JSON, so the tree walk (which builds a
    // pointer per node) only runs for the rare document whose text contains that escape.
    let nul = if text.contains("\\u0000") {
        find_nul(&document, String::new())
    } else {
        None
    };
    if let Some(path) = nul {
        return Err(Rejection::new(
            RejectCode::InvalidValue,
            "contains a NUL character (\\u0000), which the warehouse cannot store",
        )
        .at(path));
    }

    let meta = metadata(&document)?;
    let mut row = Vec::with_capacity(kind.columns.len());
    for column in &kind.columns {
        let pointer = column.field.as_str();
        let cell = column
            .sql_type
            .cell(column.field.get(&document))
            .map_err(|e| invalid(pointer, e.to_string()))?;
        if cell == Cell::Null && !column.optional {
            return Err(invalid(
                pointer,
                "missing (the column is not optional)".into(),
            ));
        }
        row.push(cell);
    }
    Ok((meta, row, payload))
}

fn invalid(pointer: &str, what: String) -> Rejection {
    Rejection::new(RejectCode::InvalidValue, format!("{pointer}: {what}")).at(pointer)
}

/// The envelope's event time and id. What the schema cannot express (impossible dates such as
/// 2024-02-30) fails here.
fn metadata(document: &Value) -> Result<Metadata, Rejection> {
    let metadata = document.get("metadata");
    let field = |name: &'static str, pointer: &'static str| match metadata
        .and_then(|m| m.get(name))
        .and_then(Value::as_str)
    {
        Some(text) => Ok(text),
        None => Err(invalid(pointer, "missing, or not a string".into())),
    };
    const EVENT_AT: &str = "/metadata/event_at";
    const EVENT_ID: &str = "/metadata/event_id";
    let text = field("event_at", EVENT_AT)?;
    let event_at = parse_timestamp(text).map_err(|e| invalid(EVENT_AT, e.to_string()))?;
    let text = field("event_id", EVENT_ID)?;
    let event_id = uuid::Uuid::parse_str(text)
        .map_err(|e| invalid(EVENT_ID, format!("`{text}` is not a UUID: {e}")))?;
    Ok(Metadata { event_at, event_id })
}

/// Refuses an event dated more than `skew` after `now` (the daemon's clock, UTC). A version from
/// the far future (2099, say) would win the version guard against every genuine later update
/// and freeze its entity for ever, so it is the event's fault, like any other invalid value.
pub fn refuse_future(
    event: &Event,
    now: chrono::NaiveDateTime,
    skew: std::time::Duration,
) -> Result<(), Rejection> {
    let bound = now + chrono::Duration::from_std(skew).unwrap_or(chrono::Duration::MAX);
    let kind = event.kind();
    // The event time, and every clock column that is a time.
    let times = std::iter::once((event.meta.event_at, "/metadata/event_at")).chain(
        kind.version.iter().filter_map(|clock| match clock {
            Clock::Column(i) => match event.row[*i] {
                Cell::Timestamp(at) => Some((at, kind.clock_pointer(*clock))),
                _ => None,
            },
            _ => None,
        }),
    );
    for (at, pointer) in times {
        if at > bound {
            return Err(Rejection::new(
                RejectCode::FutureVersion,
                format!(
                    "{pointer} is {} but the daemon's clock says {} (UTC): a version more than \
                     {}s ahead would override every genuine later update (max_future_skew_secs)",
                    at.format(crate::event::timestamp::FORMAT),
                    now.format(crate::event::timestamp::FORMAT),
                    skew.as_secs()
                ),
            )
            .at(pointer));
        }
    }
    Ok(())
}

/// Refuses an event dated at or before `horizon`: the ids of retired raw events that old have
/// been forgotten, so it may be one of them (a replayed file, a re-pulled window) and would
/// otherwise enter the raw zone, and the lake, a second time.
pub fn refuse_beyond_horizon(
    event: &Event,
    horizon: Option<chrono::NaiveDateTime>,
) -> Result<(), Rejection> {
    match horizon {
        Some(horizon) if event.meta.event_at <= horizon => Err(Rejection::new(
            RejectCode::BeyondHorizon,
            format!(
                "event_at {} is at or before the raw zone's horizon {}: the ids of events that \
                 old are no longer kept (retired_ids_days), so this one cannot be told from an \
                 event already loaded and moved to the lake",
                event.meta.event_at.format(crate::event::timestamp::FORMAT),
                horizon.format(crate::event::timestamp::FORMAT),
            ),
        )
        .at("/metadata/event_at")),
        _ => Ok(()),
    }
}

/// JSON pointer of the first string or key holding a NUL character.
fn find_nul(value: &Value, here: String) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(here),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_nul(v, format!("{here}/{i}"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let child = format!("{here}/{}", k.replace('~', "~0").replace('/', "~1"));
            if k.contains('\0') {
                Some(child)
            } else {
                find_nul(v, child)
            }
        }),
        _ => None,
    }
}

/// The horizon a decoder refuses events at ([`refuse_beyond_horizon`]): every raw event id the
/// lake's retention has forgotten had an `event_at` at or before it. Shared by the decoders and
/// the task that refreshes it from the warehouse (`lake::retention`).
#[derive(Clone, Debug)]
pub struct Horizon(std::sync::Arc<std::sync::atomic::AtomicI64>);

/// No horizon: nothing was forgotten.
const NO_HORIZON: i64 = i64::MIN;

impl Default for Horizon {
    fn default() -> Self {
        Horizon(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            NO_HORIZON,
        )))
    }
}

impl Horizon {
    pub fn get(&self) -> Option<chrono::NaiveDateTime> {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            NO_HORIZON => None,
            micros => chrono::DateTime::from_timestamp_micros(micros).map(|t| t.naive_utc()),
        }
    }

    pub fn set(&self, through: Option<chrono::NaiveDateTime>) {
        let micros = through.map_or(NO_HORIZON, |t| t.and_utc().timestamp_micros());
        self.0.store(micros, std::sync::atomic::Ordering::Relaxed);
    }
}

/// [`typed`] both ways, for the tests that hold the one-pass read to the full path.
#[cfg(test)]
pub(crate) fn both_ways(kind: &Kind, bytes: &[u8]) -> (Option<Typed>, Result<Typed, Rejection>) {
    let fast = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| one_pass(kind, bytes, text));
    (fast, typed(kind, bytes, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> Kind {
        let catalog = crate::catalog::Catalog::builtin().expect("built-in types");
        catalog.get(name).expect("a built-in type").clone()
    }

    fn decode_str(name: &str, text: &str) -> Result<Event, Rejection> {
        decode(&kind(name), text.as_bytes())
    }

    const CARD: &str = r#"{"payload": {"id": 5, "user_id": 311, "created_by_name": "A B",
        "updated_at": "2024-05-01 12:00:03", "created_at": "2024-05-01 11:58:40", "active": true},
        "metadata": {"type": "card", "event_at": "2024-05-01 12:00:03",
        "event_id": "0d133695-94a0-4f08-88ca-593745d25e35"}}"#;

    #[test]
    fn a_valid_card_becomes_a_typed_event() {
        let event = decode_str("cards", CARD).expect("valid");
        assert_eq!(event.entity_id(), 5);
        assert_eq!(event.kind().name(), "cards");
        assert_eq!(event.get("user_id"), Some(&Cell::Int(311)));
    }

    #[test]
    fn a_card_in_the_users_folder_is_rejected_for_its_folder() {
        let rejection = decode_str("users", CARD).expect_err("wrong folder");
        assert_eq!(rejection.code, RejectCode::WrongFolder);
        assert!(
            rejection.reason.contains("users folder"),
            "{}",
            rejection.reason
        );
    }

    #[test]
    fn an_impossible_date_is_rejected_with_its_location() {
        let text = CARD.replace("2024-05-01 11:58:40", "2024-02-30 11:58:40");
        let rejection = decode_str("cards", &text).expect_err("bad date");
        assert_eq!(rejection.code, RejectCode::InvalidValue);
        assert!(
            rejection.reason.contains("2024-02-30"),
            "{}",
            rejection.reason
        );
    }

    #[test]
    fn a_schema_failure_names_the_field_and_the_schema_keyword() {
        let text = CARD.replace(r#""id": 5"#, r#""id": "five""#);
        let rejection = decode_str("cards", &text).expect_err("bad id");
        assert_eq!(rejection.code, RejectCode::Schema);
        assert_eq!(rejection.instance_path.as_deref(), Some("/payload/id"));
        let location = rejection.schema_location.unwrap_or_default();
        assert!(location.contains("type"), "{location}");
    }

    #[test]
    fn a_nul_character_is_refused_before_it_reaches_the_database() {
        let text = CARD.replace("A B", "A\\u0000B");
        let rejection = decode_str("cards", &text).expect_err("nul");
        assert_eq!(rejection.code, RejectCode::InvalidValue);
        assert_eq!(
            rejection.instance_path.as_deref(),
            Some("/payload/created_by_name")
        );
    }

    #[test]
    fn a_truncated_file_may_still_be_being_written() {
        let rejection = decode_str("cards", &CARD[..40]).expect_err("truncated");
        assert!(rejection.may_be_incomplete());
    }
}
