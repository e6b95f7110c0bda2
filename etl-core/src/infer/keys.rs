//! The key and the version clock: the guard's choice, made from evidence. The version clock is
//! `--version`, else `updated_at` when every sample has it in an orderable format, else the
//! envelope's `event_at`; the key is `--key`, else the integer field present in every sample
//! with no two samples sharing (key, version), preferring one named `id`.

use std::collections::HashMap;

use super::error::InferError;
use super::model::{Clock, Guess};
use super::sample::Node;

/// What the guard of the drafted type compares, and why.
#[derive(Debug)]
pub struct Choice {
    pub key: usize,
    pub key_evidence: String,
    pub version: Clock,
    pub version_evidence: String,
    pub notes: Vec<String>,
}

/// One sample as the choice reads it: its file, payload and `metadata.event_at` (none when
/// bare).
pub struct Row<'a> {
    pub origin: &'a str,
    pub payload: &'a Node,
    pub event_at: Option<&'a Node>,
}

/// Chooses the version clock, then the key.
pub fn choose(
    columns: &[Guess],
    rows: &[Row<'_>],
    key: Option<&str>,
    version: Option<&str>,
) -> Result<Choice, InferError> {
    let samples = rows.len();
    let bare = rows.iter().all(|r| r.event_at.is_none());
    let by_name = |name: &str| columns.iter().position(|c| c.column == name);
    let (version, version_evidence) = match version {
        Some("event_at") => (Clock::EventAt, "given with --version".to_owned()),
        Some(name) => {
            let i = by_name(name).ok_or_else(|| InferError::BadVersion {
                name: name.into(),
                reason: format!("no such field (fields: {})", names(columns)),
            })?;
            clock_fits(&columns[i], samples).map_err(|reason| InferError::BadVersion {
                name: name.into(),
                reason,
            })?;
            (Clock::Column(i), "given with --version".to_owned())
        }
        None => match by_name("updated_at") {
            Some(i) => match clock_fits(&columns[i], samples) {
                Ok(()) => (Clock::Column(i), columns[i].evidence.clone()),
                Err(why) => (
                    Clock::EventAt,
                    format!("the envelope's event time (updated_at {why})"),
                ),
            },
            None => (
                Clock::EventAt,
                "the envelope's event time (no field is named updated_at)".to_owned(),
            ),
        },
    };
    let version_of = |row: &Row<'_>| -> Option<String> {
        match version {
            Clock::Column(i) => row.payload.at(&columns[i].path).map(Node::identity),
            Clock::EventAt => row.event_at.map(Node::identity),
        }
    };
    let unchecked = bare && version == Clock::EventAt;
    let clock_name = match version {
        Clock::Column(i) => columns[i].column.clone(),
        Clock::EventAt => "event_at".into(),
    };
    // A candidate's verdict: Ok(evidence) or Err(why not).
    let judge = |i: usize| -> Result<String, String> {
        let column = &columns[i];
        if column.format != super::model::Format::Integer {
            return Err(format!("{} is not an integer field", column.column));
        }
        if !column.required(samples) {
            return Err(format!("{} is not in every sample", column.column));
        }
        if unchecked {
            return Ok(format!(
                "integer in every sample (bare payloads have no event_at: whether two samples \
                 share ({}, event_at) is not checked)",
                column.column
            ));
        }
        let mut seen: HashMap<(String, Option<String>), &str> = HashMap::new();
        let mut shared = 0usize;
        let mut first_pair = None;
        for row in rows {
            let key = row.payload.at(&column.path).map(Node::identity);
            let pair = (key.unwrap_or_default(), version_of(row));
            match seen.get(&pair) {
                Some(other) => {
                    shared += 1;
                    first_pair.get_or_insert((other.to_string(), row.origin.to_owned()));
                }
                None => {
                    seen.insert(pair, row.origin);
                }
            }
        }
        let distinct = seen
            .keys()
            .map(|(k, _)| k.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len();
        match first_pair {
            None => Ok(format!(
                "integer in every sample, {distinct} distinct values, and no two samples share \
                 ({}, {clock_name})",
                column.column
            )),
            Some((a, b)) => Err(format!(
                "{shared} sample(s) share ({}, {clock_name}) with another (e.g. {a} and {b})",
                column.column
            )),
        }
    };
    let mut notes = Vec::new();
    if let Some(name) = key {
        let i = by_name(name).ok_or_else(|| InferError::BadKey {
            name: name.into(),
            reason: format!("no such field (fields: {})", names(columns)),
        })?;
        let column = &columns[i];
        if column.format != super::model::Format::Integer || !column.required(samples) {
            return Err(InferError::BadKey {
                name: name.into(),
                reason: "a key must be an integer in every sample (the raw zone's entity_id is a \
                         bigint)"
                    .into(),
            });
        }
        let evidence = match judge(i) {
            Ok(evidence) => evidence,
            Err(why) => {
                notes.push(format!(
                    "the key {name}: {why}; the guard breaks such ties by event_at, then event_id"
                ));
                "given with --key".into()
            }
        };
        return Ok(Choice {
            key: i,
            key_evidence: evidence,
            version,
            version_evidence,
            notes,
        });
    }
    let mut qualified = Vec::new();
    let mut refused = Vec::new();
    for (i, column) in columns.iter().enumerate() {
        if column.format != super::model::Format::Integer || Clock::Column(i) == version {
            continue;
        }
        match judge(i) {
            Ok(evidence) => qualified.push((i, evidence)),
            Err(why) => refused.push(why),
        }
    }
    let chosen = match qualified.as_slice() {
        [] => {
            let why = if refused.is_empty() {
                "no field is an integer".to_owned()
            } else {
                refused.join("; ")
            };
            return Err(InferError::NoKey(why));
        }
        [one] => one.clone(),
        many => match many.iter().find(|(i, _)| columns[*i].column == "id") {
            Some((i, evidence)) => {
                let others: Vec<&str> = many
                    .iter()
                    .filter(|(j, _)| j != i)
                    .map(|(j, _)| columns[*j].column.as_str())
                    .collect();
                (
                    *i,
                    format!(
                        "{evidence}; named id (also possible: {}; choose with --key)",
                        others.join(", ")
                    ),
                )
            }
            None => {
                let names: Vec<&str> = many
                    .iter()
                    .map(|(i, _)| columns[*i].column.as_str())
                    .collect();
                return Err(InferError::AmbiguousKey(names.join(", ")));
            }
        },
    };
    Ok(Choice {
        key: chosen.0,
        key_evidence: chosen.1,
        version,
        version_evidence,
        notes,
    })
}

/// Whether a column can be a version clock: in every sample, in an orderable format.
fn clock_fits(column: &Guess, samples: usize) -> Result<(), String> {
    if !column.required(samples) {
        return Err(format!(
            "is missing or null in {} sample(s)",
            samples - (column.present - column.nulls)
        ));
    }
    if !column.format.orders() {
        return Err(format!(
            "is {}, which a version clock cannot be (it must be an integer or a \
             YYYY-MM-DD HH:MM:SS timestamp)",
            column.format.sql_type()
        ));
    }
    Ok(())
}

fn names(columns: &[Guess]) -> String {
    columns
        .iter()
        .map(|c| c.column.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
