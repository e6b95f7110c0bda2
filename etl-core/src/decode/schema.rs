//! JSON Schema validation: compiling a type's schema once at start-up, and turning the first
//! failure into a rejection that names both the field and the schema keyword.

use jsonschema::Validator;
use serde_json::Value;

use crate::rejection::{shortened, RejectCode, Rejection};

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema {name} is not valid JSON: {source}")]
    Json {
        name: String,
        source: serde_json::Error,
    },
    #[error("schema {name} does not compile: {message}")]
    Compile { name: String, message: String },
}

/// Compiles a draft 2020-12 schema; `name` says where it came from, for the error. The schema's
/// document comes back too (the one-pass read is compiled from it).
pub fn compile(name: &str, text: &str) -> Result<(Validator, Value), SchemaError> {
    let schema: Value = serde_json::from_str(text).map_err(|source| SchemaError::Json {
        name: name.to_owned(),
        source,
    })?;
    let validator = jsonschema::draft202012::new(&schema).map_err(|e| SchemaError::Compile {
        name: name.to_owned(),
        message: e.to_string(),
    })?;
    Ok((validator, schema))
}

/// Validates a whole document; on failure reports the first error with both locations.
/// `likely_valid`: most documents that come this way pass (then the cheaper yes-or-no check
/// goes first); otherwise the one walk that also finds the error.
pub fn validate(
    validator: &Validator,
    document: &Value,
    likely_valid: bool,
) -> Result<(), Rejection> {
    if likely_valid && validator.is_valid(document) {
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
