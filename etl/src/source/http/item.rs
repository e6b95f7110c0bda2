//! An API item → the event envelope every source's records share: the item becomes the
//! `payload` as is, and the configured fields give the envelope its event id and time.

use chrono::{DateTime, NaiveDateTime};
use serde_json::Value;
use uuid::Uuid;

use crate::catalog::Kind;
use crate::config::http::ItemMapping;
use crate::event::timestamp;
use crate::rejection::{RejectCode, Rejection};

/// The namespace of derived event ids (an arbitrary constant: changing it would make every
/// item pulled again a new event).
const EVENT_IDS: Uuid = Uuid::from_u128(0x6574_6c5f_6874_7470_5f69_7465_6d5f_6964);

/// The envelope document for `item` (its JSON text as received) of type `kind`, pulled by the
/// source `source`; or why the item cannot be an event.
pub fn envelope(
    item: &str,
    mapping: &ItemMapping,
    source: &str,
    kind: &Kind,
) -> Result<Vec<u8>, Rejection> {
    // The same strict reading as the decoder's: an item that repeats a key is refused here,
    // before its key or clock could be read from the wrong one of the two.
    let value: Value = crate::decode::json::parse(item)?;
    let key = required(&value, &mapping.key, "the key")?;
    let version = required(&value, &mapping.version, "the version clock")?;
    let event_at_pointer = mapping.event_at.as_deref().unwrap_or(&mapping.version);
    let event_at = event_time(required(&value, event_at_pointer, "the event time")?)
        .map_err(|what| field_error(event_at_pointer, "the event time", &what))?;
    let event_id = match &mapping.event_id {
        Some(pointer) => required(&value, pointer, "the event id")?
            .as_str()
            .and_then(|text| Uuid::parse_str(text).ok())
            .ok_or_else(|| field_error(pointer, "the event id", "not a UUID"))?,
        // The same item version always gets the same id, so pulling a page again changes
        // nothing, while a new version (a new clock value) is a new event.
        None => Uuid::new_v5(&EVENT_IDS, format!("{source}\n{key}\n{version}").as_bytes()),
    };
    let mut document = Vec::with_capacity(item.len() + 160);
    document.extend_from_slice(br#"{"metadata":{"type":"#);
    document.extend_from_slice(
        Value::from(kind.envelope_type.as_str())
            .to_string()
            .as_bytes(),
    );
    document.extend_from_slice(
        format!(
            r#","event_id":"{event_id}","event_at":"{}"}},"payload":"#,
            event_at.format(timestamp::FORMAT)
        )
        .as_bytes(),
    );
    document.extend_from_slice(item.as_bytes());
    document.push(b'}');
    Ok(document)
}

fn required<'a>(item: &'a Value, pointer: &str, what: &str) -> Result<&'a Value, Rejection> {
    match item.pointer(pointer) {
        Some(value) if !value.is_null() => Ok(value),
        _ => Err(field_error(pointer, what, "missing")),
    }
}

fn field_error(pointer: &str, what: &str, problem: &str) -> Rejection {
    Rejection::new(
        RejectCode::InvalidValue,
        format!("item field {pointer} ({what}): {problem}"),
    )
    .at(format!("/payload{pointer}"))
}

/// The envelope's naive UTC time from the producers' `YYYY-MM-DD HH:MM:SS`, an RFC 3339 time
/// or Unix seconds.
fn event_time(value: &Value) -> Result<NaiveDateTime, String> {
    match value {
        Value::String(text) => NaiveDateTime::parse_from_str(text, timestamp::FORMAT)
            .or_else(|_| DateTime::parse_from_rfc3339(text).map(|t| t.naive_utc()))
            .map_err(|_| format!("{text:?} is not a time (YYYY-MM-DD HH:MM:SS or RFC 3339)")),
        Value::Number(n) => n
            .as_i64()
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .map(|t| t.naive_utc())
            .ok_or_else(|| format!("{n} is not a Unix time in seconds")),
        other => Err(format!("{other} is not a time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn cards() -> Kind {
        Catalog::builtin()
            .expect("built-in types")
            .get("cards")
            .cloned()
            .expect("built-in cards")
    }

    fn mapping() -> ItemMapping {
        ItemMapping {
            key: "/id".into(),
            version: "/updated_at".into(),
            event_at: None,
            event_id: None,
        }
    }

    const ITEM: &str = r#"{"id":7,"user_id":1,"created_by_name":"Ann","created_at":"2026-11-01 10:00:00","updated_at":"2026-11-02 10:00:00","active":true}"#;

    #[test]
    fn the_item_is_the_payload_and_its_version_names_the_event() {
        let bytes = envelope(ITEM, &mapping(), "crm", &cards()).expect("envelope");
        let doc: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(doc["metadata"]["type"], "card");
        assert_eq!(doc["metadata"]["event_at"], "2026-11-02 10:00:00");
        assert_eq!(
            doc["payload"],
            serde_json::from_str::<Value>(ITEM).expect("item")
        );
        let again = envelope(ITEM, &mapping(), "crm", &cards()).expect("envelope");
        assert_eq!(bytes, again, "the same item version is the same event");
        let newer = ITEM.replace("2026-11-02 10:00:00", "2026-11-03 10:00:00");
        let newer = envelope(&newer, &mapping(), "crm", &cards()).expect("envelope");
        let id = |b: &[u8]| {
            serde_json::from_slice::<Value>(b).expect("JSON")["metadata"]["event_id"].clone()
        };
        assert_ne!(id(&bytes), id(&newer), "a new version is a new event");
        let other_source = envelope(ITEM, &mapping(), "erp", &cards()).expect("envelope");
        assert_ne!(id(&bytes), id(&other_source));
    }

    #[test]
    fn an_item_that_repeats_a_key_is_refused_by_name_before_its_key_is_read() {
        // Two `id`s: which entity the item is about cannot be known.
        let twice = ITEM.replace("\"id\":7", "\"id\":7,\"id\":8");
        let rejection = envelope(&twice, &mapping(), "crm", &cards()).expect_err("two ids");
        assert_eq!(rejection.code, RejectCode::DuplicateKey);
        assert_eq!(rejection.instance_path.as_deref(), Some(""));
        assert!(
            rejection.reason.contains("\"id\" more than once"),
            "{}",
            rejection.reason
        );
    }

    #[test]
    fn rfc3339_and_unix_times_become_naive_utc() {
        let mut m = mapping();
        m.event_at = Some("/at".into());
        for (at, expected) in [
            (r#""2026-11-02T10:00:00+02:00""#, "2026-11-02 08:00:00"),
            ("1790000000", "2026-09-21 14:13:20"),
        ] {
            let item = format!(r#"{{"id":1,"updated_at":"x","at":{at}}}"#);
            let bytes = envelope(&item, &m, "crm", &cards()).expect("envelope");
            let doc: Value = serde_json::from_slice(&bytes).expect("JSON");
            assert_eq!(doc["metadata"]["event_at"], expected);
        }
    }

    #[test]
    fn a_missing_field_is_the_items_fault_with_its_pointer() {
        let rejection = envelope(r#"{"id":1}"#, &mapping(), "crm", &cards()).expect_err("no clock");
        assert_eq!(rejection.code, RejectCode::InvalidValue);
        assert!(
            rejection.reason.contains("/updated_at"),
            "{}",
            rejection.reason
        );
        let mut m = mapping();
        m.event_id = Some("/uuid".into());
        let rejection = envelope(
            ITEM.replace("\"id\":7", "\"uuid\":\"nope\",\"id\":7")
                .as_str(),
            &m,
            "crm",
            &cards(),
        )
        .expect_err("bad id");
        assert!(
            rejection.reason.contains("not a UUID"),
            "{}",
            rejection.reason
        );
    }
}
