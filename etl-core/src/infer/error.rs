//! Why inference drafts nothing: each reason names what it is about and what to do.

use super::model::Conflict;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(
        "--type {0:?}: a type's name must be lower-case letters, digits and _ (it names folders, \
         a table and labels)"
    )]
    BadName(String),
    #[error(
        "no sample could be read ({skipped} file(s) skipped, each said in the report): give \
         files or folders of event files (*.json), and --bare if they are payloads without the \
         envelope"
    )]
    NoSamples { skipped: usize },
    /// Fields seen as different JSON kinds: the report names each; nothing is guessed.
    #[error("{} field(s) differ in kind between samples: {}", .0.len(), conflicts(.0))]
    Conflicts(Vec<Conflict>),
    #[error(
        "the samples name several envelope types in metadata.type ({0}): infer one type at a \
         time, from its own samples"
    )]
    EnvelopeTypes(String),
    #[error("no field can be the key: {0}; name one with --key FIELD")]
    NoKey(String),
    #[error(
        "several fields can be the key ({0}), and none is named id: choose one with --key FIELD"
    )]
    AmbiguousKey(String),
    #[error("--key {name}: {reason}")]
    BadKey { name: String, reason: String },
    #[error("--version {name}: {reason}")]
    BadVersion { name: String, reason: String },
}

fn conflicts(all: &[Conflict]) -> String {
    all.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
