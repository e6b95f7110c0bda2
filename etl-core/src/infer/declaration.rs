//! The drafted declaration (`types/<name>.toml`), written by hand rather than serialised so
//! that each choice carries its evidence as a comment a reviewer reads before installing it.

use super::model::{Clock, Inference};

/// The declaration's text.
pub fn declaration(inference: &Inference) -> String {
    let key = &inference.columns[inference.key];
    let mut out = String::new();
    out.push_str(&format!(
        "# The event type `{name}`, drafted by `etl infer` from {samples} sample(s): review it,\n\
         # then install it as types/{name}.toml with its schema and migration (the guide's\n\
         # \"Add an event type\" shows how). Columns are the payload's fields in sample order.\n",
        name = inference.name,
        samples = inference.samples,
    ));
    let envelope = if inference.bare {
        "the type's name: the samples were bare payloads (--bare)".to_owned()
    } else {
        "metadata.type in every sample".to_owned()
    };
    out.push_str(&format!(
        "envelope_type = {:?}   # {envelope}\n",
        inference.envelope_type
    ));
    out.push_str(&format!("table = {:?}\n", inference.name));
    out.push_str(&format!("# {}\n", inference.key_evidence));
    out.push_str(&format!("key = {:?}\n", key.column));
    let version = match inference.version {
        Clock::Column(i) => inference.columns[i].column.clone(),
        Clock::EventAt => "event_at".into(),
    };
    out.push_str(&format!(
        "# The version clock: {}.\n# Ties are broken by event_at, then event_id.\n",
        inference.version_evidence
    ));
    out.push_str(&format!("version = [{version:?}]\n\ncolumns = [\n"));
    let width = inference
        .columns
        .iter()
        .map(|c| c.column.len())
        .max()
        .unwrap_or(0)
        + 3;
    for guess in &inference.columns {
        let mut why = guess.evidence.clone();
        let missing = inference.samples - guess.present;
        if missing > 0 {
            why.push_str(&format!("; missing from {}", inference.share(missing)));
        }
        if guess.nulls > 0 {
            why.push_str(&format!("; null in {}", inference.share(guess.nulls)));
        }
        out.push_str(&format!("    # {why}\n"));
        if !guess.required(inference.samples) {
            out.push_str(
                "    # optional: to require it, drop `optional = true` and add it to the schema's \
                 `required` list\n",
            );
        }
        let mut line = format!(
            "    {{ name = {:<width$} type = {:?}",
            format!("{:?},", guess.column),
            guess.format.sql_type()
        );
        if !guess.default_pointer() {
            line.push_str(&format!(", field = {:?}", guess.pointer()));
        }
        if !guess.required(inference.samples) {
            line.push_str(", optional = true");
        }
        line.push_str(" },\n");
        out.push_str(&line);
    }
    out.push_str("]\n");
    out
}
