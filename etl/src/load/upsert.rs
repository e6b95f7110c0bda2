//! Where a row is written: the batched guarded upsert generated from each type's declaration
//! (run by [`crate::load::warehouse::Warehouse::apply`]), and the start-up check that its
//! table really has the declared columns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_postgres::GenericClient;

use crate::catalog::{Clock, EventType, Kind, SqlType, GUARD_COLUMNS};

/// Each type's upsert, generated on first use and kept for the life of the pool (the
/// statement itself is prepared once per connection).
#[derive(Clone, Default)]
pub struct Upserts(Arc<Mutex<HashMap<Kind, Arc<str>>>>);

impl Upserts {
    /// The upsert of `kind`'s table.
    pub fn sql_for(&self, kind: &Kind) -> Arc<str> {
        // A panic elsewhere cannot leave the map half-written: an entry is inserted whole.
        let mut sqls = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sqls.entry(kind.clone())
            .or_insert_with(|| upsert_sql(kind).into())
            .clone()
    }
}

/// `schema.table` or `table`, each part quoted (spelled once, with the plans of `etl types
/// plan`).
pub use crate::plan::quoted_table;

/// The batched upsert of a type: one array parameter per column (declared columns, then
/// `event_at`, `event_id`), `unnest`ed in array order (the caller sorts rows by key, the lock
/// order), and a `WHERE` that only lets a strictly greater version tuple change a row — the
/// same tuple [`crate::event::Event::version_cmp`] orders by.
pub fn upsert_sql(kind: &EventType) -> String {
    let mut names: Vec<String> = kind
        .columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    names.extend(GUARD_COLUMNS.iter().map(|c| format!("\"{c}\"")));
    let mut wires: Vec<&str> = kind.columns.iter().map(|c| c.sql_type.wire()).collect();
    wires.extend(["timestamp", "uuid"]);
    let params: Vec<String> = wires
        .iter()
        .enumerate()
        .map(|(i, wire)| format!("${}::{wire}[]", i + 1))
        .collect();
    let aliases: Vec<String> = (0..names.len()).map(|i| format!("c{i}")).collect();
    // A type the server casts from text is cast here, in the SELECT.
    let selected: Vec<String> = kind
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| match &c.sql_type {
            SqlType::Other(name) => format!("u.c{i}::{name}"),
            _ => format!("u.c{i}"),
        })
        .chain((kind.columns.len()..names.len()).map(|i| format!("u.c{i}")))
        .collect();
    let key = &names[kind.key];
    let updates: Vec<String> = names
        .iter()
        .filter(|n| *n != key)
        .map(|n| format!("{n} = EXCLUDED.{n}"))
        .collect();
    let guard = |prefix: &str| {
        kind.version
            .iter()
            .map(|clock| match clock {
                Clock::Column(i) => format!("{prefix}.\"{}\"", kind.columns[*i].name),
                Clock::EventAt => format!("{prefix}.\"event_at\""),
                Clock::EventId => format!("{prefix}.\"event_id\""),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "INSERT INTO {table} AS t ({names})\nSELECT {selected}\nFROM unnest({params}) AS u({aliases})\n\
         ON CONFLICT ({key}) DO UPDATE SET {updates}\nWHERE ({old}) < ({new})",
        table = quoted_table(&kind.table),
        names = names.join(", "),
        selected = selected.join(", "),
        params = params.join(", "),
        aliases = aliases.join(", "),
        updates = updates.join(", "),
        old = guard("t"),
        new = guard("EXCLUDED"),
    )
}

/// Checks that every type's table exists with its declared columns (same types), the guard
/// columns, a unique index on the key alone (the upsert's `ON CONFLICT`), and no other
/// `NOT NULL` column without a default (every insert would fail). Returns every problem found,
/// each a sentence naming the type, the table and the column.
pub async fn check(
    client: &impl GenericClient,
    kinds: impl IntoIterator<Item = &Kind>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut problems = Vec::new();
    for kind in kinds {
        let table = quoted_table(&kind.table);
        let columns = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, NULL), a.attnotnull, a.atthasdef, a.attnum
                   FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                &[&table],
            )
            .await?;
        if columns.is_empty() {
            problems.push(format!(
                "type {}: table {} does not exist (create it in a migration in the migrations folder)",
                kind.name, kind.table
            ));
            continue;
        }
        let actual = |name: &str| {
            columns
                .iter()
                .find(|r| r.get::<_, String>(0) == name)
                .map(|r| (r.get::<_, String>(1), r.get::<_, i16>(4)))
        };
        let mut wanted: Vec<(&str, String)> = kind
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.sql_type.sql().to_owned()))
            .collect();
        wanted.push(("event_at", "timestamp".into()));
        wanted.push(("event_id", "uuid".into()));
        for (name, declared) in &wanted {
            // The server's own spelling of the declared type, to compare like with like.
            let declared_row = client
                .query_opt("SELECT format_type(to_regtype($1), NULL)", &[declared])
                .await?;
            let declared_name: Option<String> = declared_row.and_then(|r| r.get(0));
            match actual(name) {
                None => problems.push(format!(
                    "type {}: table {} has no column {name} (declared {declared})",
                    kind.name, kind.table
                )),
                Some((found, _)) if Some(&found) != declared_name.as_ref() => {
                    problems.push(format!(
                        "type {}: column {}.{name} is {found}, but the declaration says {declared}",
                        kind.name, kind.table
                    ))
                }
                Some(_) => {}
            }
        }
        for row in &columns {
            let name: String = row.get(0);
            let (not_null, has_default): (bool, bool) = (row.get(2), row.get(3));
            if not_null && !has_default && !wanted.iter().any(|(w, _)| *w == name) {
                problems.push(format!(
                    "type {}: column {}.{name} is NOT NULL without a default, and the declaration \
                     does not map it: every insert would fail",
                    kind.name, kind.table
                ));
            }
        }
        if let Some((_, key_attnum)) = actual(&kind.columns[kind.key].name) {
            let unique = client
                .query_opt(
                    "SELECT 1 FROM pg_index i
                      WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL
                        AND i.indnkeyatts = 1 AND i.indkey[0] = $2",
                    &[&table, &key_attnum],
                )
                .await?
                .is_some();
            if !unique {
                problems.push(format!(
                    "type {}: the key {}.{} has no unique index of its own (a PRIMARY KEY or \
                     UNIQUE constraint on it alone), which the upsert needs",
                    kind.name, kind.table, kind.columns[kind.key].name
                ));
            }
        }
    }
    Ok(problems)
}
