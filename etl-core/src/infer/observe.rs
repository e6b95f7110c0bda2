//! What the samples hold, field by field: under which JSON pointer, in how many samples, as
//! which JSON kinds (and in which files), and which string formats every string of it has.
//! Nested objects are walked, so a field is named by its path; arrays are kept whole.

use std::collections::HashMap;

use super::model::JsonKind;
use super::sample::Node;
use crate::catalog::column::parse_timestamp;

/// How many files a conflict names per kind.
const FILES_SHOWN: usize = 3;

/// One field as the samples show it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The object keys under the payload.
    pub path: Vec<String>,
    /// Samples that have it (null included), and those where it is null.
    pub present: usize,
    pub nulls: usize,
    /// Each kind seen, in how many samples, and the first files with it.
    pub kinds: Vec<(JsonKind, usize, Vec<String>)>,
    /// Among its strings: how many have each format.
    pub strings: usize,
    pub producer_times: usize,
    pub rfc3339_times: usize,
    pub uuids: usize,
    pub decimal_texts: usize,
    /// The smallest and greatest 64-bit integer seen.
    pub range: Option<(i64, i64)>,
    /// A value as written, for the report.
    pub example: Option<String>,
    /// An object with members in some sample: its members are fields of their own.
    pub has_members: bool,
}

impl Observed {
    /// Whether it was seen as `kind` only (nulls aside).
    pub fn only(&self, kinds: &[JsonKind]) -> bool {
        !self.kinds.is_empty() && self.kinds.iter().all(|(k, _, _)| kinds.contains(k))
    }

    fn saw(&mut self, kind: JsonKind, origin: &str) {
        match self.kinds.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, count, files)) => {
                *count += 1;
                if files.len() < FILES_SHOWN {
                    files.push(origin.to_owned());
                }
            }
            None => self.kinds.push((kind, 1, vec![origin.to_owned()])),
        }
    }
}

/// Every field of the payloads, in the order the samples first show them.
#[derive(Debug, Default)]
pub struct Observations {
    pub fields: Vec<Observed>,
    index: HashMap<Vec<String>, usize>,
}

impl Observations {
    /// Walks each payload (`origin` names its file in conflicts).
    pub fn of<'a>(payloads: impl IntoIterator<Item = (&'a str, &'a Node)>) -> Observations {
        let mut seen = Observations::default();
        for (origin, payload) in payloads {
            if let Node::Map(members) = payload {
                seen.walk(origin, &[], members);
            }
        }
        seen
    }

    fn walk(&mut self, origin: &str, path: &[String], members: &[(String, Node)]) {
        for (key, value) in members {
            let mut here = path.to_vec();
            here.push(key.clone());
            self.record(origin, here, value);
        }
    }

    fn field(&mut self, path: Vec<String>) -> &mut Observed {
        let next = self.fields.len();
        let i = *self.index.entry(path.clone()).or_insert(next);
        if i == next {
            self.fields.push(Observed {
                path,
                ..Observed::default()
            });
        }
        &mut self.fields[i]
    }

    fn record(&mut self, origin: &str, path: Vec<String>, value: &Node) {
        let field = self.field(path.clone());
        field.present += 1;
        if field.example.is_none()
            && !matches!(
                value,
                Node::Null | Node::Map(_) | Node::List(_) | Node::BigInt(_)
            )
        {
            field.example = Some(example(value));
        }
        match value {
            Node::Null => field.nulls += 1,
            Node::Bool(_) => field.saw(JsonKind::Boolean, origin),
            Node::Int(n) => {
                field.saw(JsonKind::Integer, origin);
                let (low, high) = field.range.unwrap_or((*n, *n));
                field.range = Some((low.min(*n), high.max(*n)));
            }
            Node::BigInt(_) => field.saw(JsonKind::BigInteger, origin),
            Node::Decimal(_) => field.saw(JsonKind::Decimal, origin),
            Node::Text(text) => {
                field.saw(JsonKind::String, origin);
                field.strings += 1;
                field.producer_times += usize::from(is_producer_time(text));
                field.rfc3339_times += usize::from(is_rfc3339(text));
                field.uuids += usize::from(is_uuid(text));
                field.decimal_texts += usize::from(is_decimal_text(text));
            }
            Node::List(_) => field.saw(JsonKind::Array, origin),
            Node::Map(members) => {
                field.saw(JsonKind::Object, origin);
                if !members.is_empty() {
                    field.has_members = true;
                    self.walk(origin, &path, members);
                }
            }
        }
    }
}

/// A value as the report quotes it.
fn example(value: &Node) -> String {
    match value {
        Node::Text(s) if s.chars().count() > 40 => {
            format!("{:?}", s.chars().take(40).collect::<String>() + "…")
        }
        Node::Text(s) => format!("{s:?}"),
        other => other.identity(),
    }
}

/// The producers' `YYYY-MM-DD HH:MM:SS`, naming a real time.
pub fn is_producer_time(text: &str) -> bool {
    text.len() == 19 && text.as_bytes()[10] == b' ' && parse_timestamp(text).is_ok()
}

/// An RFC 3339 time with its offset (`2024-05-01T12:00:03Z`).
pub fn is_rfc3339(text: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

/// A UUID in its hyphenated form.
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36 && uuid::Uuid::parse_str(text).is_ok()
}

/// Digits with an optional fraction and sign, without leading zeros (`"0042"` is a code, not
/// a number): what `numeric` reads back as written.
pub fn is_decimal_text(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && (whole == "0" || !whole.starts_with('0')) && fraction.is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_formats_are_proved_or_not() {
        assert!(is_producer_time("2026-11-22 02:58:16"));
        assert!(!is_producer_time("2026-02-30 02:58:16"));
        assert!(!is_producer_time("2026-11-22T02:58:16"));
        assert!(is_rfc3339("2026-11-22T02:58:16.5+01:00"));
        assert!(!is_rfc3339("2026-11-22 02:58:16"));
        assert!(is_uuid("00f07816-337f-4989-94f9-2b4fd7b7bec5"));
        assert!(!is_uuid("00f07816337f498994f92b4fd7b7bec5"));
        assert!(is_decimal_text("12.50") && is_decimal_text("-3") && is_decimal_text("0.5"));
        assert!(!is_decimal_text("0042") && !is_decimal_text("1.") && !is_decimal_text("1e5"));
    }
}
