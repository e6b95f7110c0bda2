//! `etl infer`'s logic, without any I/O: sample event files in, an inferred event type out
//! ([`Inference`]: each field's column, format and evidence; the key and version clock), and
//! from it the drafts a person reviews before installing — the JSON Schema, the declaration
//! and the migration — and the report. It guesses only what the samples prove, and refuses
//! to guess where they disagree ([`InferError::Conflicts`]).
//!
//! `sample.rs` reads a file, `observe.rs` gathers what each field holds, `guess.rs` turns that
//! into columns, `keys.rs` picks the key and the version clock, `model.rs` is the result, and
//! `schema.rs`, `declaration.rs`, `migration.rs` and `report.rs` write it out.

pub mod declaration;
pub mod error;
pub mod guess;
pub mod keys;
pub mod migration;
pub mod model;
pub mod observe;
pub mod report;
pub mod sample;
pub mod schema;

use crate::catalog::is_identifier;
pub use error::InferError;
pub use model::{Clock, Conflict, Format, Guess, Inference, JsonKind};
pub use sample::{Node, Sample, SampleError};

/// What `etl infer` was asked.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The type's name (`--type`).
    pub name: String,
    /// The samples are payloads without the envelope (`--bare`).
    pub bare: bool,
    /// `--key`, `--version`.
    pub key: Option<String>,
    pub version: Option<String>,
}

/// The three drafts' text, and the migration's file name (without `.sql`).
#[derive(Clone, Debug)]
pub struct Drafts {
    pub schema: String,
    pub declaration: String,
    pub migration_name: String,
    pub migration: String,
}

/// Infers the type of `samples` (`skipped`: files already found not to be samples, and why).
pub fn infer(
    samples: &[Sample],
    mut skipped: Vec<(String, String)>,
    options: &Options,
) -> Result<Inference, InferError> {
    if !is_identifier(&options.name) {
        return Err(InferError::BadName(options.name.clone()));
    }
    let mut rows: Vec<keys::Row<'_>> = Vec::new();
    let mut envelope_types: Vec<(String, usize)> = Vec::new();
    let mut producer_form = true;
    for sample in samples {
        let document = &sample.document;
        if options.bare {
            if matches!(document, Node::Map(_)) {
                rows.push(keys::Row {
                    origin: &sample.origin,
                    payload: document,
                    event_at: None,
                });
            } else {
                skipped.push((sample.origin.clone(), "not a JSON object".into()));
            }
            continue;
        }
        let metadata = document.member("metadata");
        let payload = document.member("payload");
        let envelope_type = metadata.and_then(|m| m.member("type"));
        let (Some(Node::Map(_)), Some(payload @ Node::Map(_)), Some(Node::Text(envelope_type))) =
            (metadata, payload, envelope_type)
        else {
            skipped.push((
                sample.origin.clone(),
                "not an envelope (an object with metadata.type and a payload object); use --bare \
                 for payloads without one"
                    .into(),
            ));
            continue;
        };
        match envelope_types.iter_mut().find(|(t, _)| t == envelope_type) {
            Some((_, count)) => *count += 1,
            None => envelope_types.push((envelope_type.clone(), 1)),
        }
        let event_at = metadata.and_then(|m| m.member("event_at"));
        producer_form &= matches!(event_at, Some(Node::Text(t)) if observe::is_producer_time(t));
        rows.push(keys::Row {
            origin: &sample.origin,
            payload,
            event_at,
        });
    }
    if rows.is_empty() {
        return Err(InferError::NoSamples {
            skipped: skipped.len(),
        });
    }
    let envelope_type = match envelope_types.as_slice() {
        [] => options.name.clone(),
        [(one, _)] => one.clone(),
        many => {
            let seen: Vec<String> = many.iter().map(|(t, n)| format!("{t:?} in {n}")).collect();
            return Err(InferError::EnvelopeTypes(seen.join(", ")));
        }
    };
    let observations = observe::Observations::of(rows.iter().map(|r| (r.origin, r.payload)));
    let guesses = guess::guess(&observations, rows.len());
    if !guesses.conflicts.is_empty() {
        return Err(InferError::Conflicts(guesses.conflicts));
    }
    let choice = keys::choose(
        &guesses.columns,
        &rows,
        options.key.as_deref(),
        options.version.as_deref(),
    )?;
    let mut notes = guesses.notes;
    notes.extend(choice.notes);
    if !options.bare && !producer_form {
        notes.push(
            "not every metadata.event_at is YYYY-MM-DD HH:MM:SS: the daemon reads that form \
             (ISO 8601 with T and fractions too, never with an offset)"
                .into(),
        );
    }
    Ok(Inference {
        name: options.name.clone(),
        envelope_type,
        samples: rows.len(),
        skipped,
        bare: options.bare,
        columns: guesses.columns,
        key: choice.key,
        key_evidence: choice.key_evidence,
        version: choice.version,
        version_evidence: choice.version_evidence,
        event_at_producer_form: producer_form,
        notes,
    })
}

/// The drafts of `inference`; the migration sorts after every name in `existing_migrations`.
pub fn drafts(inference: &Inference, existing_migrations: &[String]) -> Drafts {
    let (migration_name, migration) = migration::migration(inference, existing_migrations);
    Drafts {
        schema: schema::schema(inference),
        declaration: declaration::declaration(inference),
        migration_name,
        migration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: i64, at: &str, owner: Option<i64>) -> Sample {
        let owner = owner
            .map(|o| format!(r#""user_id": {o}, "#))
            .unwrap_or_default();
        let text = format!(
            r#"{{"payload": {{"id": {id}, {owner}"name": "x", "updated_at": "{at}"}},
                "metadata": {{"type": "card", "event_at": "{at}", "event_id": "00f07816-337f-4989-94f9-2b4fd7b7bec5"}}}}"#
        );
        Sample::parse(format!("{id}-{at}.json"), text.as_bytes()).expect("JSON")
    }

    fn options() -> Options {
        Options {
            name: "cards".into(),
            ..Options::default()
        }
    }

    #[test]
    fn the_key_the_clock_and_the_optional_fields_are_inferred() {
        let samples = [
            card(1, "2026-11-22 02:58:10", Some(7)),
            card(1, "2026-11-22 02:58:11", Some(7)),
            card(2, "2026-11-22 02:58:10", None),
            card(3, "2026-11-22 02:58:12", Some(8)),
        ];
        let inference = infer(&samples, vec![], &options()).expect("inferred");
        assert_eq!(inference.envelope_type, "card");
        assert_eq!(inference.columns[inference.key].column, "id");
        assert_eq!(inference.version_name(), "updated_at");
        let report = report::report(&inference);
        assert!(
            report.contains("user_id (missing from 1 of 4 samples (25%))"),
            "{report}"
        );
        let drafts = drafts(&inference, &["0005_lake".into()]);
        assert_eq!(drafts.migration_name, "0006_cards");
        assert!(
            drafts
                .declaration
                .contains(r#"{ name = "user_id",    type = "bigint", optional = true },"#),
            "{}",
            drafts.declaration
        );
        assert!(
            drafts.migration.contains("\"cards\""),
            "{}",
            drafts.migration
        );
    }

    #[test]
    fn two_possible_keys_none_named_id_are_named_and_left_to_key() {
        let doc = |n: i64| {
            let text = format!(
                r#"{{"metadata": {{"type": "m", "event_at": "2026-11-22 02:58:1{n}", "event_id": "x"}},
                    "payload": {{"merchant_id": {n}, "shop_id": {}}}}}"#,
                n + 10
            );
            Sample::parse(format!("{n}.json"), text.as_bytes()).expect("JSON")
        };
        let samples = [doc(1), doc(2)];
        let error = infer(&samples, vec![], &options()).expect_err("ambiguous");
        assert!(matches!(error, InferError::AmbiguousKey(_)), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("merchant_id, shop_id") && text.contains("--key"),
            "{text}"
        );
        let chosen = Options {
            key: Some("shop_id".into()),
            ..options()
        };
        let inference = infer(&samples, vec![], &chosen).expect("--key chooses");
        assert_eq!(inference.columns[inference.key].column, "shop_id");
        assert_eq!(inference.version_name(), "event_at");
    }

    #[test]
    fn a_key_shared_by_two_samples_at_one_version_is_not_chosen() {
        let samples = [
            card(1, "2026-11-22 02:58:10", Some(7)),
            card(1, "2026-11-22 02:58:10", Some(7)),
        ];
        let error = infer(&samples, vec![], &options()).expect_err("no key");
        assert!(matches!(error, InferError::NoKey(_)), "{error}");
        assert!(error.to_string().contains("--key"), "{error}");
        let forced = Options {
            key: Some("id".into()),
            ..options()
        };
        let inference = infer(&samples, vec![], &forced).expect("--key accepted");
        assert!(inference.notes.iter().any(|n| n.contains("ties")));
    }
}
