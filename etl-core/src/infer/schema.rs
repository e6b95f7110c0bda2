//! The drafted JSON Schema: the envelope (`metadata.type`, `event_at`, `event_id`) and the
//! payload's fields nested as the samples nest them, each required only if every sample has
//! it, with a `$comment` giving the evidence so a reviewer can tighten or relax it.

use serde_json::{json, Value};

use super::model::{Format, Guess, Inference};

const TIMESTAMP_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-5][0-9]$";
const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const RFC3339_PATTERN: &str =
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$";
const DECIMAL_PATTERN: &str = "^-?(0|[1-9][0-9]*)(\\.[0-9]+)?$";

/// The schema, printed for a reader: keywords in a usual order, fields in sample order.
pub fn schema(inference: &Inference) -> String {
    let mut payload = Node::default();
    for guess in &inference.columns {
        payload.insert(&guess.path, guess, inference);
    }
    let event_at = if inference.event_at_producer_form || inference.bare {
        json!({ "$ref": "#/$defs/timestamp" })
    } else {
        json!({ "type": "string", "$comment": "not every sample's event_at is YYYY-MM-DD HH:MM:SS: check what the daemon accepts (docs: Add an event type)" })
    };
    let v = |value: Value| Doc::Value(value);
    let document = Doc::Object(vec![
        (
            "$schema".into(),
            v(json!("https://json-schema.org/draft/2020-12/schema")),
        ),
        (
            "title".into(),
            v(json!(format!("{} event (draft)", inference.name))),
        ),
        (
            "$comment".into(),
            v(json!(format!(
                "Drafted by etl infer from {} sample(s). Review it: a field is required when \
                 every sample has it; add a field's name to its object's `required` list to \
                 require it. Install it as schemas/{}.schema.json.",
                inference.samples, inference.name
            ))),
        ),
        ("type".into(), v(json!("object"))),
        ("required".into(), v(json!(["metadata", "payload"]))),
        (
            "properties".into(),
            Doc::Object(vec![
                (
                    "metadata".into(),
                    Doc::Object(vec![
                        ("type".into(), v(json!("object"))),
                        (
                            "required".into(),
                            v(json!(["type", "event_at", "event_id"])),
                        ),
                        (
                            "properties".into(),
                            Doc::Object(vec![
                                (
                                    "type".into(),
                                    v(json!({ "const": inference.envelope_type })),
                                ),
                                ("event_at".into(), v(event_at)),
                                ("event_id".into(), v(json!({ "$ref": "#/$defs/uuid" }))),
                            ]),
                        ),
                    ]),
                ),
                ("payload".into(), payload.to_doc()),
            ]),
        ),
        (
            "$defs".into(),
            Doc::Object(vec![
                (
                    "timestamp".into(),
                    v(json!({
                        "description": "Naive local time with one-second resolution, e.g. 2024-05-01 12:00:03.",
                        "type": "string",
                        "pattern": TIMESTAMP_PATTERN
                    })),
                ),
                (
                    "uuid".into(),
                    v(json!({ "type": "string", "pattern": UUID_PATTERN })),
                ),
                (
                    "int64".into(),
                    v(json!({ "type": "integer", "minimum": i64::MIN, "maximum": i64::MAX })),
                ),
            ]),
        ),
    ]);
    let mut text = String::new();
    document.write(&mut text, 0);
    text.push('\n');
    text
}

/// A schema in the order it is read: objects built here keep their members' order, and the
/// values inside print their keywords in [`KEYWORDS`] order.
enum Doc {
    Value(Value),
    Object(Vec<(String, Doc)>),
}

/// The order keywords are printed in; others follow, alphabetically.
const KEYWORDS: &[&str] = &[
    "$schema",
    "title",
    "description",
    "$comment",
    "type",
    "const",
    "$ref",
    "anyOf",
    "pattern",
    "minimum",
    "maximum",
    "required",
    "properties",
    "$defs",
];

impl Doc {
    fn write(&self, out: &mut String, indent: usize) {
        match self {
            Doc::Value(value) => write_value(value, out, indent),
            Doc::Object(members) => {
                let members: Vec<(&str, &Doc)> =
                    members.iter().map(|(k, d)| (k.as_str(), d)).collect();
                write_object(&members, out, indent, |d, out, indent| d.write(out, indent));
            }
        }
    }
}

fn write_value(value: &Value, out: &mut String, indent: usize) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&str, &Value)> =
                map.iter().map(|(k, v)| (k.as_str(), v)).collect();
            let rank = |k: &str| {
                KEYWORDS
                    .iter()
                    .position(|w| *w == k)
                    .unwrap_or(KEYWORDS.len())
            };
            members.sort_by(|a, b| (rank(a.0), a.0).cmp(&(rank(b.0), b.0)));
            write_object(&members, out, indent, |v, out, i| write_value(v, out, i));
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&"  ".repeat(indent + 1));
                write_value(item, out, indent + 1);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&"  ".repeat(indent));
            out.push(']');
        }
        // Scalars, and lists of them on one line (`"required": ["id", "name"]`).
        other => out.push_str(&other.to_string().replace("\",\"", "\", \"")),
    }
}

fn write_object<T>(
    members: &[(&str, T)],
    out: &mut String,
    indent: usize,
    write: impl Fn(&T, &mut String, usize),
) {
    if members.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push_str("{\n");
    for (i, (key, value)) in members.iter().enumerate() {
        out.push_str(&"  ".repeat(indent + 1));
        out.push_str(&Value::String((*key).to_owned()).to_string());
        out.push_str(": ");
        write(value, out, indent + 1);
        out.push_str(if i + 1 < members.len() { ",\n" } else { "\n" });
    }
    out.push_str(&"  ".repeat(indent));
    out.push('}');
}

/// An object of the payload: its members in sample order, each a field or a nested object.
#[derive(Default)]
struct Node {
    members: Vec<(String, Member)>,
    /// Inside the payload (which itself is always there), not the payload.
    nested: bool,
}

enum Member {
    Field(Value, bool),
    Object(Node),
}

impl Node {
    fn insert(&mut self, path: &[String], guess: &Guess, inference: &Inference) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if rest.is_empty() {
            let required = guess.required(inference.samples);
            self.members.push((
                first.clone(),
                Member::Field(field(guess, inference), required),
            ));
            return;
        }
        let position = self
            .members
            .iter()
            .position(|(k, m)| k == first && matches!(m, Member::Object(_)));
        let i = position.unwrap_or_else(|| {
            self.members
                .push((first.clone(), Member::Object(Node::default())));
            self.members.len() - 1
        });
        if let Member::Object(inner) = &mut self.members[i].1 {
            inner.insert(rest, guess, inference);
        }
    }

    fn to_doc(&self) -> Doc {
        let mut properties = Vec::new();
        let mut required = Vec::new();
        let mut nullable = false;
        for (key, member) in &self.members {
            match member {
                Member::Field(schema, is_required) => {
                    properties.push((key.clone(), Doc::Value(schema.clone())));
                    if *is_required {
                        required.push(Value::String(key.clone()));
                    }
                }
                Member::Object(inner) => {
                    // An object is required when one of its fields is (it is then in every
                    // sample); otherwise it may be absent or null.
                    if inner.any_required() {
                        required.push(Value::String(key.clone()));
                    }
                    properties.push((key.clone(), inner.to_doc()));
                }
            }
        }
        if !self.any_required() {
            nullable = true;
        }
        let kind = if nullable && self.nested {
            json!(["object", "null"])
        } else {
            json!("object")
        };
        Doc::Object(vec![
            ("type".into(), Doc::Value(kind)),
            ("required".into(), Doc::Value(Value::Array(required))),
            ("properties".into(), Doc::Object(properties)),
        ])
    }

    fn any_required(&self) -> bool {
        self.members.iter().any(|(_, m)| match m {
            Member::Field(_, required) => *required,
            Member::Object(inner) => inner.any_required(),
        })
    }
}

/// One field's schema, with its evidence as a `$comment`.
fn field(guess: &Guess, inference: &Inference) -> Value {
    let base = match guess.format {
        Format::Boolean => json!({ "type": "boolean" }),
        Format::Integer => json!({ "$ref": "#/$defs/int64" }),
        Format::Number => json!({ "type": "number" }),
        Format::DecimalText => json!({ "type": "string", "pattern": DECIMAL_PATTERN }),
        Format::Timestamp => json!({ "$ref": "#/$defs/timestamp" }),
        Format::Rfc3339 => json!({ "type": "string", "pattern": RFC3339_PATTERN }),
        Format::Uuid => json!({ "$ref": "#/$defs/uuid" }),
        Format::Text => json!({ "type": "string" }),
        Format::Json => json!({ "type": ["array", "object"] }),
        Format::Unknown => json!({}),
    };
    let mut comment = guess.evidence.clone();
    let missing = inference.samples - guess.present;
    if missing > 0 {
        comment.push_str(&format!(
            "; missing from {}: optional (add {:?} to `required` to require it)",
            inference.share(missing),
            guess.path.last().map(String::as_str).unwrap_or_default()
        ));
    }
    let mut schema = if guess.nulls > 0 {
        comment.push_str(&format!("; null in {}", inference.share(guess.nulls)));
        json!({ "anyOf": [base, { "type": "null" }] })
    } else {
        base
    };
    if let Value::Object(map) = &mut schema {
        map.insert("$comment".into(), Value::String(comment));
    }
    schema
}
