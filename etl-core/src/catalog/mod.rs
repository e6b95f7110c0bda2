//! The declared event types: each one is a JSON Schema (`schemas/<name>.schema.json`) plus a
//! declaration (`types/<name>.toml`) mapping it to its warehouse table. Everything that differs
//! from one type to another (folders, validation, columns, the guarded upsert, labels) is
//! derived from here, so adding a type is a schema, a declaration and a migration — no code.

pub mod column;
pub mod kind;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use jsonschema::Validator;
use serde::Deserialize;

pub use column::{Cell, Column, Pointer, SqlType};
pub use kind::{Clock, EventType, Kind, GUARD_COLUMNS};

/// The types shipped with the daemon, used when the types folder does not exist (so the binary
/// works from any folder); the files in `types/` and `schemas/` are their source.
const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "users",
        include_str!("../../../types/users.toml"),
        include_str!("../../../schemas/users.schema.json"),
    ),
    (
        "cards",
        include_str!("../../../types/cards.toml"),
        include_str!("../../../schemas/cards.schema.json"),
    ),
];

/// A `types/<name>.toml` file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declaration {
    /// What producers write in `metadata.type`; the type's name when absent.
    envelope_type: Option<String>,
    /// The warehouse table (optionally `schema.table`); the type's name when absent.
    table: Option<String>,
    /// The column holding the entity's id (an integer column).
    key: String,
    /// The version clock: columns compared in this order before `event_at` and `event_id`
    /// (`"event_at"` names the envelope's event time).
    version: Vec<String>,
    columns: Vec<ColumnDeclaration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnDeclaration {
    name: String,
    #[serde(rename = "type")]
    sql_type: String,
    /// JSON pointer into the document; `/payload/<name>` when absent.
    field: Option<String>,
    #[serde(default)]
    optional: bool,
}

/// A declaration or schema the daemon cannot use: it refuses to start, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("event type {name} ({origin}): {message}")]
    Invalid {
        name: String,
        origin: String,
        message: String,
    },
    #[error("no event type is declared in {0} (one types/<name>.toml per type)")]
    Empty(String),
}

/// Every declared event type, in name order.
#[derive(Clone)]
pub struct Catalog {
    types: Arc<[Kind]>,
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.types.iter()).finish()
    }
}

impl Catalog {
    pub fn load_from(types_dir: &Path, schemas_dir: &Path) -> Result<Catalog, CatalogError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let mut declarations = Vec::new();
        match std::fs::read_dir(types_dir) {
            Ok(entries) => {
                let mut paths = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|source| CatalogError::Read {
                        path: types_dir.display().to_string(),
                        source,
                    })?;
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "toml") {
                        paths.push(path);
                    }
                }
                for path in paths {
                    let name = path
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default()
                        .to_owned();
                    let text = read(&path)?;
                    declarations.push((name, path.display().to_string(), text));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                for (name, declaration, _) in BUILTIN {
                    let origin = format!("built-in types/{name}.toml");
                    declarations.push(((*name).to_owned(), origin, (*declaration).to_owned()));
                }
            }
            Err(source) => {
                return Err(CatalogError::Read {
                    path: types_dir.display().to_string(),
                    source,
                })
            }
        }
        declarations.sort_by(|a, b| a.0.cmp(&b.0));
        if declarations.is_empty() {
            return Err(CatalogError::Empty(types_dir.display().to_string()));
        }
        let mut types: Vec<Kind> = Vec::new();
        let mut leaves = crate::decode::shape::Leaves::default();
        for (name, origin, text) in declarations {
            let schema_path = schemas_dir.join(format!("{name}.schema.json"));
            let (schema_origin, schema_text) = match std::fs::read_to_string(&schema_path) {
                Ok(text) => (schema_path.display().to_string(), text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match BUILTIN.iter().find(|(n, _, _)| *n == name) {
                        Some((_, _, schema)) => {
                            (format!("built-in {name}.schema.json"), (*schema).to_owned())
                        }
                        None => {
                            return Err(CatalogError::Invalid {
                                name,
                                origin,
                                message: format!(
                                    "its schema {} does not exist",
                                    schema_path.display()
                                ),
                            })
                        }
                    }
                }
                Err(source) => {
                    return Err(CatalogError::Read {
                        path: schema_path.display().to_string(),
                        source,
                    })
                }
            };
            let invalid = |message: String| CatalogError::Invalid {
                name: name.clone(),
                origin: origin.clone(),
                message,
            };
            let (schema, document) = crate::decode::schema::compile(&schema_origin, &schema_text)
                .map_err(|e| invalid(e.to_string()))?;
            let mut kind = build(&name, &text, schema, schema_origin.clone()).map_err(invalid)?;
            // Without a shape every document of the type takes the full path: slower, the same.
            kind.shape =
                crate::decode::shape::Shape::new(&document, &kind.columns, &mut leaves).ok();
            if let Some(other) = types
                .iter()
                .find(|k| k.envelope_type == kind.envelope_type || k.table == kind.table)
            {
                return Err(invalid(format!(
                    "it shares its envelope type or table with {}",
                    other.name
                )));
            }
            types.push(Kind(Arc::new(kind)));
        }
        Ok(Catalog {
            types: types.into(),
        })
    }

    /// The built-in types alone (`etl check` outside a project folder, tests).
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Catalog::load_from(
            Path::new("/nonexistent/etl-builtin-types"),
            Path::new("/nonexistent/etl-builtin-schemas"),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = &Kind> {
        self.types.iter()
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The type named `name` (its folder, its `--type`).
    pub fn get(&self, name: &str) -> Option<&Kind> {
        self.types.iter().find(|k| k.name == name)
    }

    /// The type whose documents say `metadata.type = envelope_type`.
    pub fn by_envelope(&self, envelope_type: &str) -> Option<&Kind> {
        self.types.iter().find(|k| k.envelope_type == envelope_type)
    }

    /// The names, comma-separated, for messages.
    pub fn names(&self) -> String {
        self.types
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Where each type's declaration and schema came from, for the start-up log.
    pub fn origins(&self) -> Vec<String> {
        self.types
            .iter()
            .map(|k| format!("{} ({})", k.name, k.schema_origin))
            .collect()
    }
}

/// Names that become folders and SQL identifiers: lower-case ASCII, digits and `_`.
pub fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

fn build(
    name: &str,
    text: &str,
    schema: Validator,
    schema_origin: String,
) -> Result<EventType, String> {
    let declaration: Declaration = toml::from_str(text).map_err(|e| e.to_string())?;
    if !is_identifier(name) {
        return Err(format!(
            "the name {name:?} must be lower-case letters, digits and _ (it names folders and labels)"
        ));
    }
    let table = declaration.table.unwrap_or_else(|| name.to_owned());
    if table.split('.').count() > 2 || !table.split('.').all(is_identifier) {
        return Err(format!(
            "table {table:?} must be an identifier (lower-case, digits, _), optionally schema.table"
        ));
    }
    let mut columns: Vec<Column> = Vec::new();
    for c in declaration.columns {
        if !is_identifier(&c.name) {
            return Err(format!(
                "column {:?} must be lower-case letters, digits and _",
                c.name
            ));
        }
        if GUARD_COLUMNS.contains(&c.name.as_str()) {
            return Err(format!(
                "column {} is added to every type's table by the daemon; do not declare it",
                c.name
            ));
        }
        if columns.iter().any(|d| d.name == c.name) {
            return Err(format!("column {} is declared twice", c.name));
        }
        let sql_type =
            SqlType::parse(&c.sql_type).map_err(|e| format!("column {}: {e}", c.name))?;
        let field = match &c.field {
            Some(pointer) => Pointer::parse(pointer),
            None => Pointer::parse(&format!("/payload/{}", c.name)),
        }
        .map_err(|e| format!("column {}: {e}", c.name))?;
        columns.push(Column {
            name: c.name,
            sql_type,
            field,
            optional: c.optional,
        });
    }
    let key = columns
        .iter()
        .position(|c| c.name == declaration.key)
        .ok_or_else(|| format!("the key {:?} is not a declared column", declaration.key))?;
    if !matches!(columns[key].sql_type, SqlType::BigInt | SqlType::Integer) || columns[key].optional
    {
        return Err(format!(
            "the key {} must be a bigint or integer column that is not optional (the raw zone's \
             entity_id is a bigint)",
            columns[key].name
        ));
    }
    let mut version = Vec::new();
    for clock in &declaration.version {
        if clock == "event_at" {
            version.push(Clock::EventAt);
            continue;
        }
        let i = columns
            .iter()
            .position(|c| &c.name == clock)
            .ok_or_else(|| format!("the version clock {clock:?} is not a declared column"))?;
        if !columns[i].sql_type.orders_like_sql() || columns[i].optional {
            return Err(format!(
                "the version clock {clock} must be a bigint, integer, double precision or \
                 timestamp column that is not optional"
            ));
        }
        version.push(Clock::Column(i));
    }
    // Ties are broken by the event time, then the unique event id, as for every type.
    if version.last() != Some(&Clock::EventAt) {
        version.push(Clock::EventAt);
    }
    version.push(Clock::EventId);
    Ok(EventType {
        name: name.to_owned(),
        envelope_type: declaration.envelope_type.unwrap_or_else(|| name.to_owned()),
        table,
        columns,
        key,
        version,
        schema,
        shape: None,
        schema_origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Validator {
        jsonschema::draft202012::new(&serde_json::json!({})).expect("schema")
    }

    fn declared(text: &str) -> Result<EventType, String> {
        build("things", text, schema(), "test".into())
    }

    #[test]
    fn the_builtin_types_load() {
        let catalog = Catalog::builtin().expect("built-in types");
        assert_eq!(catalog.names(), "cards, users");
        let cards = catalog.get("cards").expect("cards");
        assert_eq!(cards.envelope_type, "card");
        assert_eq!(catalog.by_envelope("user").map(Kind::name), Some("users"));
    }

    #[test]
    fn a_declaration_names_its_mistakes() {
        let base = r#"key = "id"
version = ["updated_at"]
columns = [{ name = "id", type = "bigint" }, { name = "updated_at", type = "timestamp" }]
"#;
        assert!(declared(base).is_ok());
        let wrong_key = base.replace(r#"key = "id""#, r#"key = "nope""#);
        assert!(declared(&wrong_key).is_err_and(|e| e.contains("nope")));
        let text_clock = base.replace(r#"type = "timestamp""#, r#"type = "text""#);
        assert!(declared(&text_clock).is_err_and(|e| e.contains("version clock")));
        let guard = base.replace("updated_at", "event_id");
        assert!(declared(&guard).is_err_and(|e| e.contains("event_id")));
        let unknown = format!("{base}colour = \"blue\"\n");
        assert!(declared(&unknown).is_err_and(|e| e.contains("colour")));
    }

    #[test]
    fn the_guard_ends_with_the_event_time_and_id() {
        let kind = declared(
            r#"key = "id"
version = ["event_at"]
columns = [{ name = "id", type = "bigint" }]
"#,
        )
        .expect("valid");
        assert_eq!(kind.version, vec![Clock::EventAt, Clock::EventId]);
    }
}
