//! Properties, checked over generated inputs rather than chosen examples:
//!
//! - decoding never panics: any bytes, and any document mutated from a valid event, give either
//!   an event or a rejection with a reason; a valid event always decodes to what it says;
//! - the warehouse is a function of the *set* of events: any events (duplicates and same-second
//!   versions included), in any order, with any worker count and batch size, give the oracle's
//!   tables.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use common::{feed_in_order, oracle, Env, Kind};
use etl::catalog::{Catalog, Cell};
use etl::decode;
use proptest::prelude::*;
use serde_json::{json, Value};

static CATALOG: LazyLock<Catalog> =
    LazyLock::new(|| Catalog::builtin().expect("built-in types load"));

/// Decodes `bytes` as the daemon does for a file in the folder of type `kind`.
fn decode(kind: Kind, bytes: &[u8]) -> Result<etl::event::Event, etl::rejection::Rejection> {
    decode::decode(CATALOG.get(kind).expect("a shipped type"), bytes)
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Timestamps in a 4-second window, so versions often share a second.
fn timestamp() -> impl Strategy<Value = String> {
    (0u32..4).prop_map(|s| format!("2024-05-01 12:00:0{s}"))
}

/// Event ids in either case (the schema allows both; the warehouse stores a uuid).
fn event_id() -> impl Strategy<Value = String> {
    (any::<u128>(), any::<bool>()).prop_map(|(n, upper)| {
        let id = uuid::Uuid::from_u128(n).hyphenated().to_string();
        if upper {
            id.to_uppercase()
        } else {
            id
        }
    })
}

/// Text a producer might send: any characters but NUL (which is rightly rejected).
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,12}"
}

/// Few entity ids, so that versions of one entity meet; plus the largest id there is.
fn entity_id() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 0i64..4, 1 => Just(i64::MAX)]
}

/// A valid user event document.
fn user() -> impl Strategy<Value = Value> {
    (
        entity_id(),
        text(),
        text(),
        text(),
        0.0f64..=1.0,
        timestamp(),
        event_id(),
    )
        .prop_map(|(id, name, address, job, score, at, event_id)| {
            json!({
                "metadata": {"type": "user", "event_at": at, "event_id": event_id},
                "payload": {"id": id, "name": name, "address": address, "job": job, "score": score}
            })
        })
}

/// A valid card event document (the default schema requires its owner, `user_id`).
fn card() -> impl Strategy<Value = Value> {
    (
        entity_id(),
        0i64..1000,
        text(),
        (timestamp(), timestamp(), timestamp()),
        any::<bool>(),
        event_id(),
    )
        .prop_map(
            |(id, user_id, name, (updated_at, created_at, event_at), active, event_id)| {
                let payload = json!({
                    "id": id, "user_id": user_id, "created_by_name": name,
                    "updated_at": updated_at, "created_at": created_at, "active": active
                });
                json!({
                    "payload": payload,
                    "metadata": {"type": "card", "event_at": event_at, "event_id": event_id}
                })
            },
        )
}

fn valid_event() -> impl Strategy<Value = (Kind, Value)> {
    prop_oneof![
        user().prop_map(|doc| ("users", doc)),
        card().prop_map(|doc| ("cards", doc)),
    ]
}

/// Any JSON value, leaning towards the shapes the schemas care about.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        ".{0,8}".prop_map(Value::from),
        // Schema-shaped but possibly impossible: month 13, hour 99, 2024-02-30…
        "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}".prop_map(Value::from),
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
            .prop_map(Value::from),
        Just(json!("user")),
        Just(json!("card")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Values at the edges of what the schemas and the typed model accept.
fn edge_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        // Dates the schema's pattern accepts, many of them impossible (2024-02-30, 25:61:61).
        "2024-0[0-3]-[23][0-9] [0-2][0-9]:[0-6][0-9]:[0-6][0-9]".prop_map(Value::from),
        "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}".prop_map(Value::from),
        // Integers the schema accepts but i64 cannot hold as such, and the bounds.
        prop::sample::select(vec![
            json!(1.0),
            json!(5e3),
            json!(-0.0),
            json!(1e300),
            json!(i64::MAX),
            json!(i64::MAX as u64 + 1),
            json!(-1),
            json!(0.5),
            json!(1.5),
        ]),
        any_json(),
    ]
}

/// One change to a document, at the node `at` picks (modulo the number of nodes).
#[derive(Clone, Debug)]
enum Mutation {
    /// Sets one of the fields the schemas and the typed model know (a hit more often than not).
    Field(&'static str, Value),
    Replace(usize, Value),
    Remove(usize),
    AddKey(usize, String, Value),
    Wrap(usize),
    Nest(usize, usize),
}

const FIELDS: &[&str] = &[
    "/metadata/type",
    "/metadata/event_at",
    "/metadata/event_id",
    "/payload/id",
    "/payload/user_id",
    "/payload/score",
    "/payload/name",
    "/payload/active",
    "/payload/updated_at",
    "/payload/created_at",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (prop::sample::select(FIELDS), edge_value()).prop_map(|(f, v)| Mutation::Field(f, v)),
        1 => (any::<usize>(), any_json()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        1 => (any::<usize>(), "[a-z_]{1,10}", any_json())
            .prop_map(|(at, k, v)| Mutation::AddKey(at, k, v)),
        1 => any::<usize>().prop_map(Mutation::Wrap),
        1 => (any::<usize>(), 50usize..200).prop_map(|(at, depth)| Mutation::Nest(at, depth)),
    ]
}

/// JSON pointers of every node of `doc`, root first.
fn pointers(doc: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match doc {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(
                    v,
                    format!("{here}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn apply(doc: &mut Value, mutation: &Mutation) {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let at = |i: usize| all[i % all.len()].clone();
    match mutation {
        Mutation::Field(pointer, value) => {
            let (parent, key) = pointer.rsplit_once('/').expect("pointer");
            if let Some(Value::Object(map)) = doc.pointer_mut(parent) {
                map.insert(key.to_owned(), value.clone());
            }
        }
        Mutation::Replace(i, value) => {
            if let Some(node) = doc.pointer_mut(&at(*i)) {
                *node = value.clone();
            }
        }
        Mutation::Remove(i) => {
            let pointer = at(*i);
            if let Some((parent, key)) = pointer.rsplit_once('/') {
                if let Some(Value::Object(map)) = doc.pointer_mut(parent) {
                    map.remove(&key.replace("~1", "/").replace("~0", "~"));
                }
            }
        }
        Mutation::AddKey(i, key, value) => {
            if let Some(Value::Object(map)) = doc.pointer_mut(&at(*i)) {
                map.insert(key.clone(), value.clone());
            }
        }
        Mutation::Wrap(i) => {
            if let Some(node) = doc.pointer_mut(&at(*i)) {
                *node = Value::Array(vec![node.take()]);
            }
        }
        Mutation::Nest(i, depth) => {
            if let Some(node) = doc.pointer_mut(&at(*i)) {
                let mut nested = node.take();
                for _ in 0..*depth {
                    nested = Value::Array(vec![nested]);
                }
                *node = nested;
            }
        }
    }
}

/// A change to the serialized bytes.
#[derive(Clone, Debug)]
enum Splice {
    None,
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
}

fn splice() -> impl Strategy<Value = Splice> {
    prop_oneof![
        6 => Just(Splice::None),
        1 => any::<usize>().prop_map(Splice::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Splice::Flip(at, b)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Splice::Insert(at, bytes)),
    ]
}

fn spliced(mut bytes: Vec<u8>, splice: &Splice) -> Vec<u8> {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match splice {
        Splice::None => {}
        Splice::Truncate(i) => bytes.truncate(at(*i, bytes.len())),
        Splice::Flip(i, b) => {
            if !bytes.is_empty() {
                let i = at(*i, bytes.len());
                bytes[i] ^= b | 1;
            }
        }
        Splice::Insert(i, extra) => {
            let i = at(*i, bytes.len() + 1);
            bytes.splice(i..i, extra.iter().copied());
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// (a) decoding
// ---------------------------------------------------------------------------------------------

/// The decoding contract: an event of the folder's kind, or a rejection that says why.
fn decodes_or_explains(kind: Kind, bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(kind, bytes) {
        Ok(event) => {
            prop_assert_eq!(event.kind().name(), kind);
            prop_assert!(event.entity_id() >= 0);
        }
        Err(rejection) => {
            prop_assert!(!rejection.reason.trim().is_empty(), "{:?}", rejection);
            // Reasons quote the offending value, shortened: no log line the size of a file.
            prop_assert!(
                rejection.reason.len() < 1024,
                "{} bytes",
                rejection.reason.len()
            );
        }
    }
    Ok(())
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just("users"), Just("cards")]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(kind in kind(), bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decodes_or_explains(kind, &bytes)?;
    }

    #[test]
    fn mutated_events_never_panic_the_decoder(
        (kind, mut doc) in valid_event(),
        folder in kind(),
        mutations in prop::collection::vec(mutation(), 1..3),
        pretty in any::<bool>(),
        splice in splice(),
    ) {
        for m in &mutations {
            apply(&mut doc, m);
        }
        let bytes = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }
            .expect("serializable");
        // Mostly the right folder, sometimes either.
        let folder = if mutations.len() == 2 { folder } else { kind };
        decodes_or_explains(folder, &spliced(bytes, &splice))?;
    }

    #[test]
    fn a_valid_event_decodes_to_what_it_says((kind, doc) in valid_event(), pretty in any::<bool>()) {
        let bytes = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }
            .expect("serializable");
        let event = decode(kind, &bytes)
            .map_err(|r| TestCaseError::fail(format!("rejected: {r:?}")))?;
        let p = &doc["payload"];
        prop_assert_eq!(event.entity_id(), p["id"].as_i64().expect("id"));
        prop_assert_eq!(
            event.meta.event_id.to_string(),
            doc["metadata"]["event_id"].as_str().expect("event_id").to_lowercase()
        );
        // The raw zone's payload is the payload's text as written, and reads back as it.
        let raw: serde_json::Value = serde_json::from_slice(event.raw_payload()).expect("payload text is JSON");
        prop_assert_eq!(&raw, p);
        let text = |name: &str| match event.get(name) {
            Some(Cell::Text(t)) => Some(t.as_str()),
            _ => None,
        };
        if kind == "users" {
            prop_assert_eq!(text("name"), p["name"].as_str());
            let score = p["score"].as_f64().map(Cell::Float);
            prop_assert_eq!(event.get("score"), score.as_ref());
        } else {
            let owner = p["user_id"].as_i64().map_or(Cell::Null, Cell::Int);
            prop_assert_eq!(event.get("user_id"), Some(&owner));
            prop_assert_eq!(text("created_by_name"), p["created_by_name"].as_str());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) the warehouse is a function of the set of events
// ---------------------------------------------------------------------------------------------

/// A delivery: events (some delivered twice, under another name), in the order they arrive,
/// and how the daemon is configured.
#[derive(Debug, Clone)]
struct Delivery {
    files: Vec<(Kind, String, Value)>,
    workers: usize,
    batch_size: usize,
    chunk: usize,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    prop::collection::vec(valid_event(), 1..24)
        .prop_flat_map(|events| {
            let n = events.len();
            (
                Just(events),
                prop::collection::vec(0..n, 0..4),
                1usize..=4,
                1usize..=50,
                1usize..=n,
            )
        })
        .prop_flat_map(|(events, copies, workers, batch_size, chunk)| {
            let mut files: Vec<(Kind, String, Value)> = events
                .iter()
                .enumerate()
                .map(|(i, (kind, doc))| (*kind, format!("{i:02}.json"), doc.clone()))
                .collect();
            for (n, i) in copies.iter().enumerate() {
                let (kind, doc) = &events[*i];
                files.push((*kind, format!("{i:02}-copy{n}.json"), doc.clone()));
            }
            (
                Just(files).prop_shuffle(),
                Just(workers),
                Just(batch_size),
                Just(chunk),
            )
        })
        .prop_map(|(files, workers, batch_size, chunk)| Delivery {
            files,
            workers,
            batch_size,
            chunk,
        })
}

/// Writes the delivery's files into `dir/<folder>/` in arrival order; returns their paths.
fn write_delivery(dir: &Path, delivery: &Delivery) -> Vec<PathBuf> {
    delivery
        .files
        .iter()
        .map(|(kind, name, doc)| {
            let folder = dir.join(kind);
            std::fs::create_dir_all(&folder).expect("mkdir");
            let path = folder.join(name);
            std::fs::write(&path, serde_json::to_vec_pretty(doc).expect("json")).expect("write");
            path
        })
        .collect()
}

fn distinct_event_ids(delivery: &Delivery) -> usize {
    let ids: std::collections::HashSet<String> = delivery
        .files
        .iter()
        .map(|(_, _, doc)| {
            doc["metadata"]["event_id"]
                .as_str()
                .expect("event_id")
                .to_lowercase()
        })
        .collect();
    ids.len()
}

proptest! {
    // Each case creates a database and runs several drains: few cases, and a bounded shrink.
    #![proptest_config(ProptestConfig {
        cases: 8,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_delivery_gives_the_oracles_tables(delivery in delivery()) {
        let env = Env::new();
        let source = tempfile::tempdir().expect("tmp");
        let files = write_delivery(source.path(), &delivery);
        let config = etl::config::Config {
            workers: delivery.workers,
            batch_size: delivery.batch_size,
            ..env.config.clone()
        };
        // At most eight drains per case, whatever the chunk size drawn.
        let chunk = delivery.chunk.max(files.len().div_ceil(8));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(feed_in_order(&env, &files, chunk, config));

        prop_assert_eq!(env.dump(), oracle(&files));
        prop_assert_eq!(
            env.scalar("SELECT count(*) FROM events"),
            distinct_event_ids(&delivery) as i64
        );
        prop_assert_eq!(common::files_in(&env, "done").len(), files.len());
        prop_assert!(common::files_in(&env, "failed").is_empty());
    }
}
