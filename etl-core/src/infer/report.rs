//! The summary `etl infer` prints: what it read, each field's guess with its evidence, the key
//! and version clock and why, the optional fields with their share, and what it skipped.

use super::model::Inference;

/// The report, one fact per line.
pub fn report(inference: &Inference) -> String {
    let mut out = String::new();
    let envelope = if inference.bare {
        "bare payloads (--bare)".to_owned()
    } else {
        format!("metadata.type {:?}", inference.envelope_type)
    };
    out.push_str(&format!(
        "read {} sample(s) of type {} ({envelope})\n",
        inference.samples, inference.name
    ));
    for (file, why) in &inference.skipped {
        out.push_str(&format!("skipped {file}: {why}\n"));
    }
    out.push_str(&format!("fields ({}):\n", inference.columns.len()));
    let name_width = inference
        .columns
        .iter()
        .map(|c| c.pointer().len())
        .max()
        .unwrap_or(0);
    for guess in &inference.columns {
        let required = if guess.required(inference.samples) {
            "required"
        } else {
            "optional"
        };
        out.push_str(&format!(
            "  {:name_width$}  {:<11}  {required}  {}\n",
            guess.pointer(),
            guess.format.sql_type(),
            guess.evidence
        ));
    }
    out.push_str(&format!(
        "key: {} ({})\n",
        inference.columns[inference.key].column, inference.key_evidence
    ));
    out.push_str(&format!(
        "version clock: {} ({})\n",
        inference.version_name(),
        inference.version_evidence
    ));
    let optional: Vec<String> = inference
        .columns
        .iter()
        .filter(|g| !g.required(inference.samples))
        .map(|g| {
            let missing = inference.samples - g.present;
            let mut why = Vec::new();
            if missing > 0 {
                why.push(format!("missing from {}", inference.share(missing)));
            }
            if g.nulls > 0 {
                why.push(format!("null in {}", inference.share(g.nulls)));
            }
            format!("{} ({})", g.column, why.join(", "))
        })
        .collect();
    if !optional.is_empty() {
        out.push_str(&format!(
            "optional: {} (to require one, drop its `optional = true` in the declaration and add \
             it to the schema's `required` list)\n",
            optional.join("; ")
        ));
    }
    for note in &inference.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
