//! A connection setting that cannot work, as a type: kept apart from the configuration so that
//! the secrets' parser, the configuration and the warehouse's connection can all name it.

/// A connection setting that cannot work (bad URL, unreadable secret or CA file): a
/// configuration mistake, never retried. The message never holds a password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);
