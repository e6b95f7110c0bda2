//! The JSON Schemas every event is validated against, compiled once at start-up.

use std::path::Path;

use jsonschema::Validator;
use serde_json::Value;

use super::{shortened, RejectCode, Rejection};
use crate::event::Kind;

/// Built-in copies of `schemas/*.schema.json`, used when the schemas folder lacks a file, so the
/// binary works from anywhere while a schema fix on disk still needs no rebuild.
const BUILTIN_USER: &str = include_str!("../../../schemas/user.schema.json");
const BUILTIN_CARD: &str = include_str!("../../../schemas/card.schema.json");

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read schema {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("schema {name} is not valid JSON: {source}")]
    Json {
        name: String,
        source: serde_json::Error,
    },
    #[error("schema {name} does not compile: {message}")]
    Compile { name: String, message: String },
}

/// One compiled draft 2020-12 validator per kind.
pub struct Schemas {
    user: Validator,
    card: Validator,
}

impl Schemas {
    /// Compiles `<dir>/<type>.schema.json` for each kind, falling back to the built-in copy for a
    /// file that does not exist. Returns where each schema came from, for the start-up log.
    pub fn load(dir: &Path) -> Result<(Schemas, Vec<String>), SchemaError> {
        let mut origins = Vec::new();
        let mut compile_kind = |kind: Kind| -> Result<Validator, SchemaError> {
            let path = dir.join(format!("{}.schema.json", kind.as_str()));
            let (name, text) = match std::fs::read_to_string(&path) {
                Ok(text) => (path.display().to_string(), text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                    format!("built-in {}.schema.json", kind.as_str()),
                    builtin_text(kind).to_owned(),
                ),
                Err(source) => {
                    return Err(SchemaError::Read {
                        path: path.display().to_string(),
                        source,
                    })
                }
            };
            let validator = compile(&name, &text)?;
            origins.push(name);
            Ok(validator)
        };
        let user = compile_kind(Kind::User)?;
        let card = compile_kind(Kind::Card)?;
        Ok((Schemas { user, card }, origins))
    }

    /// The built-in schemas only (for `etl check` outside a project folder and for tests).
    pub fn builtin() -> Result<Schemas, SchemaError> {
        let builtin = |kind: Kind| {
            compile(
                &format!("built-in {}.schema.json", kind.as_str()),
                builtin_text(kind),
            )
        };
        Ok(Schemas {
            user: builtin(Kind::User)?,
            card: builtin(Kind::Card)?,
        })
    }

    /// Validates a whole document; on failure reports the first error with both locations.
    pub fn validate(&self, kind: Kind, document: &Value) -> Result<(), Rejection> {
        let validator = match kind {
            Kind::User => &self.user,
            Kind::Card => &self.card,
        };
        // `is_valid` is much cheaper than building an error, and almost every file is valid.
        if validator.is_valid(document) {
            return Ok(());
        }
        match validator.validate(document) {
            Ok(()) => Ok(()),
            Err(error) => {
                let instance_path = error.instance_path().to_string();
                let place = if instance_path.is_empty() {
                    "the document".to_owned()
                } else {
                    instance_path.clone()
                };
                Err(Rejection {
                    code: RejectCode::Schema,
                    reason: format!("{} (at {place})", shortened(error.to_string())),
                    instance_path: Some(instance_path),
                    schema_location: Some(error.schema_path().to_string()),
                    refusal: None,
                })
            }
        }
    }
}

fn builtin_text(kind: Kind) -> &'static str {
    match kind {
        Kind::User => BUILTIN_USER,
        Kind::Card => BUILTIN_CARD,
    }
}

fn compile(name: &str, text: &str) -> Result<Validator, SchemaError> {
    let schema: Value = serde_json::from_str(text).map_err(|source| SchemaError::Json {
        name: name.to_owned(),
        source,
    })?;
    jsonschema::draft202012::new(&schema).map_err(|e| SchemaError::Compile {
        name: name.to_owned(),
        message: e.to_string(),
    })
}
