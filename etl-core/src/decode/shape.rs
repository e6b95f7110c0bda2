//! The one-pass way to a typed event: a type's schema and columns compiled into a shape that a
//! document is read against as it is parsed, without building its value tree first.
//!
//! Building a `serde_json::Value` for the whole document, walking it again to validate and a
//! third time to type the columns, then freeing it, cost more than half of the daemon's work per
//! event (callgrind). Here the objects the schema describes (`type: object` with `properties`,
//! `required` and `additionalProperties`) are checked as they stream past; only the values
//! under them (a string with its `pattern`, a number with its bounds, any subtree the schema
//! says more about) are built, each validated by `jsonschema` against its own compiled
//! subschema, and typed into the row's cells there and then. Members nobody asked about are
//! skimmed (still checked for repeated keys).
//!
//! This path only ever *accepts*. Whenever it cannot be sure (a value fails, a key repeats, a
//! required member is missing, a metadata field does not parse, a schema keyword it does not
//! model), it declines and [`super::decode`] runs the full path, which gives the verdict and the
//! exact reason. So rejections read the same, and an accepted event is the event the full path
//! would have made: the same parser (serde_json, strict about repeated keys), the same
//! `jsonschema` semantics for every value, the same typing functions for every cell. The
//! `equivalence` tests hold the two paths to that on the shipped types and thousands of
//! mutated documents.
//!
//! Written by hand because no crate validates a JSON Schema while deserializing into a
//! caller's own types; it is small because everything but the object structure is delegated.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use jsonschema::Validator;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::catalog::column::{parse_timestamp, resolve};
use crate::catalog::{Cell, EventType};
use crate::event::Metadata;

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
enum Rule {
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
enum JsonType {
    String,
    Boolean,
    Null,
    Object,
    Array,
}

/// An integer or number between integer bounds. Integers compare exactly; a fraction against
/// bounds that a double holds exactly compares exactly too; anything else (a fraction where an
/// integer is asked, where `1.0` counts as one) is left to jsonschema's `fallback`.
struct Range {
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
    fn allows(&self, leaf: &Leaf) -> bool {
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
    fn rule(&mut self, schema: &Value) -> Result<Rule, Unmodelled> {
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

/// Why a schema has no shape (for tests and the start-up's debug line).
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
    /// Compiles `schema` (the type's whole schema document) with `kind`'s columns.
    pub fn new(schema: &Value, kind: &EventType, leaves: &mut Leaves) -> Result<Shape, Unmodelled> {
        let inlined = inline(schema, schema, 0)?;
        let mut takes = vec![
            take(Target::EventAt, &["metadata", "event_at"]),
            take(Target::EventId, &["metadata", "event_id"]),
            take(Target::EnvelopeType, &["metadata", "type"]),
        ];
        for (i, column) in kind.columns.iter().enumerate() {
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

    /// Reads `text` (no byte order mark) against the shape: the envelope, the typed row and the
    /// payload's text, or `None` when the full path must decide.
    pub fn read<'de>(
        &self,
        kind: &EventType,
        text: &'de str,
    ) -> Option<(Metadata, Vec<Cell>, Option<&'de str>)> {
        let mut found = Found {
            kind,
            cells: vec![None; kind.columns.len()],
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
        let meta = Metadata {
            event_at: found.event_at?,
            event_id: found.event_id?,
        };
        let mut row = Vec::with_capacity(kind.columns.len());
        for (column, cell) in kind.columns.iter().zip(found.cells) {
            let cell = cell.unwrap_or(Cell::Null);
            if cell == Cell::Null && !column.optional {
                return None;
            }
            row.push(cell);
        }
        Some((meta, row, found.payload))
    }
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
fn fixed_pattern(named: &[(&String, &Value)]) -> Option<Rule> {
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
    kind: &'k EventType,
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
                    let sql_type = &self.kind.columns[i].sql_type;
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
                (Target::EnvelopeType, At::Str(declared)) => declared == self.kind.envelope_type,
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
                    if others.len() > 32 || others.contains(&key) {
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
            // Past a few dozen names the full path's map is the better judge of repetition.
            if keys.len() > 32 || keys.contains(&key) {
                return Err(decline());
            }
            access.next_value_seed(Skim)?;
            keys.push(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod equivalence {
    //! The one-pass read against the full path, document by document: whenever the read
    //! accepts, the full path accepts with the same envelope, row and payload; and on these
    //! schemas it accepts exactly what the full path accepts.

    use serde_json::json;

    use crate::catalog::{Catalog, Kind};
    use crate::decode::both_ways;

    fn builtin(name: &str) -> Kind {
        let catalog = Catalog::builtin().expect("built-in types");
        catalog.get(name).expect("a built-in type").clone()
    }

    /// A catalog of one type `things` with `declaration` and `schema`.
    fn custom(declaration: &str, schema: &serde_json::Value) -> Kind {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let types = dir.path().join("types");
        let schemas = dir.path().join("schemas");
        std::fs::create_dir_all(&types).expect("types folder");
        std::fs::create_dir_all(&schemas).expect("schemas folder");
        std::fs::write(types.join("things.toml"), declaration).expect("declaration");
        std::fs::write(schemas.join("things.schema.json"), schema.to_string()).expect("schema");
        let catalog = Catalog::load_from(&types, &schemas).expect("a valid type");
        catalog.get("things").expect("declared").clone()
    }

    /// Asserts both paths agree on `text`; true when it was accepted.
    fn agree(kind: &Kind, text: &str) -> bool {
        let (fast, full) = both_ways(kind, text.as_bytes());
        match (&fast, &full) {
            (Some(f), Ok(g)) => {
                assert_eq!(f, g, "the paths type differently: {text}");
                true
            }
            (None, Err(_)) => false,
            (Some(_), Err(e)) => {
                panic!("the one-pass read accepted what the full path refuses ({e:?}): {text}")
            }
            (None, Ok(_)) => panic!("the one-pass read declined a valid document: {text}"),
        }
    }

    /// Every place in `value`, as a path of keys and indexes.
    fn places(value: &serde_json::Value, here: Vec<String>, out: &mut Vec<Vec<String>>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let mut p = here.clone();
                    p.push(k.clone());
                    out.push(p.clone());
                    places(v, p, out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let mut p = here.clone();
                    p.push(i.to_string());
                    out.push(p.clone());
                    places(v, p, out);
                }
            }
            _ => {}
        }
    }

    fn at<'a>(value: &'a mut serde_json::Value, path: &[String]) -> &'a mut serde_json::Value {
        path.iter().fold(value, |v, k| match v {
            serde_json::Value::Object(map) => map.get_mut(k).expect("a place"),
            serde_json::Value::Array(items) => &mut items[k.parse::<usize>().expect("index")],
            _ => unreachable!("places lists containers only"),
        })
    }

    /// The document and hundreds of variations of it: each place removed, replaced by values of
    /// every JSON type, given a sibling; and text-level edits (repeated and escaped keys, a BOM,
    /// trailing bytes, a truncation).
    fn variations(text: &str) -> Vec<String> {
        let original: serde_json::Value = serde_json::from_str(text).expect("a JSON sample");
        let mut out = vec![text.to_owned()];
        let mut all = Vec::new();
        places(&original, Vec::new(), &mut all);
        let replacements = [
            json!(null),
            json!(true),
            json!(0),
            json!(-1),
            json!(1.5),
            json!(1.0),
            json!(9_223_372_036_854_775_807i64),
            json!(18_446_744_073_709_551_615u64),
            json!(""),
            json!("x"),
            json!("2024-02-30 11:58:40"),
            json!("2024-05-01 12:00:03"),
            json!("0d133695-94a0-4f08-88ca-593745d25e35"),
            json!("card"),
            json!("user"),
            json!([]),
            json!([1, {"a": 1}]),
            json!({}),
            json!({"a": {"b": [true]}}),
        ];
        for path in &all {
            let (parent, last) = path.split_at(path.len() - 1);
            let mut removed = original.clone();
            match at(&mut removed, parent) {
                serde_json::Value::Object(map) => {
                    map.remove(&last[0]);
                }
                serde_json::Value::Array(items) => {
                    items.remove(last[0].parse::<usize>().expect("index"));
                }
                _ => {}
            }
            out.push(removed.to_string());
            for r in &replacements {
                let mut changed = original.clone();
                *at(&mut changed, path) = r.clone();
                out.push(changed.to_string());
            }
        }
        for path in std::iter::once(Vec::new()).chain(all.iter().cloned()) {
            let mut extended = original.clone();
            if let serde_json::Value::Object(map) = at(&mut extended, &path) {
                map.insert("extra".into(), json!({"nested": [1, 2]}));
                out.push(extended.to_string());
            }
        }
        let compact = original.to_string();
        out.push(format!("\u{feff}{compact}"));
        out.push(format!("{compact} x"));
        out.push(format!("{compact}{{}}"));
        out.push(compact[..compact.len() / 2].to_owned());
        out.push(compact.replacen("\"id\"", "\"i\\u0064\"", 1));
        out.push(compact.replacen("{\"id\"", "{\"id\":1,\"id\"", 1));
        out.push(compact.replacen("\"metadata\":{", "\"metadata\":{\"type\":\"x\",", 1));
        out.push(compact.replacen("{", "{\"payload\":{},", 1));
        out.push(compact.replacen("{", "{\"extra\":{\"k\":1,\"k\":2},", 1));
        out.push(compact.replacen("{", "{\"extra\":[{\"k\":1,\"k\":2}],", 1));
        out
    }

    fn samples(kind: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../etl/tests/fixtures/reference-events")
            .join(kind);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .expect("the reference events")
            .map(|e| e.expect("an entry").path())
            .collect();
        names.sort();
        names
            .iter()
            .take(6)
            .map(|p| std::fs::read_to_string(p).expect("a sample"))
            .collect()
    }

    #[test]
    fn the_shipped_types_have_a_shape() {
        for name in ["cards", "users"] {
            assert!(builtin(name).shape.is_some(), "{name} has no shape");
        }
    }

    #[test]
    fn the_paths_agree_on_the_reference_events_and_their_variations() {
        for name in ["cards", "users"] {
            let kind = builtin(name);
            let (mut accepted, mut total) = (0, 0);
            for sample in samples(name) {
                assert!(agree(&kind, &sample), "a reference {name} event is refused");
                for text in variations(&sample) {
                    total += 1;
                    accepted += usize::from(agree(&kind, &text));
                }
            }
            // Both outcomes were exercised, many times.
            assert!(
                accepted > 50 && total - accepted > 500,
                "{name}: {accepted} of {total}"
            );
        }
    }

    #[test]
    fn fixed_patterns_match_what_jsonschema_matches() {
        use super::{fixed_pattern, Leaf, Rule};
        let patterns = [
            "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-5][0-9]$",
            "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            "^[a-]{2}$",
            "^[-a]$",
            "^a{0}b$",
            "^x[0-9a-f]{3}y$",
        ];
        let strings = [
            "",
            "a",
            "b",
            "-",
            "a-",
            "--",
            "-a",
            "ab",
            "x0a9y",
            "x0g9y",
            "x0a9yy",
            "2024-05-01 12:00:03",
            "2024-05-01 12:00:63",
            "2024-05-01T12:00:03",
            "2024-05-01 12:00:0",
            "२०२४-05-01 12:00:03",
            "0d133695-94a0-4f08-88ca-593745d25e35",
            "0D133695-94A0-4F08-88CA-593745D25E35",
            "0d133695-94a0-4f08-88ca-593745d25e3",
            "0d133695-94a0-4f08-88ca-593745d25e35\n",
            "0d133695-94a0-4f08-88ca-593745d25e3😀",
        ];
        for pattern in patterns {
            for typed in [true, false] {
                let schema = if typed {
                    json!({"type": "string", "pattern": pattern})
                } else {
                    json!({"pattern": pattern})
                };
                let named: Vec<_> = schema.as_object().expect("an object").iter().collect();
                let rule = fixed_pattern(&named).unwrap_or_else(|| panic!("not fixed: {pattern}"));
                assert!(matches!(rule, Rule::Fixed { .. }));
                let validator = jsonschema::draft202012::new(&schema).expect("compiles");
                for value in strings
                    .iter()
                    .map(|s| json!(s))
                    .chain([json!(5), json!(null)])
                {
                    assert_eq!(
                        rule.allows(&Leaf::Value(value.clone())),
                        validator.is_valid(&value),
                        "{schema} on {value}"
                    );
                }
            }
        }
        for pattern in [
            "^a+$", "^.$", "^\\d$", "a$", "^a", "^[^a]$", "^a{1,2}$", "^(a)$", "^a|b$",
        ] {
            let schema = json!({"type": "string", "pattern": pattern});
            let named: Vec<_> = schema.as_object().expect("an object").iter().collect();
            assert!(fixed_pattern(&named).is_none(), "{pattern} taken as fixed");
        }
    }

    #[test]
    fn hand_checked_rules_match_what_jsonschema_matches() {
        use super::{Leaf, Leaves, Rule};
        let schemas = [
            json!({"type": "integer", "minimum": 0, "maximum": 9_223_372_036_854_775_807i64}),
            json!({"type": "number", "minimum": 0, "maximum": 1}),
            json!({"type": "integer", "exclusiveMinimum": -5, "exclusiveMaximum": 5}),
            json!({"type": "number", "minimum": -9_007_199_254_740_993i64}),
            json!({"type": "number", "exclusiveMaximum": 18_446_744_073_709_551_615u64}),
            json!({"const": "card"}),
            json!({"const": true}),
            json!({"const": null}),
            json!({"type": "boolean"}),
            json!({"type": "null", "description": "nothing"}),
        ];
        let values = [
            json!(0),
            json!(-1),
            json!(1),
            json!(5),
            json!(-5),
            json!(4),
            json!(-4),
            json!(0.5),
            json!(1.0),
            json!(1.0000001),
            json!(-0.0),
            json!(4.0),
            json!(-9_007_199_254_740_992.0),
            json!(-9.1e15),
            json!(9_223_372_036_854_775_807i64),
            json!(18_446_744_073_709_551_615u64),
            json!(-9_223_372_036_854_775_808i64),
            json!(1e300),
            json!("card"),
            json!("Card"),
            json!("1"),
            json!(true),
            json!(false),
            json!(null),
            json!([1]),
            json!({"a": 1}),
        ];
        for schema in schemas {
            let rule = Leaves::default().rule(&schema).expect("a rule");
            assert!(
                !matches!(rule, Rule::Schema(_)),
                "{schema} is not checked by hand"
            );
            let validator = jsonschema::draft202012::new(&schema).expect("compiles");
            for value in &values {
                let expected = validator.is_valid(value);
                assert_eq!(
                    rule.allows(&Leaf::Value(value.clone())),
                    expected,
                    "{schema} on {value}"
                );
                if let Some(text) = value.as_str() {
                    assert_eq!(
                        rule.allows(&Leaf::Str(text.into())),
                        expected,
                        "{schema} on {value}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_payload_keeps_its_text_whatever_the_spacing_around_it() {
        let kind = builtin("cards");
        for sample in samples("cards") {
            let compact: serde_json::Value = serde_json::from_str(&sample).expect("JSON");
            let payload = compact["payload"].to_string();
            let metadata = compact["metadata"].to_string();
            for text in [
                format!("{{\"payload\" \t:\r\n {payload} \n , \"metadata\":{metadata}}}"),
                format!("{{\"metadata\" : {metadata} ,\"payload\":{payload}\t}}\n "),
                format!(" {{\"payload\":{payload},\"extra\":[],\"metadata\":{metadata}}}"),
            ] {
                assert!(agree(&kind, &text), "refused: {text}");
                let (fast, _) = both_ways(&kind, text.as_bytes());
                let range = fast.and_then(|(_, _, p)| p).expect("a payload");
                assert_eq!(&text[range], payload, "in {text}");
            }
        }
    }

    const THINGS: &str = r#"
        key = "id"
        version = []
        columns = [
            { name = "id", type = "bigint" },
            { name = "first_tag", type = "text", field = "/payload/tags/0", optional = true },
            { name = "note", type = "text", field = "/payload/note", optional = true },
            { name = "size", type = "double", field = "/payload/dims/size", optional = true },
            { name = "whole", type = "jsonb", field = "/payload/dims", optional = true },
        ]
    "#;

    fn things_schema(payload: serde_json::Value) -> serde_json::Value {
        json!({
            "type": "object",
            "required": ["metadata", "payload"],
            "properties": {
                "metadata": {
                    "type": "object",
                    "required": ["event_at", "event_id"],
                    "properties": {"event_at": {"type": "string"}, "event_id": {"type": "string"}}
                },
                "payload": payload
            },
            "$defs": {"id": {"type": "integer", "minimum": 1}}
        })
    }

    const THING: &str = r#"{"metadata": {"type": "things", "event_at": "2024-05-01 12:00:03",
        "event_id": "0d133695-94a0-4f08-88ca-593745d25e35"},
        "payload": {"id": 5, "tags": ["a", "b"], "note": "n", "dims": {"size": 2.5}, "more": 1}}"#;

    #[test]
    fn the_paths_agree_on_every_modelled_keyword() {
        let payloads = [
            // Open objects, a reference with an assertion beside it, fields under leaves.
            json!({"type": "object", "required": ["id"],
                   "properties": {"id": {"$ref": "#/$defs/id", "maximum": 100},
                                  "tags": {"type": "array", "items": {"type": "string"}}}}),
            // Closed objects, and a member required but not described.
            json!({"type": "object", "required": ["id", "dims"], "additionalProperties": false,
                   "properties": {"id": {"$ref": "#/$defs/id"}, "tags": true, "note": {"type": "string"},
                                  "dims": {"type": "object", "properties": {"size": {"type": "number"}}}}}),
            // Other members checked by a schema of their own.
            json!({"type": "object", "properties": {"id": {"type": "integer"}},
                   "additionalProperties": {"type": ["integer", "string", "array", "object"]}}),
            // An object keyword the read does not model: the payload is checked whole.
            json!({"type": "object", "minProperties": 2,
                   "patternProperties": {"^n": {"type": "string", "maxLength": 3}}}),
        ];
        for payload in payloads {
            let kind = custom(THINGS, &things_schema(payload.clone()));
            assert!(kind.shape.is_some(), "no shape for {payload}");
            let (mut accepted, mut total) = (0, 0);
            for text in variations(THING) {
                total += 1;
                accepted += usize::from(agree(&kind, &text));
            }
            // The closed payload refuses the sample's `more`: only its removal passes.
            assert!(
                accepted >= 1 && total - accepted > 10,
                "{payload}: {accepted} of {total}"
            );
        }
    }

    #[test]
    fn what_the_read_does_not_model_leaves_the_type_to_the_full_path() {
        for schema in [
            json!({"type": "object", "properties": {"payload": {"$id": "x", "type": "object"}}}),
            json!({"type": "object", "properties": {"payload": {"$ref": "#"}}}),
            json!({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}),
            json!({"type": ["object", "null"]}),
            json!({"type": "object", "properties": {"metadata": true, "payload": true},
                   "unevaluatedProperties": false}),
        ] {
            let kind = custom(THINGS, &schema);
            assert!(kind.shape.is_none(), "a shape for {schema}");
            // Still decoded, by the full path alone.
            let (fast, full) = both_ways(&kind, THING.as_bytes());
            assert!(fast.is_none());
            assert!(full.is_ok(), "{schema}: {full:?}");
        }
    }
}
