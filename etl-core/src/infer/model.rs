//! What inference concludes about an event type, as plain data: each field's column with its
//! format and the evidence for it, the key and version clock chosen, and the conflicts it
//! refused to guess about. The drafts and the report are written from this alone.

use std::fmt;

/// The JSON kinds a field was seen with (what a conflict names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum JsonKind {
    Boolean,
    Integer,
    /// An integer beyond 64 bits.
    BigInteger,
    Decimal,
    String,
    Array,
    Object,
}

impl JsonKind {
    /// Kinds that one column type can hold together (integers and decimals are numbers).
    pub fn family(self) -> &'static str {
        match self {
            JsonKind::Boolean => "a boolean",
            JsonKind::Integer | JsonKind::BigInteger | JsonKind::Decimal => "a number",
            JsonKind::String => "a string",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        }
    }
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Boolean => "boolean",
            JsonKind::Integer => "integer",
            JsonKind::BigInteger => "integer beyond 64 bits",
            JsonKind::Decimal => "decimal",
            JsonKind::String => "string",
            JsonKind::Array => "array",
            JsonKind::Object => "object",
        })
    }
}

/// What a field's values are, as far as the samples prove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Boolean,
    /// Integers that fit 64 bits.
    Integer,
    /// Decimals, or integers beyond 64 bits: kept exact.
    Number,
    /// Strings of digits with an optional fraction (`"12.50"`): kept exact.
    DecimalText,
    /// The producers' `YYYY-MM-DD HH:MM:SS`.
    Timestamp,
    /// RFC 3339 times with their offset.
    Rfc3339,
    Uuid,
    Text,
    /// Arrays, or objects that are always empty: kept whole.
    Json,
    /// Null in every sample that has it: nothing proves a type.
    Unknown,
}

impl Format {
    /// The column's SQL type.
    pub fn sql_type(self) -> &'static str {
        match self {
            Format::Boolean => "boolean",
            Format::Integer => "bigint",
            Format::Number | Format::DecimalText => "numeric",
            Format::Timestamp => "timestamp",
            Format::Rfc3339 => "timestamptz",
            Format::Uuid => "uuid",
            Format::Text | Format::Unknown => "text",
            Format::Json => "jsonb",
        }
    }

    /// Whether a version clock may use it (its order is the same in Rust and PostgreSQL).
    pub fn orders(self) -> bool {
        matches!(self, Format::Integer | Format::Timestamp)
    }
}

/// One field of the payload and the column it becomes.
#[derive(Clone, Debug)]
pub struct Guess {
    /// The column's name (the field's, made an SQL identifier).
    pub column: String,
    /// The object keys under the payload.
    pub path: Vec<String>,
    pub format: Format,
    /// Samples holding the field (null included).
    pub present: usize,
    /// Samples holding it as null.
    pub nulls: usize,
    /// Why this format, in words (`integer in every sample, 0 to 1199`).
    pub evidence: String,
}

impl Guess {
    /// The field's JSON pointer in the envelope (`/payload/a/b`).
    pub fn pointer(&self) -> String {
        let mut pointer = String::from("/payload");
        for token in &self.path {
            pointer.push('/');
            pointer.push_str(&token.replace('~', "~0").replace('/', "~1"));
        }
        pointer
    }

    /// Whether the column reads the default pointer, `/payload/<column>`.
    pub fn default_pointer(&self) -> bool {
        self.path.len() == 1 && self.path[0] == self.column
    }

    /// Present and not null in `samples` samples out of `samples`.
    pub fn required(&self, samples: usize) -> bool {
        self.present == samples && self.nulls == 0
    }
}

/// A clock the guard compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// A column (its index in [`Inference::columns`]).
    Column(usize),
    /// The envelope's `metadata.event_at`.
    EventAt,
}

/// A field seen as different kinds in different samples: reported, never guessed.
#[derive(Clone, Debug)]
pub struct Conflict {
    pub pointer: String,
    /// Each kind seen, how many samples, and the first files that have it.
    pub seen: Vec<(JsonKind, usize, Vec<String>)>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seen: Vec<String> = self
            .seen
            .iter()
            .map(|(kind, count, files)| {
                let more = count.saturating_sub(files.len());
                let tail = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("{} in {}{tail}", kind, files.join(", "))
            })
            .collect();
        write!(f, "{} is {}", self.pointer, seen.join("; but "))
    }
}

/// Everything inferred about one event type.
#[derive(Clone, Debug)]
pub struct Inference {
    /// The type's one name (`--type`).
    pub name: String,
    /// What samples write in `metadata.type` (the name with `--bare`).
    pub envelope_type: String,
    /// The samples read, and where they came from (a file, or a folder and its count).
    pub samples: usize,
    /// Files that are not samples, and why.
    pub skipped: Vec<(String, String)>,
    pub bare: bool,
    pub columns: Vec<Guess>,
    /// Index of the key in `columns`, and why.
    pub key: usize,
    pub key_evidence: String,
    pub version: Clock,
    pub version_evidence: String,
    /// Whether every `metadata.event_at` has the producers' `YYYY-MM-DD HH:MM:SS` form.
    pub event_at_producer_form: bool,
    /// Anything else a person should know (ties, types assumed).
    pub notes: Vec<String>,
}

impl Inference {
    /// The version clock's name in the declaration.
    pub fn version_name(&self) -> &str {
        match self.version {
            Clock::Column(i) => &self.columns[i].column,
            Clock::EventAt => "event_at",
        }
    }

    /// `2 of 8 samples (25%)`.
    pub fn share(&self, count: usize) -> String {
        let percent = if self.samples == 0 {
            0.0
        } else {
            100.0 * count as f64 / self.samples as f64
        };
        format!("{count} of {} samples ({percent:.0}%)", self.samples)
    }
}
