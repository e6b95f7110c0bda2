//! Strict JSON text → value tree: RFC 8259 as serde_json reads it, except that an object which
//! repeats a key is refused instead of keeping the last value.
//!
//! serde_json's own `Value` silently keeps the last of two equal keys, so a document with two
//! `payload` objects loaded the second and lost the first without a word. RFC 8259 only says
//! names "SHOULD be unique" and leaves the outcome to the parser; a loader that must never lose
//! input cannot pick one of them, so it refuses the document and names the key and where it is.
//!
//! The check costs nothing on the common path: the map's `insert` already says whether the key
//! was there. The JSON pointer of the offending object is only assembled on the way out of an
//! error, level by level, so documents without duplicates never build a path.
//!
//! A UTF-8 byte order mark at the very start is skipped (RFC 8259 §8.1 lets a parser ignore
//! one; some Windows tools write it).

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::rejection::{RejectCode, Rejection};

/// Why a document is not acceptable JSON.
#[derive(Debug)]
pub enum JsonError {
    /// Not JSON at all (serde_json's message, with its line and column).
    Syntax(serde_json::Error),
    /// An object repeats `key`; `pointer` is the JSON pointer of that object.
    DuplicateKey { key: String, pointer: String },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax(e) => write!(f, "not valid JSON: {e}"),
            JsonError::DuplicateKey { key, pointer } => {
                let at = if pointer.is_empty() { "/" } else { pointer };
                write!(
                    f,
                    "the object at {at} has the key {key:?} more than once (which one is meant \
                     cannot be known, so the document is refused rather than half loaded)"
                )
            }
        }
    }
}

/// The UTF-8 byte order mark.
const BOM: &str = "\u{feff}";

/// `text` without a leading byte order mark.
pub fn without_bom(text: &str) -> &str {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// Parses `text` (a leading BOM is skipped) into a value tree, refusing repeated keys.
pub fn parse(text: &str) -> Result<Value, JsonError> {
    parse_document(text).map(|(value, _)| value)
}

/// [`parse`], and the exact text of the top-level object's `payload` member, if it has one:
/// the raw zone stores the payload as it was received rather than printing the tree again
/// (which cost more than reading it). A slice of `text`.
pub fn parse_document(text: &str) -> Result<(Value, Option<&str>), JsonError> {
    let text = without_bom(text);
    let found: RefCell<Option<Duplicate>> = RefCell::new(None);
    let payload = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Root {
        strict: Strict { found: &found },
        payload: &payload,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match parsed {
        Ok(value) => Ok((value, payload.get())),
        Err(e) => match found.into_inner() {
            Some(mut duplicate) => {
                // The trail was written innermost first, on the way out.
                duplicate.trail.reverse();
                let pointer = duplicate.trail.iter().fold(String::new(), |mut p, s| {
                    p.push('/');
                    p.push_str(&escape(s));
                    p
                });
                Err(JsonError::DuplicateKey {
                    key: duplicate.key,
                    pointer,
                })
            }
            None => Err(JsonError::Syntax(e)),
        },
    }
}

/// A value as [`leaf`] reads it: a string as the document spells it (borrowed when it had no
/// escapes), anything else as a tree.
pub(super) enum Leaf<'de> {
    Str(std::borrow::Cow<'de, str>),
    Value(Value),
}

/// One value for [`super::shape`]: strings without a copy into a tree, everything else as
/// [`value`] reads it (repeated keys refused).
pub(super) fn leaf<'de, D: de::Deserializer<'de>>(deserializer: D) -> Result<Leaf<'de>, D::Error> {
    let found = RefCell::new(None);
    deserializer.deserialize_any(LeafVisitor(Strict { found: &found }))
}

struct LeafVisitor<'a>(Strict<'a>);

impl<'de> Visitor<'de> for LeafVisitor<'_> {
    type Value = Leaf<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Str(v.into()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Str(v.to_owned().into()))
    }

    fn visit_string<E>(self, v: String) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Str(v.into()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Leaf<'de>, E> {
        self.0.visit_bool(v).map(Leaf::Value)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Leaf<'de>, E> {
        self.0.visit_i64(v).map(Leaf::Value)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Leaf<'de>, E> {
        self.0.visit_u64(v).map(Leaf::Value)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Leaf<'de>, E> {
        self.0.visit_f64(v).map(Leaf::Value)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Leaf<'de>, E> {
        self.0.visit_unit().map(Leaf::Value)
    }

    fn visit_none<E: de::Error>(self) -> Result<Leaf<'de>, E> {
        self.0.visit_none().map(Leaf::Value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf<'de>, A::Error> {
        self.0.visit_seq(seq).map(Leaf::Value)
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Leaf<'de>, A::Error> {
        self.0.visit_map(access).map(Leaf::Value)
    }
}

/// The document's root: as [`Strict`], except that a top-level object's `payload` member is
/// first read as raw text (kept in `payload`), then parsed into the tree from that text.
struct Root<'s, 'de> {
    strict: Strict<'s>,
    payload: &'s Cell<Option<&'de str>>,
}

impl<'de> DeserializeSeed<'de> for Root<'_, 'de> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Root<'_, 'de> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.strict.visit_bool(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.strict.visit_i64(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.strict.visit_u64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.strict.visit_f64(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.strict.visit_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.strict.visit_string(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.strict.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.strict.visit_none()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        self.strict.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let strict = self.strict;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = if key == "payload" && self.payload.get().is_none() {
                let raw: &'de RawValue = access.next_value()?;
                self.payload.set(Some(raw.get()));
                // Read once more into the tree; its syntax was checked on the way past.
                let mut de = serde_json::Deserializer::from_str(raw.get());
                match strict.deserialize(&mut de) {
                    Ok(value) => value,
                    Err(e) => {
                        strict.through(|| key.clone());
                        return Err(de::Error::custom(e));
                    }
                }
            } else {
                match access.next_value_seed(strict) {
                    Ok(value) => value,
                    Err(e) => {
                        strict.through(|| key.clone());
                        return Err(e);
                    }
                }
            };
            strict.insert(&mut map, key, value)?;
        }
        Ok(Value::Object(map))
    }
}

/// A JSON pointer's escaping of one reference token (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The repeated key, and the keys and indexes leading to its object, innermost first.
struct Duplicate {
    key: String,
    trail: Vec<String>,
}

/// A seed that builds a [`Value`] and notes the first repeated key in `found`.
#[derive(Clone, Copy)]
struct Strict<'a> {
    found: &'a RefCell<Option<Duplicate>>,
}

impl Strict<'_> {
    /// Adds a member to `map`, or notes the repeated key and fails. One search of the map, not
    /// two: the entry says whether the key was there.
    fn insert<E: de::Error>(
        &self,
        map: &mut Map<String, Value>,
        key: String,
        value: Value,
    ) -> Result<(), E> {
        match map.entry(key) {
            serde_json::map::Entry::Vacant(slot) => {
                slot.insert(value);
                Ok(())
            }
            serde_json::map::Entry::Occupied(slot) => {
                *self.found.borrow_mut() = Some(Duplicate {
                    key: slot.key().clone(),
                    trail: Vec::new(),
                });
                Err(de::Error::custom("duplicate key"))
            }
        }
    }

    /// On the way out of a child's error: if the error is a duplicate, record which member or
    /// element of this level it came through.
    fn through(&self, segment: impl FnOnce() -> String) {
        if let Some(duplicate) = self.found.borrow_mut().as_mut() {
            duplicate.trail.push(segment());
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot spell a NaN or an infinity, so this is never Null in practice.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    let index = items.len();
                    self.through(|| index.to_string());
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = match access.next_value_seed(self) {
                Ok(value) => value,
                Err(e) => {
                    self.through(|| key.clone());
                    return Err(e);
                }
            };
            self.insert(&mut map, key, value)?;
        }
        Ok(Value::Object(map))
    }
}

// A document that is not JSON is the event's fault: its rejection says where.
impl From<JsonError> for Rejection {
    fn from(error: JsonError) -> Rejection {
        match &error {
            JsonError::Syntax(_) => Rejection::new(RejectCode::InvalidJson, error.to_string()),
            JsonError::DuplicateKey { pointer, .. } => {
                let pointer = pointer.clone();
                Rejection::new(RejectCode::DuplicateKey, error.to_string()).at(pointer)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate(text: &str) -> (String, String) {
        match parse(text) {
            Err(JsonError::DuplicateKey { key, pointer }) => (key, pointer),
            other => panic!("expected a duplicate key in {text}, got {other:?}"),
        }
    }

    #[test]
    fn parses_like_serde_json_when_no_key_repeats() {
        for text in [
            r#"{"a":1,"b":[1,2.5,-3,"x",null,true,{"c":{}}],"d":18446744073709551615}"#,
            "[]",
            "  \"text\"  ",
            r#"{"score":0.30000000000000004}"#,
        ] {
            let ours = parse(text).expect("valid");
            let theirs: Value = serde_json::from_str(text).expect("valid");
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn a_repeated_key_is_named_with_its_object_at_any_depth() {
        assert_eq!(duplicate(r#"{"a":1,"a":2}"#), ("a".into(), "".into()));
        assert_eq!(
            duplicate(r#"{"metadata":{},"payload":{"id":1},"payload":{"id":2}}"#),
            ("payload".into(), "".into())
        );
        assert_eq!(
            duplicate(r#"{"payload":{"tags":[{"x":1},{"x":1,"y":2,"x":3}]}}"#),
            ("x".into(), "/payload/tags/1".into())
        );
        assert_eq!(
            duplicate(r#"{"a/b":{"c~d":{"k":1,"k":1}}}"#),
            ("k".into(), "/a~1b/c~0d".into())
        );
        // The same key in sibling objects is not a repetition.
        assert!(parse(r#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }

    #[test]
    fn the_payload_text_is_kept_exactly_as_written() {
        let text = "\u{feff}{\"metadata\":{},\"payload\": {\"a\": 1.10, \"b\":[1e2]} }";
        let (value, payload) = parse_document(text).expect("valid");
        assert_eq!(payload, Some("{\"a\": 1.10, \"b\":[1e2]}"));
        assert_eq!(value["payload"]["b"][0], serde_json::json!(100.0));
        assert_eq!(parse_document("[1]").expect("valid").1, None);
        assert_eq!(parse_document("{\"x\":1}").expect("valid").1, None);
        // A payload nested deeper is not the document's.
        assert_eq!(
            parse_document("{\"x\":{\"payload\":1}}").expect("valid").1,
            None
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_syntax_errors_stay_syntax_errors() {
        assert_eq!(
            parse("\u{feff}{\"a\":1}").expect("a BOM is ignored"),
            serde_json::json!({"a": 1})
        );
        assert!(matches!(parse("{\"a\":"), Err(JsonError::Syntax(_))));
        assert!(matches!(parse("{} {}"), Err(JsonError::Syntax(_))));
        // Only one mark, and only at the start.
        assert!(matches!(
            parse("\u{feff}\u{feff}{}"),
            Err(JsonError::Syntax(_))
        ));
    }
}
