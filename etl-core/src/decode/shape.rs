//! The one-pass way to a typed event: a type's schema and columns compiled into a shape that a
//! document is read against as it is parsed, without building its value tree first.
//!
//! Building a `serde_json::Value` for the whole document, walking it again to validate and a
//! third time to type the columns, then freeing it, cost more than half of the daemon's work per
//! event (callgrind). Here the objects the schema describes (`type: object` with `properties`,
//! `required` and `additionalProperties`) are checked as they stream past. Each value under them
//! is held to its own subschema and typed into the row's cells there and then: strings are
//! borrowed from the document, other scalars cost no allocation, and a subtree the schema says
//! more about is built whole. A subschema is checked by hand where `jsonschema`'s verdict is
//! certain (a JSON type alone, a constant string, boolean or null, integer bounds, a pattern of
//! fixed-width ASCII sets such as the producers' timestamps and UUIDs) and by `jsonschema`,
//! compiled once per distinct subschema, otherwise. Members nobody asked about are skimmed
//! (still checked for repeated keys).
//!
//! This path only ever *accepts*. Whenever it cannot be sure (a value fails, a key repeats, a
//! required member is missing, a metadata field does not parse, a schema keyword it does not
//! model), it declines and [`super::decode`] runs the full path, which gives the verdict and the
//! exact reason. So rejections read the same, and an accepted event is the event the full path
//! would have made: the same parser (serde_json, strict about repeated keys), the same
//! `jsonschema` semantics for every value, the same typing functions for every cell. The tests
//! in `decode/equivalence.rs` hold the two paths to that on the shipped types and thousands of
//! mutated documents, and every hand check to `jsonschema`'s verdict.
//!
//! Written by hand because no crate validates a JSON Schema while deserializing into a
//! caller's own types.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use jsonschema::Validator;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

// The column module only, not the catalog: the catalog's event types hold a shape.
use crate::catalog::column::{parse_timestamp, resolve, Cell, Column};

use super::json::Leaf;

/// A type's schema and columns, compiled for [`Shape::read`]. Built once per type at start-up;
/// `None` in the catalog when the schema uses something this module does not model (then every
/// document takes the full path, as before).
pub struct Shape {
    root: Node,
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shape")
    }
}

/// What a document's value must be at one place, and which fields are read from it.
struct Node {
    check: Check,
    /// Fields read from this value, or from under it (`rest` is the pointer's remainder).
    takes: Vec<Take>,
}

enum Check {
    /// An object whose members are checked one by one as they are parsed.
    Object(Object),
    /// Any other value: built, then held to its rule (none: anything goes).
    Leaf(Option<Rule>),
}

/// What a value that is not a modelled object must satisfy.
pub(super) enum Rule {
    /// A schema that only names a JSON type.
    Type(JsonType),
    /// A string of a fixed length whose every character is in a set of ASCII characters (see
    /// [`fixed_pattern`]); other values pass unless `string` (the schema also says `type: string`).
    Fixed {
        positions: Vec<[u64; 2]>,
        string: bool,
    },
    /// `const` of a string, a boolean or null: equal or not (a number's equality is
    /// jsonschema's to judge, 1 and 1.0 being the same number).
    Const(Value),
    /// `type: integer` or `number` with integer bounds (see [`Range`]).
    Range(Range),
    /// Its own subschema, compiled by `jsonschema` (shared by every place that has it).
    Schema(Arc<Validator>),
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum JsonType {
    String,
    Boolean,
    Null,
    Object,
    Array,
}

/// An integer or number between integer bounds. Integers compare exactly; a fraction against
/// bounds that a double holds exactly compares exactly too; anything else (a fraction where an
/// integer is asked, where `1.0` counts as one) is left to jsonschema's `fallback`.
pub(super) struct Range {
    integer: bool,
    /// Each bound, and whether it is exclusive.
    min: Option<(i128, bool)>,
    max: Option<(i128, bool)>,
    fallback: Arc<Validator>,
}

/// The largest integer every smaller one of which a double holds exactly.
const EXACT_IN_F64: i128 = 1 << 53;

impl Range {
    fn allows(&self, value: &Value) -> bool {
        let Value::Number(n) = value else {
            return false;
        };
        let whole = n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from));
        if let Some(i) = whole {
            let above = |(b, exclusive): (i128, bool)| if exclusive { i > b } else { i >= b };
            let below = |(b, exclusive): (i128, bool)| if exclusive { i < b } else { i <= b };
            return self.min.is_none_or(above) && self.max.is_none_or(below);
        }
        let exact = [self.min, self.max]
            .iter()
            .flatten()
            .all(|(b, _)| b.abs() <= EXACT_IN_F64);
        match n.as_f64() {
            Some(x) if !self.integer && exact => {
                let above = |(b, exclusive): (i128, bool)| {
                    let b = b as f64;
                    if exclusive {
                        x > b
                    } else {
                        x >= b
                    }
                };
                let below = |(b, exclusive): (i128, bool)| {
                    let b = b as f64;
                    if exclusive {
                        x < b
                    } else {
                        x <= b
                    }
                };
                self.min.is_none_or(above) && self.max.is_none_or(below)
            }
            _ => self.fallback.is_valid(value),
        }
    }
}

impl Rule {
    pub(super) fn allows(&self, leaf: &Leaf) -> bool {
        let text = match leaf {
            Leaf::Str(text) => Some(text.as_ref()),
            Leaf::Value(value) => value.as_str(),
        };
        match (self, leaf) {
            (Rule::Type(t), Leaf::Str(_)) => *t == JsonType::String,
            (Rule::Type(t), Leaf::Value(v)) => match t {
                JsonType::String => v.is_string(),
                JsonType::Boolean => v.is_boolean(),
                JsonType::Null => v.is_null(),
                JsonType::Object => v.is_object(),
                JsonType::Array => v.is_array(),
            },
            // Bytes, not characters: every set holds ASCII only, so a string matches only if
            // it is all ASCII, when its bytes are its characters.
            (Rule::Fixed { positions, string }, _) => match text {
                Some(text) => {
                    text.len() == positions.len()
                        && text
                            .bytes()
                            .zip(positions)
                            // Two 64-bit words, not one u128: a 128-bit shift costs
                            // several instructions per byte.
                            .all(|(b, set)| {
                                b < 128 && set[usize::from(b >> 6)] >> (b & 63) & 1 == 1
                            })
                }
                None => !string,
            },
            (Rule::Const(c), Leaf::Str(text)) => c.as_str() == Some(text.as_ref()),
            (Rule::Const(c), Leaf::Value(v)) => v == c,
            (Rule::Range(_), Leaf::Str(_)) => false,
            (Rule::Range(range), Leaf::Value(v)) => range.allows(v),
            (Rule::Schema(validator), Leaf::Str(text)) => {
                validator.is_valid(&Value::String(text.as_ref().to_owned()))
            }
            (Rule::Schema(validator), Leaf::Value(v)) => validator.is_valid(v),
        }
    }
}

/// The subschemas compiled so far, by their text: the same timestamp rule under four fields,
/// and in every type, is compiled once (compiling costs as much as reading thousands of events).
#[derive(Default)]
pub struct Leaves(Vec<(Value, Arc<Validator>)>);

impl Leaves {
    pub(super) fn rule(&mut self, schema: &Value) -> Result<Rule, Unmodelled> {
        if let Value::Object(map) = schema {
            let named = map
                .iter()
                .filter(|(k, _)| !ANNOTATIONS.contains(&k.as_str()))
                .collect::<Vec<_>>();
            if let Some(rule) = fixed_pattern(&named) {
                return Ok(rule);
            }
            if let [(keyword, value)] = named.as_slice() {
                let json_type = match (keyword.as_str(), value.as_str()) {
                    ("type", Some("string")) => Some(JsonType::String),
                    ("type", Some("boolean")) => Some(JsonType::Boolean),
                    ("type", Some("null")) => Some(JsonType::Null),
                    ("type", Some("object")) => Some(JsonType::Object),
                    ("type", Some("array")) => Some(JsonType::Array),
                    _ => None,
                };
                if let Some(json_type) = json_type {
                    return Ok(Rule::Type(json_type));
                }
                if keyword.as_str() == "const"
                    && (value.is_string() || value.is_boolean() || value.is_null())
                {
                    return Ok(Rule::Const((*value).clone()));
                }
            }
            if let Some((integer, min, max)) = integer_bounds(&named) {
                return Ok(Rule::Range(Range {
                    integer,
                    min,
                    max,
                    fallback: self.compiled(schema)?,
                }));
            }
        }
        Ok(Rule::Schema(self.compiled(schema)?))
    }

    fn compiled(&mut self, schema: &Value) -> Result<Arc<Validator>, Unmodelled> {
        if let Some((_, compiled)) = self.0.iter().find(|(s, _)| s == schema) {
            return Ok(Arc::clone(compiled));
        }
        let compiled = Arc::new(
            jsonschema::draft202012::new(schema)
                .map_err(|e| Unmodelled(format!("a subschema does not compile alone: {e}")))?,
        );
        self.0.push((schema.clone(), Arc::clone(&compiled)));
        Ok(compiled)
    }
}

struct Object {
    members: Vec<Member>,
    /// Bit `i` set: `members[i]` is required.
    required: u64,
    others: Others,
}

struct Member {
    key: String,
    node: Node,
}

/// The members `properties` does not name (`additionalProperties`).
enum Others {
    Any,
    Refused,
    Checked(Box<Node>),
}

/// Where a value read from the document goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Column(usize),
    EventAt,
    EventId,
    /// `metadata.type`: a document in the wrong folder is the full path's to explain.
    EnvelopeType,
}

#[derive(Clone, Debug)]
struct Take {
    target: Target,
    rest: Vec<String>,
}

/// Why a schema has no shape (the catalog then leaves the type to the full path).
#[derive(Debug, PartialEq)]
pub struct Unmodelled(pub String);

/// Keywords that only annotate: they never make a document invalid.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$comment",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$schema",
    "$defs",
    "definitions",
];

/// Keywords whose value is one subschema, an array of them, or a map of them.
const ONE_SCHEMA: &[&str] = &[
    "additionalProperties",
    "items",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "additionalItems",
];
const SCHEMA_ARRAYS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
const SCHEMA_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];

/// Keywords whose meaning depends on more than the subschema they sit in.
const CONTEXTUAL: &[&str] = &[
    "$id",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$recursiveRef",
    "$recursiveAnchor",
    "$vocabulary",
    "unevaluatedItems",
    "unevaluatedProperties",
];

impl Shape {
    /// Compiles `schema` (a type's whole schema document) with the type's `columns`.
    pub fn new(
        schema: &Value,
        columns: &[Column],
        leaves: &mut Leaves,
    ) -> Result<Shape, Unmodelled> {
        let inlined = inline(schema, schema, 0)?;
        let mut takes = vec![
            take(Target::EventAt, &["metadata", "event_at"]),
            take(Target::EventId, &["metadata", "event_id"]),
            take(Target::EnvelopeType, &["metadata", "type"]),
        ];
        for (i, column) in columns.iter().enumerate() {
            takes.push(Take {
                target: Target::Column(i),
                rest: column.field.tokens().to_vec(),
            });
        }
        let root = node(&inlined, takes, true, leaves)?;
        match root.check {
            Check::Object(_) => Ok(Shape { root }),
            Check::Leaf(_) => Err(Unmodelled("the root is not an object schema".into())),
        }
    }

    /// Reads `text` (no byte order mark) against the shape, for a type with these `columns`
    /// whose documents say `metadata.type` is `envelope_type`: the envelope, the typed row and
    /// the payload's text, or `None` when the full path must decide.
    pub fn read<'de>(
        &self,
        columns: &[Column],
        envelope_type: &str,
        text: &'de str,
    ) -> Option<Read<'de>> {
        let mut found = Found {
            columns,
            envelope_type,
            cells: vec![None; columns.len()],
            event_at: None,
            event_id: None,
            payload: None,
            text,
            payload_from: None,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        Seed {
            node: &self.root,
            found: &mut found,
            root: true,
        }
        .deserialize(&mut de)
        .ok()?;
        de.end().ok()?;
        let mut row = Vec::with_capacity(columns.len());
        for (column, cell) in columns.iter().zip(found.cells) {
            let cell = cell.unwrap_or(Cell::Null);
            if cell == Cell::Null && !column.optional {
                return None;
            }
            row.push(cell);
        }
        Some(Read {
            event_at: found.event_at?,
            event_id: found.event_id?,
            row,
            payload: found.payload,
        })
    }
}

/// What [`Shape::read`] accepted: the envelope's time and id, the row, the payload's text.
#[derive(Debug, PartialEq)]
pub struct Read<'de> {
    pub event_at: chrono::NaiveDateTime,
    pub event_id: uuid::Uuid,
    pub row: Vec<Cell>,
    pub payload: Option<&'de str>,
}

fn take(target: Target, path: &[&str]) -> Take {
    Take {
        target,
        rest: path.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// `schema` with every `$ref` to a place in the same document replaced by what it points at
/// (`{"$ref": R, ...}` is R and the rest, so it becomes `allOf: [R]` beside the rest). A
/// reference elsewhere, or a cycle, has no shape.
fn inline(schema: &Value, root: &Value, depth: usize) -> Result<Value, Unmodelled> {
    if depth > 32 {
        return Err(Unmodelled("references nest too deep (a cycle?)".into()));
    }
    let Value::Object(map) = schema else {
        return Ok(schema.clone());
    };
    if let Some(keyword) = CONTEXTUAL.iter().find(|k| map.contains_key(**k)) {
        // The root's own `$id` only names the document; local references still resolve.
        if !(*keyword == "$id" && std::ptr::eq(schema, root)) {
            return Err(Unmodelled(format!("uses {keyword}")));
        }
    }
    let mut out = serde_json::Map::new();
    for (keyword, value) in map {
        let value = if ONE_SCHEMA.contains(&keyword.as_str()) {
            inline(value, root, depth)?
        } else if SCHEMA_ARRAYS.contains(&keyword.as_str()) {
            match value {
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|s| inline(s, root, depth))
                        .collect::<Result<_, _>>()?,
                ),
                other => other.clone(),
            }
        } else if SCHEMA_MAPS.contains(&keyword.as_str()) && keyword != "$defs" {
            match value {
                Value::Object(schemas) => Value::Object(
                    schemas
                        .iter()
                        .map(|(k, s)| Ok((k.clone(), inline(s, root, depth)?)))
                        .collect::<Result<_, Unmodelled>>()?,
                ),
                other => other.clone(),
            }
        } else {
            value.clone()
        };
        out.insert(keyword.clone(), value);
    }
    // Definitions are only reached through references, which are inlined: drop them.
    out.remove("$defs");
    out.remove("definitions");
    let Some(reference) = out.remove("$ref") else {
        return Ok(Value::Object(out));
    };
    let target = match reference.as_str() {
        Some(r) if r.starts_with("#/") && !r.contains('%') => root
            .pointer(&r[1..])
            .ok_or_else(|| Unmodelled(format!("$ref {r} points at nothing")))?,
        _ => return Err(Unmodelled(format!("$ref {reference} is not local"))),
    };
    let target = inline(target, root, depth + 1)?;
    if out.keys().all(|k| ANNOTATIONS.contains(&k.as_str())) {
        return Ok(target);
    }
    let mut all = vec![target];
    if let Some(Value::Array(more)) = out.remove("allOf") {
        all.extend(more);
    }
    out.insert("allOf".into(), Value::Array(all));
    Ok(Value::Object(out))
}

/// The node for `schema` (inlined) with the fields read at or under it.
fn node(
    schema: &Value,
    takes: Vec<Take>,
    root: bool,
    leaves: &mut Leaves,
) -> Result<Node, Unmodelled> {
    let object = match schema {
        Value::Object(map) => {
            map.get("type").and_then(Value::as_str) == Some("object")
                && map.keys().all(|k| {
                    ANNOTATIONS.contains(&k.as_str())
                        || ["type", "properties", "required", "additionalProperties"]
                            .contains(&k.as_str())
                        || (root && k == "$id")
                })
                // A field read at the object itself needs its value whole.
                && takes.iter().all(|t| !t.rest.is_empty())
        }
        _ => false,
    };
    if !object {
        return leaf(schema, takes, leaves);
    }
    let empty = serde_json::Map::new();
    let properties = match schema.get("properties") {
        None => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Err(Unmodelled("properties is not an object".into())),
    };
    let additional = schema.get("additionalProperties");
    let others = match additional {
        None | Some(Value::Bool(true)) => Others::Any,
        Some(Value::Bool(false)) => Others::Refused,
        Some(s) => Others::Checked(Box::new(node(s, Vec::new(), false, leaves)?)),
    };
    let mut members: Vec<Member> = Vec::new();
    let mut keys: Vec<&String> = properties.keys().collect();
    // Fields read from members the schema does not name get a member of their own, checked as
    // `additionalProperties` says (a refused one can never be present: it reads as absent).
    for t in &takes {
        if !properties.contains_key(&t.rest[0])
            && !matches!(others, Others::Refused)
            && !keys.contains(&&t.rest[0])
        {
            keys.push(&t.rest[0]);
        }
    }
    for key in keys {
        let child_takes: Vec<Take> = takes
            .iter()
            .filter(|t| &t.rest[0] == key)
            .map(|t| Take {
                target: t.target,
                rest: t.rest[1..].to_vec(),
            })
            .collect();
        let child = match properties.get(key) {
            Some(s) => node(s, child_takes, false, leaves)?,
            None => node(
                additional.unwrap_or(&Value::Bool(true)),
                child_takes,
                false,
                leaves,
            )?,
        };
        members.push(Member {
            key: key.clone(),
            node: child,
        });
    }
    if members.len() > 64 {
        return Err(Unmodelled("more than 64 properties in one object".into()));
    }
    let mut required = 0u64;
    match schema.get("required") {
        None => {}
        Some(Value::Array(names)) => {
            for name in names {
                let Some(name) = name.as_str() else {
                    return Err(Unmodelled("required lists a non-string".into()));
                };
                match members.iter().position(|m| m.key == name) {
                    Some(i) => required |= 1 << i,
                    None => {
                        members.push(Member {
                            key: name.to_owned(),
                            node: node(
                                additional.unwrap_or(&Value::Bool(true)),
                                Vec::new(),
                                false,
                                leaves,
                            )?,
                        });
                        if members.len() > 64 {
                            return Err(Unmodelled("more than 64 members in one object".into()));
                        }
                        required |= 1 << (members.len() - 1);
                    }
                }
            }
        }
        Some(_) => return Err(Unmodelled("required is not an array".into())),
    }
    Ok(Node {
        check: Check::Object(Object {
            members,
            required,
            others,
        }),
        takes: Vec::new(),
    })
}

fn leaf(schema: &Value, takes: Vec<Take>, leaves: &mut Leaves) -> Result<Node, Unmodelled> {
    let trivial = match schema {
        Value::Bool(true) => true,
        Value::Object(map) => map.keys().all(|k| ANNOTATIONS.contains(&k.as_str())),
        _ => false,
    };
    let rule = if trivial {
        None
    } else {
        Some(leaves.rule(schema)?)
    };
    Ok(Node {
        check: Check::Leaf(rule),
        takes,
    })
}

/// The rule for `{"type": "string", "pattern": P}` (the type optional) when P is anchored at both
/// ends and, between them, only literal characters and bracketed sets of them (ranges allowed,
/// no negation), each at most repeated a fixed `{n}` times: the producers' timestamps and UUIDs.
/// Such a pattern matches exactly the strings of its length whose every character is in its
/// place's set, in ECMA-262 as in any engine, so no regular expression needs to run. Anything
/// else in P (escapes, `.`, alternatives, open repetition) leaves it to `jsonschema`.
pub(super) fn fixed_pattern(named: &[(&String, &Value)]) -> Option<Rule> {
    let mut pattern = None;
    let mut string = false;
    for (keyword, value) in named {
        match (keyword.as_str(), value) {
            ("pattern", Value::String(p)) => pattern = Some(p.as_str()),
            ("type", Value::String(t)) if t == "string" => string = true,
            _ => return None,
        }
    }
    let body = pattern?.strip_prefix('^')?.strip_suffix('$')?;
    let bytes = body.as_bytes();
    let literal = |b: u8| b.is_ascii_alphanumeric() || b" -:_,;@#%&'\"<>=!~`/".contains(&b);
    let mut positions = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let set: u128 = if bytes[at] == b'[' {
            let close = at + body[at..].find(']')?;
            let inner = &bytes[at + 1..close];
            if inner.is_empty() || inner[0] == b'^' {
                return None;
            }
            let mut set = 0u128;
            let mut i = 0;
            while i < inner.len() {
                let range = i + 2 < inner.len() && inner[i + 1] == b'-';
                let (lo, hi) = if range {
                    (inner[i], inner[i + 2])
                } else {
                    (inner[i], inner[i])
                };
                if !literal(lo) || !literal(hi) || lo > hi {
                    return None;
                }
                for b in lo..=hi {
                    set |= 1 << b;
                }
                i += if range { 3 } else { 1 };
            }
            at = close + 1;
            set
        } else if literal(bytes[at]) {
            at += 1;
            1 << bytes[at - 1]
        } else {
            return None;
        };
        let mut times = 1;
        if bytes.get(at) == Some(&b'{') {
            let close = at + body[at..].find('}')?;
            times = body[at + 1..close]
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= 64)?;
            at = close + 1;
        }
        let words = [set as u64, (set >> 64) as u64];
        positions.extend(std::iter::repeat_n(words, times));
    }
    Some(Rule::Fixed { positions, string })
}

/// `type: integer` or `number` with bounds that are all integers, and nothing else: whether it
/// is `integer`, and the bounds (each with whether it is exclusive).
#[allow(clippy::type_complexity)]
fn integer_bounds(
    named: &[(&String, &Value)],
) -> Option<(bool, Option<(i128, bool)>, Option<(i128, bool)>)> {
    let mut integer = None;
    let (mut min, mut max) = (None, None);
    for (keyword, value) in named {
        let bound = || {
            value
                .as_i64()
                .map(i128::from)
                .or_else(|| value.as_u64().map(i128::from))
        };
        match (keyword.as_str(), value.as_str()) {
            ("type", Some("integer")) => integer = Some(true),
            ("type", Some("number")) => integer = Some(false),
            ("minimum", _) if min.is_none() => min = Some((bound()?, false)),
            ("exclusiveMinimum", _) if min.is_none() => min = Some((bound()?, true)),
            ("maximum", _) if max.is_none() => max = Some((bound()?, false)),
            ("exclusiveMaximum", _) if max.is_none() => max = Some((bound()?, true)),
            _ => return None,
        }
    }
    Some((integer?, min, max))
}

/// What a read has found so far.
struct Found<'k, 'de> {
    columns: &'k [Column],
    envelope_type: &'k str,
    cells: Vec<Option<Cell>>,
    event_at: Option<chrono::NaiveDateTime>,
    event_id: Option<uuid::Uuid>,
    payload: Option<&'de str>,
    /// The document, and where the payload's text starts while its member is being read.
    text: &'de str,
    payload_from: Option<usize>,
}

/// JSON's insignificant whitespace.
fn blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'de> Found<'_, 'de> {
    /// Where the value of the member named by `name` (a slice of the document) starts: past its
    /// closing quote, the colon and any whitespace.
    fn value_after(&self, name: &str) -> usize {
        let bytes = self.text.as_bytes();
        let mut at = name.as_ptr() as usize - self.text.as_ptr() as usize + name.len() + 1;
        while at < bytes.len() && (blank(bytes[at]) || bytes[at] == b':') {
            at += 1;
        }
        at
    }

    /// Ends the payload's text before `until` (the next member's opening quote, or the root's
    /// closing brace), less whitespace and a separating comma. Only whitespace and one comma
    /// can lie between a value and what follows it, and the parser has checked the document
    /// up to `until`.
    fn payload_ends(&mut self, until: usize) {
        if let Some(from) = self.payload_from.take() {
            let bytes = self.text.as_bytes();
            let mut end = until;
            while end > from && (blank(bytes[end - 1]) || bytes[end - 1] == b',') {
                end -= 1;
            }
            self.payload = self.text.get(from..end);
        }
    }
}

impl Found<'_, '_> {
    /// Reads the fields `takes` asks of `leaf`; false when one cannot be read (the full path
    /// will say why).
    fn take(&mut self, takes: &[Take], leaf: &Leaf) -> bool {
        for t in takes {
            let at = match leaf {
                Leaf::Str(text) if t.rest.is_empty() => At::Str(text),
                Leaf::Str(_) => At::Absent,
                Leaf::Value(value) => match resolve(&t.rest, value) {
                    Some(Value::String(text)) => At::Str(text),
                    Some(value) => At::Value(value),
                    None => At::Absent,
                },
            };
            let ok = match (t.target, at) {
                (Target::Column(i), at) => {
                    let sql_type = &self.columns[i].sql_type;
                    let cell = match at {
                        At::Str(text) => sql_type.cell_of_str(text).and_then(Result::ok),
                        At::Value(value) => sql_type.cell(Some(value)).ok(),
                        At::Absent => Some(Cell::Null),
                    };
                    let ok = cell.is_some();
                    self.cells[i] = cell;
                    ok
                }
                (Target::EventAt, At::Str(text)) => {
                    self.event_at = parse_timestamp(text).ok();
                    self.event_at.is_some()
                }
                (Target::EventId, At::Str(text)) => {
                    self.event_id = uuid::Uuid::parse_str(text).ok();
                    self.event_id.is_some()
                }
                (Target::EnvelopeType, At::Str(declared)) => declared == self.envelope_type,
                (Target::EnvelopeType, _) => true,
                (Target::EventAt | Target::EventId, _) => false,
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// Where a field read from a leaf is.
#[derive(Clone, Copy)]
enum At<'a> {
    Str(&'a str),
    Value(&'a Value),
    Absent,
}

fn decline<E: de::Error>() -> E {
    E::custom("the full path decides")
}

/// Reads one value against its node.
struct Seed<'n, 'f, 'k, 'de> {
    node: &'n Node,
    found: &'f mut Found<'k, 'de>,
    root: bool,
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_, '_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match &self.node.check {
            Check::Object(_) => deserializer.deserialize_map(self),
            Check::Leaf(None) if self.node.takes.is_empty() => Skim.deserialize(deserializer),
            Check::Leaf(rule) => {
                let leaf = super::json::leaf(deserializer)?;
                if let Some(rule) = rule {
                    if !rule.allows(&leaf) {
                        return Err(decline());
                    }
                }
                if self.found.take(&self.node.takes, &leaf) {
                    Ok(())
                } else {
                    Err(decline())
                }
            }
        }
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let Check::Object(object) = &self.node.check else {
            return Err(decline());
        };
        let mut seen = 0u64;
        let mut others: Vec<Cow<'de, str>> = Vec::new();
        while let Some(key) = access.next_key_seed(Key)? {
            let member = object.members.iter().position(|m| m.key == key);
            match member {
                Some(i) => {
                    if seen & (1 << i) != 0 {
                        return Err(decline());
                    }
                    seen |= 1 << i;
                }
                None => {
                    if !is_new(&others, &key) {
                        return Err(decline());
                    }
                }
            }
            let node = match (member, &object.others) {
                (Some(i), _) => Some(&object.members[i].node),
                (None, Others::Refused) => return Err(decline()),
                (None, Others::Any) => None,
                (None, Others::Checked(node)) => Some(&**node),
            };
            if self.root {
                // The raw zone keeps the payload's text as received. Its bounds come from the
                // names around it, which point into the document (a name written with escapes
                // is a copy: then the full path, which reads the payload as text, decides).
                let Cow::Borrowed(name) = key else {
                    return Err(decline());
                };
                let quote = name.as_ptr() as usize - self.found.text.as_ptr() as usize - 1;
                self.found.payload_ends(quote);
                if name == "payload" {
                    self.found.payload_from = Some(self.found.value_after(name));
                }
            }
            if let Some(node) = node {
                access.next_value_seed(Seed {
                    node,
                    found: &mut *self.found,
                    root: false,
                })?;
            } else {
                access.next_value_seed(Skim)?;
            }
            if member.is_none() {
                others.push(key);
            }
        }
        if seen & object.required != object.required {
            return Err(decline());
        }
        if self.root {
            // The root's closing brace is the document's last character but whitespace (the
            // caller checks that nothing else follows).
            let end = self
                .found
                .text
                .trim_end_matches([' ', '\t', '\n', '\r'])
                .len();
            self.found.payload_ends(end.saturating_sub(1));
        }
        Ok(())
    }
}

/// Whether `key` is not among the names `seen` so far in one object. Past a few dozen names the
/// full path's map is the better judge of repetition, so the answer is then no (decline).
fn is_new(seen: &[Cow<'_, str>], key: &str) -> bool {
    seen.len() <= 32 && !seen.iter().any(|k| k == key)
}

/// A member's name, borrowed from the document unless it had escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// Passes over a value nobody reads, refusing (declining) only a repeated key.
struct Skim;

impl<'de> DeserializeSeed<'de> for Skim {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skim {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skim)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        while let Some(key) = access.next_key_seed(Key)? {
            if !is_new(&keys, &key) {
                return Err(decline());
            }
            access.next_value_seed(Skim)?;
            keys.push(key);
        }
        Ok(())
    }
}
