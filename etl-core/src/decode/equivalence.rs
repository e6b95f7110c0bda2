//! The one-pass read ([`super::shape`]) against the full path, document by document:
//! whenever the read accepts, the full path accepts with the same envelope, row and payload;
//! and on these schemas it accepts exactly what the full path accepts.

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
    use super::json::Leaf;
    use super::shape::{fixed_pattern, Rule};
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
    use super::json::Leaf;
    use super::shape::{Leaves, Rule};
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
