//! An event type as the rest of the daemon sees it once declared: its columns, key, version
//! clock and compiled schema ([`EventType`]), and the cheap handle every
//! record and event carries ([`Kind`]). The catalog (`catalog/mod.rs`) builds them; the
//! warehouse generates each type's upsert and checks its table from them.

use std::fmt;
use std::sync::Arc;

use jsonschema::Validator;

use super::column::Column;

/// One element of the version tuple the guard compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// A column of the row (its index in [`EventType::columns`]).
    Column(usize),
    /// The envelope's `event_at`.
    EventAt,
    /// The envelope's `event_id`: the last tie-breaker, unique.
    EventId,
}

/// An event type, ready to use: compiled schema, typed columns, version clock.
pub struct EventType {
    /// The one name of the type everywhere: inbox/done/failed folders, `--type`, metric labels,
    /// the raw zone's `events.type`.
    pub name: String,
    /// The value of `metadata.type` in its documents.
    pub envelope_type: String,
    pub table: String,
    pub columns: Vec<Column>,
    /// Index of the key column in `columns`.
    pub key: usize,
    /// The full version tuple, ending with `EventAt, EventId`.
    pub version: Vec<Clock>,
    pub schema: Validator,
    /// The schema and columns compiled for the one-pass read; `None` when the schema uses
    /// something [`crate::decode::shape`] does not model (every document then takes the full path).
    pub shape: Option<crate::decode::shape::Shape>,
    /// Where the schema came from (a file, or the built-in copy), for the start-up log.
    pub schema_origin: String,
}

impl EventType {
    /// JSON pointer of a clock element, for reasons.
    pub fn clock_pointer(&self, clock: Clock) -> &str {
        match clock {
            Clock::Column(i) => self.columns[i].field.as_str(),
            Clock::EventAt => "/metadata/event_at",
            Clock::EventId => "/metadata/event_id",
        }
    }

    /// Index of the column named `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// A handle on an event type, cheap to clone, carried by every record and event.
#[derive(Clone)]
pub struct Kind(pub(super) Arc<EventType>);

impl Kind {
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl std::ops::Deref for Kind {
    type Target = EventType;
    fn deref(&self) -> &EventType {
        &self.0
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Kind) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.name == other.0.name
    }
}

impl Eq for Kind {}

impl std::hash::Hash for Kind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)
    }
}

/// Columns every type's table has besides its declared ones: the guard's tie-breakers.
pub const GUARD_COLUMNS: [&str; 2] = ["event_at", "event_id"];
