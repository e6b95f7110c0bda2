//! The configuration reference (the generated part of docs/src/reference/configuration.md),
//! made from the doc comments of [`Config`] and its sections, which `schemars` reads: one table
//! per section with each key, its `ETL_*` variable, its flat alias, its default and what it
//! does. A test compares it with the page, so the page cannot drift from the code.

use schemars::{schema_for, JsonSchema};
use serde_json::Value;

use super::sections::{self, FLAT_ALIASES, SECTIONS};
use super::*;

/// The line before the generated part of the page.
pub const BEGIN: &str = "<!-- BEGIN generated from the doc comments of etl-core/src/config/ (refresh: UPDATE_DOCS=1 cargo test -p etl-core --test config_reference) -->";
/// The line after it.
pub const END: &str = "<!-- END generated -->";

/// A struct's doc comment and its fields' (`name`, doc comment), sorted by name.
fn described<T: JsonSchema>() -> (String, Vec<(String, String)>) {
    let schema = schema_for!(T);
    let value = schema.as_value();
    let text = |v: &Value| {
        let title = v.get("title").and_then(Value::as_str).unwrap_or_default();
        let description = v
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let joined = match (title.is_empty(), description.is_empty()) {
            (false, false) => format!("{title}. {description}"),
            (false, true) => title.to_owned(),
            _ => description.to_owned(),
        };
        joined.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let mut fields: Vec<(String, String)> = value
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .iter()
                .map(|(name, field)| (name.clone(), text(field)))
                .collect()
        })
        .unwrap_or_default();
    fields.sort();
    // A struct's own text is its description: schemars' title is the type's name.
    let about = value
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (about, fields)
}

/// A default as the reference shows it.
fn shown_default(path: &str, value: Option<&Value>) -> String {
    // The counts whose default is the machine's: the page must not depend on where it was made.
    if matches!(path, "workers" | "inbox.readers") {
        return "number of cores".into();
    }
    match value {
        None | Some(Value::Null) => "none".into(),
        Some(Value::String(s)) if s.is_empty() => "empty".into(),
        Some(Value::String(s)) => format!("`{s}`"),
        Some(other) => format!("`{other}`"),
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Every documented setting: (`section` or `None` at the top level, key, doc comment).
pub fn settings() -> Vec<(Option<&'static str>, String, String)> {
    let mut all = Vec::new();
    let (_, general) = described::<Config>();
    for (key, doc) in general {
        if !SECTIONS.contains(&key.as_str()) {
            all.push((None, key, doc));
        }
    }
    for &section in SECTIONS {
        for (key, doc) in section_schema(section).1 {
            all.push((Some(section), key, doc));
        }
    }
    all
}

/// A section's doc comment and fields.
fn section_schema(section: &str) -> (String, Vec<(String, String)>) {
    match section {
        "database" => described::<DatabaseConfig>(),
        "inbox" => described::<InboxConfig>(),
        "broker" => described::<BrokerConfig>(),
        "lake" => described::<LakeConfig>(),
        "retention" => described::<RetentionConfig>(),
        "serve" => described::<ServeConfig>(),
        "alerts" => described::<AlertsConfig>(),
        _ => (String::new(), Vec::new()),
    }
}

/// The generated part of the page, between [`BEGIN`] and [`END`] (exclusive).
pub fn markdown() -> String {
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let mut out = String::new();
    let header = "| key | environment | flat alias (file, environment) | default | meaning |\n|---|---|---|---|---|\n";
    out.push_str("\n### General (top level of `etl.toml`)\n\n");
    out.push_str(header);
    for (section, key, doc) in settings() {
        if section.is_some() {
            continue;
        }
        out.push_str(&format!(
            "| `{key}` | `{}` | - | {} | {} |\n",
            sections::env_var(None, &key),
            shown_default(&key, defaults.get(&key)),
            cell(&doc)
        ));
    }
    for &section in SECTIONS {
        let (about, fields) = section_schema(section);
        // The heading names the section: the doc comment's own `[section]: ` is not repeated.
        let about = about
            .strip_prefix(&format!("`[{section}]`: "))
            .map_or(about.clone(), capitalised);
        out.push_str(&format!("\n### `[{section}]`\n\n{about}\n\n"));
        out.push_str(header);
        for (key, doc) in fields {
            let alias = FLAT_ALIASES
                .iter()
                .find(|(_, s, k)| *s == section && *k == key)
                .map_or_else(
                    || "-".to_owned(),
                    |(flat, _, _)| format!("`{flat}`, `{}`", sections::env_var(None, flat)),
                );
            let path = format!("{section}.{key}");
            out.push_str(&format!(
                "| `{key}` | `{}` | {alias} | {} | {} |\n",
                sections::env_var(Some(section), &key),
                shown_default(&path, defaults.get(section).and_then(|s| s.get(&key))),
                cell(&doc)
            ));
        }
    }
    out.push('\n');
    out
}

/// `page` with its generated part replaced by [`markdown`]; `None` if the markers are missing.
pub fn refreshed(page: &str) -> Option<String> {
    let start = page.find(BEGIN)? + BEGIN.len();
    let end = start + page[start..].find(END)?;
    Some(format!(
        "{}\n{}{}",
        &page[..start],
        markdown(),
        &page[end..]
    ))
}
