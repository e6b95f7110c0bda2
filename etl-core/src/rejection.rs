//! Why a record is refused, whoever refuses it (the decoder or the database): the one list of
//! reason codes ([`RejectCode`]), the reason written next to a failed file ([`Rejection`]) and
//! what the server said of a row it refused ([`Refusal`]).

use serde::Serialize;

/// Why a file was refused. Written next to the file in `failed/` and logged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rejection {
    pub code: RejectCode,
    /// A sentence for a human.
    pub reason: String,
    /// JSON pointer into the document, when one part of it is at fault.
    pub instance_path: Option<String>,
    /// JSON pointer into the schema of the keyword that failed, for schema failures.
    pub schema_location: Option<String>,
    /// What the database said, for an event it refused (`db_refused`): the SQLSTATE, the
    /// constraint or column, the server's message.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Box<Refusal>>,
}

/// What the server said when it refused a row: written into the reason file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub sqlstate: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The server's message (and detail, when it gave one).
    pub message: String,
}

impl Refusal {
    /// The reason sentence of a `db_refused` rejection.
    pub fn reason(&self) -> String {
        let mut text = format!(
            "the warehouse refused this event (SQLSTATE {})",
            self.sqlstate
        );
        if let Some(constraint) = &self.constraint {
            text.push_str(&format!(", constraint {constraint}"));
        }
        if let Some(column) = &self.column {
            text.push_str(&format!(", column {column}"));
        }
        if let Some(table) = &self.table {
            text.push_str(&format!(" on table {table}"));
        }
        text.push_str(": ");
        text.push_str(&self.message);
        text
    }
}

/// The class of a rejection: a stable, low-cardinality label for metrics and grep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    TooLarge,
    NotUtf8,
    InvalidJson,
    /// An object repeats a key: which of the values is meant cannot be known.
    DuplicateKey,
    WrongFolder,
    Schema,
    InvalidValue,
    /// A version clock (or `event_at`) too far in the future: it would freeze its entity.
    FutureVersion,
    /// An event as old as the retired raw events whose ids were forgotten (`retired_ids_days`):
    /// it cannot be told from one of them, so it is refused rather than loaded twice.
    BeyondHorizon,
    /// Valid by the schema, but PostgreSQL refused the row (a constraint, a value out of range).
    DbRefused,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::TooLarge => "too_large",
            RejectCode::NotUtf8 => "not_utf8",
            RejectCode::InvalidJson => "invalid_json",
            RejectCode::DuplicateKey => "duplicate_key",
            RejectCode::WrongFolder => "wrong_folder",
            RejectCode::Schema => "schema",
            RejectCode::InvalidValue => "invalid_value",
            RejectCode::FutureVersion => "future_version",
            RejectCode::BeyondHorizon => "beyond_horizon",
            RejectCode::DbRefused => "db_refused",
        }
    }
}

impl Rejection {
    pub fn new(code: RejectCode, reason: impl Into<String>) -> Rejection {
        Rejection {
            code,
            reason: shortened(reason.into()),
            instance_path: None,
            schema_location: None,
            refusal: None,
        }
    }

    /// An event the warehouse refused (classified by the loader's fault rules).
    pub fn refused(refusal: Refusal) -> Rejection {
        Rejection {
            refusal: Some(Box::new(refusal.clone())),
            ..Rejection::new(RejectCode::DbRefused, refusal.reason())
        }
    }

    pub fn at(mut self, instance_path: impl Into<String>) -> Rejection {
        self.instance_path = Some(instance_path.into());
        self
    }

    /// A producer writing in place can be caught mid-write: what we read is then a prefix of a
    /// good document, which fails exactly like this. Such a failure is only final once the file
    /// has stopped changing.
    pub fn may_be_incomplete(&self) -> bool {
        matches!(self.code, RejectCode::InvalidJson | RejectCode::NotUtf8)
    }
}

/// The longest reason kept, in bytes (plus a marker). Reasons quote the offending value, which
/// a hostile file can make as large as `max_file_bytes`; the WARN line and the reason file
/// would then repeat all of it for every such file.
const MAX_REASON_BYTES: usize = 512;

/// `reason`, cut at [`MAX_REASON_BYTES`] if longer.
pub fn shortened(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push_str("… (shortened)");
    }
    reason
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}
