//! Array parameters written straight into the message: the batch's columns go to PostgreSQL
//! as one array each (`unnest($1::bigint[], …)`), and postgres-types' generic array encoding
//! (a callback, a length placeholder and a bounds check per element) cost more per event than
//! the rest of encoding the batch. Same bytes, written directly: the binary array format is a
//! header (one dimension, a has-nulls flag, the element type, the length, lower bound 1), then
//! each element as its length (-1 for NULL) and its bytes. The element types are the wire
//! types a declaration can map to (`SqlType::wire`), each encoded as postgres-types encodes it;
//! a test compares the bytes with postgres-types' own for every one of them.

use std::error::Error;
use std::sync::LazyLock;

use bytes::{BufMut, BytesMut};
use chrono::NaiveDateTime;
use tokio_postgres::types::{IsNull, Json, Kind, ToSql, Type};
use uuid::Uuid;

type BoxError = Box<dyn Error + Sync + Send>;

/// One element type of an array parameter.
pub trait Element: std::fmt::Debug + Sync {
    /// Whether arrays of this element can be sent for the array type whose member is `member`.
    fn accepts(member: &Type) -> bool;
    /// Writes the element's length and bytes (or -1, returning false, for NULL).
    fn write(&self, member: &Type, out: &mut BytesMut) -> Result<bool, BoxError>;
}

/// A one-dimensional array parameter.
#[derive(Debug, Default)]
pub struct Array<T>(pub Vec<T>);

impl<T: Element> ToSql for Array<T> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let Kind::Array(member) = ty.kind() else {
            return Err(format!("{ty} is not an array type").into());
        };
        let len = i32::try_from(self.0.len()).map_err(|_| "value too large to transmit")?;
        out.put_i32(1);
        let flags_at = out.len();
        out.put_i32(0);
        out.put_u32(member.oid());
        out.put_i32(len);
        out.put_i32(1);
        let mut nulls = false;
        for element in &self.0 {
            nulls |= !element.write(member, out)?;
        }
        if nulls {
            out[flags_at..flags_at + 4].copy_from_slice(&1i32.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Array(member) if T::accepts(member))
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<T: Element> Element for Option<T> {
    fn accepts(member: &Type) -> bool {
        T::accepts(member)
    }

    fn write(&self, member: &Type, out: &mut BytesMut) -> Result<bool, BoxError> {
        match self {
            Some(value) => value.write(member, out),
            None => {
                out.put_i32(-1);
                Ok(false)
            }
        }
    }
}

/// Fixed-width elements: the width, then the big-endian bytes.
macro_rules! fixed {
    ($t:ty, $member:expr, $put:ident) => {
        impl Element for $t {
            fn accepts(member: &Type) -> bool {
                *member == $member
            }

            fn write(&self, _: &Type, out: &mut BytesMut) -> Result<bool, BoxError> {
                out.put_i32(std::mem::size_of::<$t>() as i32);
                out.$put(*self);
                Ok(true)
            }
        }
    };
}

fixed!(i64, Type::INT8, put_i64);
fixed!(i32, Type::INT4, put_i32);
fixed!(f64, Type::FLOAT8, put_f64);

impl Element for bool {
    fn accepts(member: &Type) -> bool {
        *member == Type::BOOL
    }

    fn write(&self, _: &Type, out: &mut BytesMut) -> Result<bool, BoxError> {
        out.put_i32(1);
        out.put_u8(u8::from(*self));
        Ok(true)
    }
}

impl Element for Uuid {
    fn accepts(member: &Type) -> bool {
        *member == Type::UUID
    }

    fn write(&self, _: &Type, out: &mut BytesMut) -> Result<bool, BoxError> {
        out.put_i32(16);
        out.put_slice(self.as_bytes());
        Ok(true)
    }
}

/// PostgreSQL's epoch in Unix microseconds.
const EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Midnight, 1 January 2000: PostgreSQL's epoch for timestamps.
static EPOCH: LazyLock<NaiveDateTime> = LazyLock::new(|| {
    chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
});

impl Element for NaiveDateTime {
    fn accepts(member: &Type) -> bool {
        *member == Type::TIMESTAMP
    }

    fn write(&self, _: &Type, out: &mut BytesMut) -> Result<bool, BoxError> {
        // Microseconds since the epoch, truncated as postgres-types truncates them (toward
        // zero). A whole number of microseconds needs no truncating, and chrono's duration
        // arithmetic is then the slow way to the same count.
        let micros = if self.and_utc().timestamp_subsec_nanos().is_multiple_of(1000) {
            self.and_utc().timestamp_micros() - EPOCH_MICROS
        } else {
            self.signed_duration_since(*EPOCH)
                .num_microseconds()
                .ok_or("value too large to transmit")?
        };
        out.put_i32(8);
        out.put_i64(micros);
        Ok(true)
    }
}

impl Element for &str {
    fn accepts(member: &Type) -> bool {
        matches!(*member, Type::TEXT | Type::VARCHAR | Type::BPCHAR)
    }

    fn write(&self, _: &Type, out: &mut BytesMut) -> Result<bool, BoxError> {
        out.put_i32(i32::try_from(self.len()).map_err(|_| "value too large to transmit")?);
        out.put_slice(self.as_bytes());
        Ok(true)
    }
}

/// JSON text sent to a `jsonb` (or `json`) element as it is: the server parses it once, where
/// a `Json` value would be printed again first (for the raw zone's payloads, that printing
/// cost more than reading them).
#[derive(Debug)]
pub struct RawJson<'a>(pub &'a [u8]);

impl Element for RawJson<'_> {
    fn accepts(member: &Type) -> bool {
        matches!(*member, Type::JSON | Type::JSONB)
    }

    fn write(&self, member: &Type, out: &mut BytesMut) -> Result<bool, BoxError> {
        // jsonb's binary form is a version byte, then the text.
        let version = usize::from(*member == Type::JSONB);
        let len =
            i32::try_from(self.0.len() + version).map_err(|_| "value too large to transmit")?;
        out.put_i32(len);
        if version == 1 {
            out.put_u8(1);
        }
        out.put_slice(self.0);
        Ok(true)
    }
}

/// A `jsonb` column's value, printed by postgres-types (rare: only declared `jsonb` columns).
impl Element for Json<&serde_json::Value> {
    fn accepts(member: &Type) -> bool {
        <Json<&serde_json::Value> as ToSql>::accepts(member)
    }

    fn write(&self, member: &Type, out: &mut BytesMut) -> Result<bool, BoxError> {
        let len_at = out.len();
        out.put_i32(0);
        self.to_sql(member, out)?;
        let len =
            i32::try_from(out.len() - len_at - 4).map_err(|_| "value too large to transmit")?;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our bytes and postgres-types' for the same array.
    fn same<T: Element, U: ToSql>(ours: Array<T>, theirs: U, ty: Type) {
        assert!(<Array<T> as ToSql>::accepts(&ty), "{ty} not accepted");
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        ours.to_sql(&ty, &mut a).expect("ours encodes");
        theirs.to_sql(&ty, &mut b).expect("theirs encodes");
        assert_eq!(a, b, "{ty}");
    }

    #[test]
    fn every_wire_type_is_encoded_as_postgres_types_encodes_it() {
        same(
            Array(vec![Some(1i64), None, Some(-7)]),
            vec![Some(1i64), None, Some(-7)],
            Type::INT8_ARRAY,
        );
        same(
            Array(vec![5i64, i64::MIN]),
            vec![5i64, i64::MIN],
            Type::INT8_ARRAY,
        );
        same(
            Array(Vec::<i64>::new()),
            Vec::<i64>::new(),
            Type::INT8_ARRAY,
        );
        same(
            Array(vec![Some(3i32), None]),
            vec![Some(3i32), None],
            Type::INT4_ARRAY,
        );
        same(
            Array(vec![Some(0.3f64), None, Some(-0.0)]),
            vec![Some(0.3f64), None, Some(-0.0)],
            Type::FLOAT8_ARRAY,
        );
        same(
            Array(vec![Some(true), None, Some(false)]),
            vec![Some(true), None, Some(false)],
            Type::BOOL_ARRAY,
        );
        let id = Uuid::parse_str("0d133695-94a0-4f08-88ca-593745d25e35").expect("a UUID");
        same(
            Array(vec![Some(id), None]),
            vec![Some(id), None],
            Type::UUID_ARRAY,
        );
        same(Array(vec![id]), vec![id], Type::UUID_ARRAY);
        same(
            Array(vec![Some("a b"), None, Some("")]),
            vec![Some("a b"), None, Some("")],
            Type::TEXT_ARRAY,
        );
        let times: Vec<NaiveDateTime> = [
            "2024-05-01 12:00:03",
            "1999-12-31 23:59:59.9999995",
            "1970-01-01 00:00:00.000001",
            "2262-04-11 23:47:16.854775807",
            "1900-02-28 01:02:03.000004",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59.999999",
        ]
        .iter()
        .map(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").expect("a time"))
        .collect();
        same(Array(times.clone()), times.clone(), Type::TIMESTAMP_ARRAY);
        let nullable: Vec<Option<NaiveDateTime>> =
            times.iter().map(|t| Some(*t)).chain([None]).collect();
        same(Array(nullable.clone()), nullable, Type::TIMESTAMP_ARRAY);
        let value = serde_json::json!({"a": [1, "x"]});
        same(
            Array(vec![Some(Json(&value)), None]),
            vec![Some(Json(&value)), None],
            Type::JSONB_ARRAY,
        );
        let text = value.to_string();
        same(
            Array(vec![RawJson(text.as_bytes())]),
            vec![Json(&value)],
            Type::JSONB_ARRAY,
        );
        same(
            Array(vec![RawJson(text.as_bytes())]),
            vec![Json(&value)],
            Type::JSON_ARRAY,
        );
    }

    #[test]
    fn an_array_refuses_a_type_it_cannot_be() {
        assert!(!<Array<i64> as ToSql>::accepts(&Type::INT4_ARRAY));
        assert!(!<Array<&str> as ToSql>::accepts(&Type::INT8_ARRAY));
        assert!(!<Array<i64> as ToSql>::accepts(&Type::INT8));
    }
}
