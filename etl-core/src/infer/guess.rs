//! From what the samples hold to a column per field: its format (the narrowest one every
//! non-null value proves), its name, and the evidence in words; a field seen as two kinds of
//! JSON value is a conflict, reported and never guessed.

use super::model::{Conflict, Format, Guess, JsonKind};
use super::observe::{Observations, Observed};
use crate::catalog::GUARD_COLUMNS;

/// The columns, the conflicts, and notes on types assumed for lack of evidence.
pub struct Guesses {
    pub columns: Vec<Guess>,
    pub conflicts: Vec<Conflict>,
    pub notes: Vec<String>,
}

/// One column per field that holds values (an object with members is the fields inside it).
pub fn guess(observations: &Observations, samples: usize) -> Guesses {
    let mut out = Guesses {
        columns: Vec::new(),
        conflicts: Vec::new(),
        notes: Vec::new(),
    };
    for field in &observations.fields {
        let pointer = Guess {
            column: String::new(),
            path: field.path.clone(),
            format: Format::Unknown,
            present: 0,
            nulls: 0,
            evidence: String::new(),
        }
        .pointer();
        let mut families: Vec<&str> = field.kinds.iter().map(|(k, _, _)| k.family()).collect();
        families.dedup();
        families.sort_unstable();
        families.dedup();
        if families.len() > 1 {
            out.conflicts.push(Conflict {
                pointer,
                seen: field.kinds.clone(),
            });
            continue;
        }
        if field.only(&[JsonKind::Object]) && field.has_members {
            continue;
        }
        let (format, evidence) = format_of(field, samples);
        if format == Format::Unknown {
            out.notes.push(format!(
                "{pointer} is null in every sample that has it: text assumed, change its type if \
                 you know better"
            ));
        }
        let mut column = column_name(&field.path);
        let taken = |name: &str| {
            GUARD_COLUMNS.contains(&name) || out.columns.iter().any(|c| c.column == name)
        };
        if taken(&column) {
            let base = column.clone();
            let mut n = 2;
            while taken(&column) {
                column = format!("{base}_{n}");
                n += 1;
            }
        }
        out.columns.push(Guess {
            column,
            path: field.path.clone(),
            format,
            present: field.present,
            nulls: field.nulls,
            evidence,
        });
    }
    out
}

/// The narrowest format every non-null value of the field has, and why.
fn format_of(field: &Observed, samples: usize) -> (Format, String) {
    let with = field.present - field.nulls;
    let every = if with == samples {
        "every sample".to_owned()
    } else {
        format!("{with} of {samples} samples")
    };
    let example = field
        .example
        .as_deref()
        .map(|e| format!(", e.g. {e}"))
        .unwrap_or_default();
    if field.kinds.is_empty() {
        return (Format::Unknown, "null wherever present".into());
    }
    if field.only(&[JsonKind::Boolean]) {
        return (Format::Boolean, format!("boolean in {every}"));
    }
    if field.only(&[JsonKind::Integer]) {
        let range = field
            .range
            .map(|(low, high)| format!(", {low} to {high}"))
            .unwrap_or_default();
        return (Format::Integer, format!("integer in {every}{range}"));
    }
    if field.only(&[JsonKind::Integer, JsonKind::BigInteger, JsonKind::Decimal]) {
        let why = if field.kinds.iter().any(|(k, _, _)| *k == JsonKind::Decimal) {
            "decimals"
        } else {
            "integers beyond 64 bits"
        };
        return (
            Format::Number,
            format!("{why} in {every}{example}: numeric keeps them exact"),
        );
    }
    if field.only(&[JsonKind::String]) {
        let all = |count: usize| count == field.strings;
        return if all(field.producer_times) {
            (
                Format::Timestamp,
                format!("YYYY-MM-DD HH:MM:SS in {every}{example}"),
            )
        } else if all(field.rfc3339_times) {
            (
                Format::Rfc3339,
                format!("RFC 3339 time with offset in {every}{example}"),
            )
        } else if all(field.uuids) {
            (Format::Uuid, format!("UUID in {every}"))
        } else if all(field.decimal_texts) {
            (
                Format::DecimalText,
                format!("strings of digits in {every}{example}: numeric keeps them exact"),
            )
        } else {
            (Format::Text, format!("string in {every}{example}"))
        };
    }
    let kind = if field.only(&[JsonKind::Array]) {
        "array"
    } else {
        "empty object"
    };
    (Format::Json, format!("{kind} in {every}: kept whole"))
}

/// A column name from a field's path: each key in snake case, joined by `_`, made a lower-case
/// SQL identifier of at most 63 bytes.
pub fn column_name(path: &[String]) -> String {
    let mut name = String::new();
    for key in path {
        if !name.is_empty() {
            name.push('_');
        }
        let mut previous_lower = false;
        for c in key.chars() {
            if c.is_ascii_uppercase() && previous_lower {
                name.push('_');
            }
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            name.push(if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            });
        }
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        name.insert(0, '_');
    }
    name.truncate(63);
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::sample::Sample;

    fn guesses(docs: &[&str]) -> Guesses {
        let samples: Vec<Sample> = docs
            .iter()
            .enumerate()
            .map(|(i, d)| Sample::parse(format!("{i}.json"), d.as_bytes()).expect("JSON"))
            .collect();
        let observations =
            Observations::of(samples.iter().map(|s| (s.origin.as_str(), &s.document)));
        guess(&observations, samples.len())
    }

    #[test]
    fn formats_are_the_narrowest_the_values_prove() {
        let g = guesses(&[
            r#"{"id": 1, "amount": 12.5, "price": "3.20", "at": "2026-11-22 02:58:16", "tz": "2026-11-22T02:58:16Z", "ref": "00f07816-337f-4989-94f9-2b4fd7b7bec5", "tags": [1], "addr": {"postCode": "0042"}}"#,
            r#"{"id": 2, "amount": 3, "price": "4", "at": "2026-11-22 02:58:17", "tz": "2026-11-22T02:58:17+01:00", "ref": "10f07816-337f-4989-94f9-2b4fd7b7bec5", "tags": [], "addr": null}"#,
        ]);
        let formats: Vec<(&str, &str, bool)> = g
            .columns
            .iter()
            .map(|c| (c.column.as_str(), c.format.sql_type(), c.required(2)))
            .collect();
        assert_eq!(
            formats,
            [
                ("id", "bigint", true),
                ("amount", "numeric", true),
                ("price", "numeric", true),
                ("at", "timestamp", true),
                ("tz", "timestamptz", true),
                ("ref", "uuid", true),
                ("tags", "jsonb", true),
                ("addr_post_code", "text", false),
            ]
        );
        assert_eq!(g.columns[7].pointer(), "/payload/addr/postCode");
        assert!(g.conflicts.is_empty());
    }

    #[test]
    fn a_field_of_two_kinds_is_a_conflict_naming_its_files() {
        let g = guesses(&[r#"{"id": 1, "n": "7"}"#, r#"{"id": 2, "n": 7}"#]);
        let text = g.conflicts[0].to_string();
        assert_eq!(
            text,
            "/payload/n is string in 0.json; but integer in 1.json"
        );
    }
}
