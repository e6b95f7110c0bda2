//! A declared column: its SQL type, the document field it is read from, and the typed value
//! ([`Cell`]) an event carries for it between decoding and the upsert.

use std::cmp::Ordering;

use chrono::NaiveDateTime;
use serde_json::Value;
use uuid::Uuid;

/// The SQL types a column can be declared with. The common ones travel to PostgreSQL in its
/// binary format; any other type name is sent as text and cast by the server (`numeric`,
/// `date`, `varchar(20)`…), so a declaration is never limited to what this enum lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlType {
    BigInt,
    Integer,
    Double,
    Boolean,
    Text,
    Timestamp,
    Uuid,
    Jsonb,
    /// Sent as text and cast with `::<name>` (the name is checked to be a plain type name).
    Other(String),
}

/// A declaration's column that cannot work: the sentence names the text at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeclarationError {
    #[error("{0:?} is not an SQL type name")]
    NotSqlType(String),
    #[error("{0:?} is not a JSON pointer (it must start with /)")]
    NotPointer(String),
}

/// A value an event holds that its column cannot take: the sentence names the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{shown} is not {expected}")]
    Wrong {
        /// The value as shown in the reason (shortened).
        shown: String,
        expected: &'static str,
    },
    #[error("`{text}` is not a valid date-time: {reason}")]
    Timestamp {
        text: String,
        reason: chrono::ParseError,
    },
}

impl SqlType {
    /// Parses a type as a declaration writes it (case and spacing as in SQL).
    pub fn parse(text: &str) -> Result<SqlType, DeclarationError> {
        let name = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let name = name.to_ascii_lowercase();
        Ok(match name.as_str() {
            "bigint" | "int8" => SqlType::BigInt,
            "integer" | "int" | "int4" => SqlType::Integer,
            "double precision" | "float8" => SqlType::Double,
            "boolean" | "bool" => SqlType::Boolean,
            "text" => SqlType::Text,
            "timestamp" | "timestamp without time zone" => SqlType::Timestamp,
            "uuid" => SqlType::Uuid,
            "jsonb" => SqlType::Jsonb,
            // Spliced into SQL as a cast: only letters, digits, spaces, `_` and a `(p, s)`.
            other
                if !other.is_empty()
                    && other.starts_with(|c: char| c.is_ascii_lowercase())
                    && other.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '(' | ')' | ',')
                    }) =>
            {
                SqlType::Other(other.to_owned())
            }
            _ => return Err(DeclarationError::NotSqlType(text.to_owned())),
        })
    }

    /// The type as written in SQL (array parameters are `<this>[]`).
    pub fn sql(&self) -> &str {
        match self {
            SqlType::BigInt => "bigint",
            SqlType::Integer => "integer",
            SqlType::Double => "double precision",
            SqlType::Boolean => "boolean",
            SqlType::Text => "text",
            SqlType::Timestamp => "timestamp",
            SqlType::Uuid => "uuid",
            SqlType::Jsonb => "jsonb",
            SqlType::Other(name) => name,
        }
    }

    /// The type of the array parameter that carries the column: its own, or text for a type
    /// the server casts.
    pub fn wire(&self) -> &str {
        match self {
            SqlType::Other(_) => "text",
            known => known.sql(),
        }
    }

    /// Types whose order is the same in Rust and in PostgreSQL (no collation, no casts), so a
    /// batch and the SQL guard pick the same winner: the only ones a version clock may use.
    pub fn orders_like_sql(&self) -> bool {
        matches!(
            self,
            SqlType::BigInt | SqlType::Integer | SqlType::Double | SqlType::Timestamp
        )
    }

    /// [`SqlType::cell`] of a JSON string, without building the value: `None` when the column
    /// does not take a string, an error when the string does not read as the column's type.
    /// A test holds the two to the same cells.
    pub fn cell_of_str(&self, text: &str) -> Option<Result<Cell, ValueError>> {
        match self {
            SqlType::Text | SqlType::Other(_) => Some(Ok(Cell::Text(text.to_owned()))),
            SqlType::Timestamp => Some(parse_timestamp(text).map(Cell::Timestamp)),
            SqlType::Uuid => Uuid::parse_str(text).ok().map(|id| Ok(Cell::Uuid(id))),
            SqlType::Jsonb => Some(Ok(Cell::Json(Value::String(text.to_owned())))),
            SqlType::BigInt | SqlType::Integer | SqlType::Double | SqlType::Boolean => None,
        }
    }

    /// The typed value of `value` (absent or null is `Cell::Null`; the caller decides whether
    /// the column may be null). The error is a sentence naming the value.
    pub fn cell(&self, value: Option<&Value>) -> Result<Cell, ValueError> {
        let value = match value {
            None | Some(Value::Null) => return Ok(Cell::Null),
            Some(v) => v,
        };
        let wrong = |expected: &'static str| ValueError::Wrong {
            shown: shown(value),
            expected,
        };
        Ok(match self {
            SqlType::BigInt => match value.as_i64() {
                Some(n) => Cell::Int(n),
                None if value.is_number() => return Err(wrong("a 64-bit integer")),
                None => return Err(wrong("an integer")),
            },
            SqlType::Integer => match value.as_i64().map(i32::try_from) {
                Some(Ok(n)) => Cell::Int(n.into()),
                _ => return Err(wrong("a 32-bit integer")),
            },
            SqlType::Double => match value.as_f64() {
                Some(x) => Cell::Float(x),
                None => return Err(wrong("a number")),
            },
            SqlType::Boolean => match value.as_bool() {
                Some(b) => Cell::Bool(b),
                None => return Err(wrong("a boolean")),
            },
            SqlType::Text => match value.as_str() {
                Some(s) => Cell::Text(s.to_owned()),
                None => return Err(wrong("a string")),
            },
            SqlType::Timestamp => match value.as_str() {
                Some(s) => Cell::Timestamp(parse_timestamp(s)?),
                None => return Err(wrong("a date-time string")),
            },
            SqlType::Uuid => match value.as_str().map(Uuid::parse_str) {
                Some(Ok(id)) => Cell::Uuid(id),
                _ => return Err(wrong("a UUID")),
            },
            SqlType::Jsonb => Cell::Json(value.clone()),
            // The server parses the text; a value it cannot read is an event it refuses.
            SqlType::Other(_) => Cell::Text(match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        })
    }
}

/// The format producers write (`2024-05-01 12:00:03`); ISO 8601's `T` and fractions of a second
/// are accepted too. Naive: a zone suffix is refused rather than silently dropped.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

pub fn parse_timestamp(text: &str) -> Result<NaiveDateTime, ValueError> {
    // The producers' exact form, read digit by digit: chrono's format-string parser costs more
    // than the rest of typing an event (measured with callgrind on a 10,000-event drain).
    if let Some(at) = producer_form(text.as_bytes()) {
        return Ok(at);
    }
    NaiveDateTime::parse_from_str(text, TIMESTAMP_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
        .map_err(|reason| ValueError::Timestamp {
            text: text.to_owned(),
            reason,
        })
}

/// `YYYY-MM-DD HH:MM:SS` exactly, if it names a real date and time; anything else (including an
/// impossible date such as 2024-02-30) is left to chrono, which also words the error.
fn producer_form(b: &[u8]) -> Option<NaiveDateTime> {
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(number(0..4)?).ok()?,
        number(5..7)?,
        number(8..10)?,
    )?;
    let time = chrono::NaiveTime::from_hms_opt(number(11..13)?, number(14..16)?, number(17..19)?)?;
    Some(NaiveDateTime::new(date, time))
}

/// A value as quoted in a reason, cut short: reasons are bounded.
fn shown(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 64 {
        let mut cut = 64;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// One column's value in an event, typed as its column is declared.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    Timestamp(NaiveDateTime),
    Uuid(Uuid),
    Json(Value),
}

impl Cell {
    /// The order of two values of one version-clock column (see [`SqlType::orders_like_sql`]);
    /// null first, like a missing version.
    pub fn version_cmp(&self, other: &Cell) -> Ordering {
        match (self, other) {
            (Cell::Int(a), Cell::Int(b)) => a.cmp(b),
            (Cell::Float(a), Cell::Float(b)) => a.total_cmp(b),
            (Cell::Timestamp(a), Cell::Timestamp(b)) => a.cmp(b),
            (Cell::Null, Cell::Null) => Ordering::Equal,
            (Cell::Null, _) => Ordering::Less,
            (_, Cell::Null) => Ordering::Greater,
            // Never reached: a clock column holds one variant (checked at load).
            _ => Ordering::Equal,
        }
    }
}

/// A JSON pointer, split once at load so that reading a field per event is a few map lookups.
#[derive(Clone, Debug)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    pub fn parse(text: &str) -> Result<Pointer, DeclarationError> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(DeclarationError::NotPointer(text.to_owned()));
        };
        Ok(Pointer {
            text: text.to_owned(),
            tokens: rest
                .split('/')
                .map(|t| t.replace("~1", "/").replace("~0", "~"))
                .collect(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The pointer's reference tokens, unescaped.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The value at this pointer in `document`, if there is one.
    pub fn get<'a>(&self, document: &'a Value) -> Option<&'a Value> {
        resolve(&self.tokens, document)
    }
}

/// The value that the reference `tokens` (unescaped) lead to from `value`, if there is one.
pub fn resolve<'a>(tokens: &[String], value: &'a Value) -> Option<&'a Value> {
    tokens.iter().try_fold(value, |here, token| match here {
        Value::Object(map) => map.get(token),
        Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A column of a type's table, as its declaration maps it.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub sql_type: SqlType,
    /// Where the value is in the document (default `/payload/<name>`).
    pub field: Pointer,
    /// Absent or null in the document is NULL in the table; otherwise the event is refused.
    pub optional: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_string_types_alike_with_or_without_its_value() {
        let types = [
            SqlType::BigInt,
            SqlType::Integer,
            SqlType::Double,
            SqlType::Boolean,
            SqlType::Text,
            SqlType::Timestamp,
            SqlType::Uuid,
            SqlType::Jsonb,
            SqlType::Other("numeric".into()),
        ];
        let strings = [
            "",
            "12",
            "true",
            "2024-05-01 12:00:03",
            "2024-02-30 12:00:03",
            "2024-05-01T12:00:03.5",
            "0d133695-94a0-4f08-88ca-593745d25e35",
            "not a uuid",
        ];
        for sql_type in &types {
            for text in strings {
                let full = sql_type.cell(Some(&Value::String(text.into())));
                match sql_type.cell_of_str(text) {
                    Some(Ok(cell)) => assert_eq!(full.ok(), Some(cell), "{sql_type:?} {text}"),
                    Some(Err(_)) | None => assert!(full.is_err(), "{sql_type:?} {text}"),
                }
            }
        }
    }

    #[test]
    fn types_parse_as_sql_writes_them() {
        assert_eq!(SqlType::parse("BIGINT"), Ok(SqlType::BigInt));
        assert_eq!(SqlType::parse("double  precision"), Ok(SqlType::Double));
        assert_eq!(
            SqlType::parse("numeric(18, 2)"),
            Ok(SqlType::Other("numeric(18, 2)".into()))
        );
        assert!(SqlType::parse("text; DROP TABLE users").is_err());
        assert!(SqlType::parse("").is_err());
    }

    #[test]
    fn values_are_typed_or_explained() {
        assert_eq!(SqlType::BigInt.cell(Some(&json!(7))), Ok(Cell::Int(7)));
        assert!(SqlType::BigInt.cell(Some(&json!(1e30))).is_err());
        assert!(SqlType::Integer
            .cell(Some(&json!(3_000_000_000i64)))
            .is_err());
        assert_eq!(SqlType::Text.cell(None), Ok(Cell::Null));
        let at = SqlType::Timestamp.cell(Some(&json!("2024-05-01T12:00:03.5")));
        assert!(matches!(at, Ok(Cell::Timestamp(_))), "{at:?}");
        let exact = SqlType::Timestamp.cell(Some(&json!("2024-05-01 12:00:03")));
        let via_chrono = NaiveDateTime::parse_from_str("2024-05-01 12:00:03", TIMESTAMP_FORMAT);
        assert_eq!(exact, Ok(Cell::Timestamp(via_chrono.expect("valid"))));
        assert!(SqlType::Timestamp
            .cell(Some(&json!("2024-05-01 24:00:00")))
            .is_err());
        assert!(SqlType::Timestamp
            .cell(Some(&json!("2024-05-01 12:00:0x")))
            .is_err());
        let bad = SqlType::Timestamp.cell(Some(&json!("2024-02-30 11:58:40")));
        assert!(bad.is_err_and(|e| e.to_string().contains("2024-02-30")));
        assert_eq!(
            SqlType::Other("numeric".into()).cell(Some(&json!(12.5))),
            Ok(Cell::Text("12.5".into()))
        );
    }

    #[test]
    fn pointers_read_nested_fields() {
        let doc = json!({"payload": {"a/b": [1, {"c": 2}]}});
        let pointer = Pointer::parse("/payload/a~1b/1/c").expect("pointer");
        assert_eq!(pointer.get(&doc), Some(&json!(2)));
        assert!(Pointer::parse("payload").is_err());
    }
}
