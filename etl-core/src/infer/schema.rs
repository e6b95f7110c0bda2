//! The drafted JSON Schema: the envelope (`metadata.type`, `event_at`, `event_id`) and the
//! payload's fields nested as the samples nest them, each required only if every sample has
//! it, with a `$comment` giving the evidence so a reviewer can tighten or relax it.

use serde_json::{json, Map, Value};

use super::model::{Format, Guess, Inference};

const TIMESTAMP_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-5][0-9]$";
const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const RFC3339_PATTERN: &str =
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$";
const DECIMAL_PATTERN: &str = "^-?(0|[1-9][0-9]*)(\\.[0-9]+)?$";

/// The schema, pretty-printed (serde_json keeps keys sorted; the comments say what to do).
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
    let document = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("{} event (draft)", inference.name),
        "$comment": format!(
            "Drafted by etl infer from {} sample(s). Review it: a field is required when every \
             sample has it; add a field's name to its object's `required` list to require it. \
             Install it as schemas/{}.schema.json.",
            inference.samples, inference.name
        ),
        "type": "object",
        "required": ["metadata", "payload"],
        "properties": {
            "metadata": {
                "type": "object",
                "required": ["type", "event_at", "event_id"],
                "properties": {
                    "type": { "const": inference.envelope_type },
                    "event_at": event_at,
                    "event_id": { "$ref": "#/$defs/uuid" }
                }
            },
            "payload": payload.to_schema()
        },
        "$defs": {
            "timestamp": {
                "description": "Naive local time with one-second resolution, e.g. 2024-05-01 12:00:03.",
                "type": "string",
                "pattern": TIMESTAMP_PATTERN
            },
            "uuid": { "type": "string", "pattern": UUID_PATTERN },
            "int64": {
                "type": "integer",
                "minimum": i64::MIN,
                "maximum": i64::MAX
            }
        }
    });
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

/// An object of the payload: its members in sample order, each a field or a nested object.
#[derive(Default)]
struct Node {
    members: Vec<(String, Member)>,
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

    fn to_schema(&self) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for (key, member) in &self.members {
            match member {
                Member::Field(schema, is_required) => {
                    properties.insert(key.clone(), schema.clone());
                    if *is_required {
                        required.push(Value::String(key.clone()));
                    }
                }
                Member::Object(inner) => {
                    // An object is required when one of its fields is (it is then in every
                    // sample); otherwise it may be absent or null.
                    let mut schema = inner.to_schema();
                    if inner.any_required() {
                        required.push(Value::String(key.clone()));
                    } else if let Value::Object(map) = &mut schema {
                        map.insert("type".into(), json!(["object", "null"]));
                    }
                    properties.insert(key.clone(), schema);
                }
            }
        }
        json!({ "type": "object", "required": required, "properties": properties })
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
