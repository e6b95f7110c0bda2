//! The read API's SQL, built once at start-up from the type catalog: only declared tables and
//! columns (identifiers the catalog already checked), every value a bound parameter — nothing a
//! client sends is ever spliced into a statement — and each row turned into a JSON object.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::catalog::{Cell, Clock, Kind, SqlType};
use crate::load::upsert::quoted_table;

/// How a column travels from PostgreSQL to JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// bigint (and smallint, widened in SQL): a JSON integer.
    Int8,
    /// integer: a JSON integer.
    Int4,
    /// double precision (and real, widened in SQL): a JSON number.
    Float8,
    Bool,
    Text,
    /// timestamp without time zone: RFC 3339 with `Z` (see [`rfc3339`]).
    Timestamp,
    /// timestamp with time zone: RFC 3339 in UTC.
    TimestampTz,
    /// A UUID as its hyphenated text.
    Uuid,
    /// jsonb as the JSON value itself.
    Json,
    /// numeric: the exact decimal as a string (`"12.35"`), never through a binary float.
    Decimal,
    /// date: `YYYY-MM-DD`.
    Date,
    /// Any other type: its PostgreSQL text form.
    AsText,
}

impl Shape {
    /// The shape of a declared type, and the SQL expression that reads column `name` for it.
    fn of(sql_type: &SqlType, name: &str) -> (Shape, String) {
        let column = format!("\"{name}\"");
        let as_is = |shape| (shape, column.clone());
        match sql_type {
            SqlType::BigInt => as_is(Shape::Int8),
            SqlType::Integer => as_is(Shape::Int4),
            SqlType::Double => as_is(Shape::Float8),
            SqlType::Boolean => as_is(Shape::Bool),
            SqlType::Text => as_is(Shape::Text),
            SqlType::Timestamp => as_is(Shape::Timestamp),
            SqlType::Uuid => as_is(Shape::Uuid),
            SqlType::Jsonb => as_is(Shape::Json),
            SqlType::Other(other) => {
                let base = other.split('(').next().unwrap_or_default().trim();
                match base {
                    "numeric" | "decimal" => (Shape::Decimal, format!("{column}::text")),
                    "timestamptz" | "timestamp with time zone" => as_is(Shape::TimestampTz),
                    "date" => (Shape::Date, format!("{column}::text")),
                    "smallint" | "int2" => (Shape::Int8, format!("{column}::bigint")),
                    "real" | "float4" => (Shape::Float8, format!("{column}::double precision")),
                    _ => (Shape::AsText, format!("{column}::text")),
                }
            }
        }
    }
}

/// One column of a served row.
#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    pub shape: Shape,
    /// The table allows NULL here (read from `pg_attribute` at start-up).
    pub nullable: bool,
    /// The column's SQL type, as a filter value is cast to it.
    pub sql_type: String,
}

/// A declared type as the read API serves it: its row's fields and its statements.
pub struct Table {
    pub kind: Kind,
    /// The declared columns, then `event_at` and `event_id` (the guard columns every table has).
    pub fields: Vec<Field>,
    /// Index of the entity key in `fields`.
    pub key: usize,
    /// The fields a list may filter on (indices into `fields`): the leading column of an index
    /// of the table, so that every filter is an index scan.
    pub filters: Vec<usize>,
    /// `SELECT <fields> FROM <table>`.
    select: String,
    /// The point lookup by key.
    pub point_sql: String,
    /// Retired versions, the raw zone's horizon and whether the row exists, for a history.
    pub history_meta_sql: String,
}

/// What the start-up learned about a table from PostgreSQL.
pub struct Described {
    /// Per field (declared columns, then `event_at`, `event_id`): may it be NULL?
    pub nullable: Vec<bool>,
    /// Names of the columns that lead an index.
    pub indexed: Vec<String>,
}

/// `LIMIT` of a list when the request names none, and the largest it may ask for.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;
/// Query parameters of a list that are not filters.
pub const RESERVED: [&str; 2] = ["after", "limit"];

/// Every raw version of an entity still in the warehouse (ordered afterwards, in Rust, by the
/// type's version clock).
/// The versions a history answers at most: a busy entity's raw zone can hold millions, and 256
/// requests in flight must not each hold them all in memory.
pub const HISTORY_MAX: i64 = 1000;

/// The newest [`HISTORY_MAX`] + 1 raw versions by event time (one more tells that there were
/// more); the answer then puts them in the type's version order.
pub const HISTORY_SQL: &str = "SELECT event_id, event_at, payload FROM events \
                                WHERE type = $1 AND entity_id = $2 \
                                ORDER BY event_at DESC, event_id DESC LIMIT $3";

impl Table {
    pub fn new(kind: &Kind, described: &Described) -> Table {
        let mut fields = Vec::new();
        let mut exprs = Vec::new();
        let guard = [
            ("event_at", SqlType::Timestamp),
            ("event_id", SqlType::Uuid),
        ];
        let columns = kind
            .columns
            .iter()
            .map(|c| (c.name.as_str(), &c.sql_type))
            .chain(guard.iter().map(|(name, t)| (*name, t)));
        for (i, (name, sql_type)) in columns.enumerate() {
            let (shape, expr) = Shape::of(sql_type, name);
            exprs.push(if expr == format!("\"{name}\"") {
                expr
            } else {
                format!("{expr} AS \"{name}\"")
            });
            fields.push(Field {
                name: name.to_owned(),
                shape,
                nullable: described.nullable.get(i).copied().unwrap_or(true),
                sql_type: sql_type.sql().to_owned(),
            });
        }
        let key = kind.key;
        let key_name = &fields[key].name;
        // A name that is also a reserved parameter cannot be a filter (it would be ambiguous).
        let filters = fields
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                *i != key
                    && described.indexed.contains(&f.name)
                    && !RESERVED.contains(&f.name.as_str())
                    && f.shape != Shape::Json
            })
            .map(|(i, _)| i)
            .collect();
        let table = quoted_table(&kind.table);
        let select = format!("SELECT {} FROM {table}", exprs.join(", "));
        // `$1::bigint`: an integer key compares with a bigint through its index too.
        let point_sql = format!("{select} WHERE \"{key_name}\" = $1::bigint");
        let history_meta_sql = format!(
            "SELECT (SELECT count(*) FROM retired_events WHERE type = $1 AND entity_id = $2), \
                    (SELECT forgotten_through FROM raw_horizon), \
                    EXISTS (SELECT 1 FROM {table} WHERE \"{key_name}\" = $2)"
        );
        Table {
            kind: kind.clone(),
            fields,
            key,
            filters,
            select,
            point_sql,
            history_meta_sql,
        }
    }

    pub fn name(&self) -> &str {
        self.kind.name()
    }

    /// The filter field called `name`, if the list may filter on it.
    pub fn filter(&self, name: &str) -> Option<usize> {
        self.filters
            .iter()
            .copied()
            .find(|&i| self.fields[i].name == name)
    }

    /// A keyset page: `filters` (field indices, in the order their values are bound as text,
    /// each cast by the server to the column's type), then `after` (bigint) if `with_after`,
    /// then the limit (bigint), ordered by key.
    pub fn list_sql(&self, filters: &[usize], with_after: bool) -> String {
        let mut conditions: Vec<String> = filters
            .iter()
            .enumerate()
            .map(|(n, &i)| {
                let f = &self.fields[i];
                format!(
                    "\"{}\" = CAST(${}::text AS {})",
                    f.name,
                    n + 1,
                    self.filter_type(f)
                )
            })
            .collect();
        let key = &self.fields[self.key].name;
        let mut next = filters.len() + 1;
        if with_after {
            conditions.push(format!("\"{key}\" > ${next}::bigint"));
            next += 1;
        }
        let condition = if conditions.is_empty() {
            "true".to_owned()
        } else {
            conditions.join(" AND ")
        };
        format!(
            "{} WHERE {condition} ORDER BY \"{key}\" LIMIT ${next}::bigint",
            self.select
        )
    }

    /// The type a filter value is cast to: the column's own.
    fn filter_type<'a>(&self, field: &'a Field) -> &'a str {
        &field.sql_type
    }

    /// The row as a JSON object, every field present (null when NULL).
    pub fn row_json(&self, row: &Row) -> Result<Map<String, Value>, tokio_postgres::Error> {
        let mut object = Map::with_capacity(self.fields.len());
        for (i, field) in self.fields.iter().enumerate() {
            object.insert(field.name.clone(), cell_json(row, i, field.shape)?);
        }
        Ok(object)
    }

    /// The key of a served row.
    pub fn key_of(&self, row: &Row) -> Result<Option<i64>, tokio_postgres::Error> {
        Ok(match self.fields[self.key].shape {
            Shape::Int4 => row.try_get::<_, Option<i32>>(self.key)?.map(i64::from),
            _ => row.try_get::<_, Option<i64>>(self.key)?,
        })
    }

    /// Sorts raw versions by the type's version clock — the order the upsert's guard uses —
    /// reading clock columns from the payload as the decoder does. A clock column read from
    /// outside `/payload` is not in the raw zone: it counts as absent, and `event_at`, then
    /// `event_id` order those versions.
    pub fn version_order(&self, versions: Vec<Version>) -> Vec<Version> {
        let clock = |v: &Version| -> Vec<Cell> {
            let document = serde_json::json!({ "payload": v.payload });
            self.kind
                .version
                .iter()
                .filter_map(|c| match c {
                    Clock::Column(i) => {
                        let column = &self.kind.columns[*i];
                        let cell = column.sql_type.cell(column.field.get(&document));
                        Some(cell.unwrap_or(Cell::Null))
                    }
                    Clock::EventAt => Some(Cell::Timestamp(v.event_at)),
                    // Always last: the tie-break below.
                    Clock::EventId => None,
                })
                .collect()
        };
        let mut keyed: Vec<(Vec<Cell>, Version)> =
            versions.into_iter().map(|v| (clock(&v), v)).collect();
        keyed.sort_by(|(a, va), (b, vb)| {
            a.iter()
                .zip(b)
                .map(|(x, y)| x.version_cmp(y))
                .find(|o| *o != Ordering::Equal)
                .unwrap_or_else(|| va.event_id.cmp(&vb.event_id))
        });
        keyed.into_iter().map(|(_, v)| v).collect()
    }
}

/// One raw version of an entity, as the raw zone (`events`) holds it.
pub struct Version {
    pub event_id: Uuid,
    pub event_at: NaiveDateTime,
    pub payload: Value,
}

/// A timestamp without time zone as RFC 3339. The warehouse stores the producers' wall-clock
/// times without a zone; the API labels them UTC (`Z`), the same reading the lake's Parquet
/// files and the future-skew check make.
pub fn rfc3339(at: NaiveDateTime) -> String {
    at.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn cell_json(row: &Row, i: usize, shape: Shape) -> Result<Value, tokio_postgres::Error> {
    Ok(match shape {
        Shape::Int8 => row.try_get::<_, Option<i64>>(i)?.map(Value::from),
        Shape::Int4 => row.try_get::<_, Option<i32>>(i)?.map(Value::from),
        // NaN and infinities have no JSON number: served as null.
        Shape::Float8 => row
            .try_get::<_, Option<f64>>(i)?
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        Shape::Bool => row.try_get::<_, Option<bool>>(i)?.map(Value::from),
        Shape::Text | Shape::Decimal | Shape::Date | Shape::AsText => {
            row.try_get::<_, Option<String>>(i)?.map(Value::from)
        }
        Shape::Timestamp => row
            .try_get::<_, Option<NaiveDateTime>>(i)?
            .map(|at| Value::from(rfc3339(at))),
        Shape::TimestampTz => row
            .try_get::<_, Option<DateTime<Utc>>>(i)?
            .map(|at| Value::from(at.to_rfc3339_opts(SecondsFormat::AutoSi, true))),
        Shape::Uuid => row
            .try_get::<_, Option<Uuid>>(i)?
            .map(|id| Value::from(id.to_string())),
        Shape::Json => row.try_get::<_, Option<Value>>(i)?,
    }
    .unwrap_or(Value::Null))
}

/// Reads from PostgreSQL what the served rows and the document need: per field whether it may
/// be NULL, and the columns that lead an index (the only ones a list filters on).
pub async fn describe(
    client: &impl tokio_postgres::GenericClient,
    kind: &Kind,
) -> Result<Described, tokio_postgres::Error> {
    let table = quoted_table(&kind.table);
    let mut names: Vec<&str> = kind.columns.iter().map(|c| c.name.as_str()).collect();
    names.extend(crate::catalog::GUARD_COLUMNS);
    let rows = client
        .query(
            "SELECT a.attname::text, a.attnotnull FROM pg_attribute a
              WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table],
        )
        .await?;
    let nullable = names
        .iter()
        .map(|name| {
            rows.iter()
                .find(|r| r.get::<_, String>(0) == *name)
                .is_none_or(|r| !r.get::<_, bool>(1))
        })
        .collect();
    let indexed = client
        .query(
            "SELECT DISTINCT a.attname::text FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
              WHERE i.indrelid = to_regclass($1)",
            &[&table],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    Ok(Described { nullable, indexed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn cards() -> Table {
        let catalog = Catalog::builtin().expect("the built-in types");
        let kind = catalog.get("cards").expect("cards");
        let mut nullable = vec![false; kind.columns.len() + 2];
        nullable[1] = true;
        Table::new(
            kind,
            &Described {
                nullable,
                indexed: vec!["id".into(), "user_id".into()],
            },
        )
    }

    #[test]
    fn statements_name_declared_columns_and_bind_every_value() {
        let table = cards();
        assert_eq!(table.filter("user_id"), Some(1));
        assert_eq!(
            table.filter("id"),
            None,
            "the key pages with after, not a filter"
        );
        assert_eq!(table.filter("active"), None, "not indexed");
        assert!(
            table
                .point_sql
                .starts_with("SELECT \"id\", \"user_id\", \"created_by_name\""),
            "{}",
            table.point_sql
        );
        assert!(table
            .point_sql
            .ends_with("FROM \"cards\" WHERE \"id\" = $1::bigint"));
        let sql = table.list_sql(&[1], true);
        assert!(
            sql.ends_with(
                "WHERE \"user_id\" = CAST($1::text AS bigint) AND \"id\" > $2::bigint \
                 ORDER BY \"id\" LIMIT $3::bigint"
            ),
            "{sql}"
        );
        assert!(table
            .list_sql(&[], false)
            .ends_with("WHERE true ORDER BY \"id\" LIMIT $1::bigint"));
    }

    #[test]
    fn versions_sort_by_the_declared_clock_then_event_time_then_id() {
        let table = cards();
        let at = |s: &str| crate::catalog::column::parse_timestamp(s).expect("time");
        let version = |n: u128, updated: &str, event_at: &str| Version {
            event_id: Uuid::from_u128(n),
            event_at: at(event_at),
            payload: serde_json::json!({ "id": 1, "updated_at": updated }),
        };
        let sorted = table.version_order(vec![
            version(1, "2024-05-03 00:00:00", "2024-05-01 00:00:00"),
            version(3, "2024-05-01 00:00:00", "2024-05-02 00:00:00"),
            version(2, "2024-05-01 00:00:00", "2024-05-02 00:00:00"),
            version(4, "2024-05-01 00:00:00", "2024-05-01 00:00:00"),
        ]);
        let ids: Vec<u128> = sorted.iter().map(|v| v.event_id.as_u128()).collect();
        assert_eq!(ids, [4, 2, 3, 1]);
    }
}
