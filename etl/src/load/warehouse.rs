//! The warehouse connection pool and the one transaction that applies a batch.
//!
//! Every batch goes to the raw zone (`events`, deduplicated by event id) and, reduced to one
//! winner per entity, to the entity tables through an upsert whose `WHERE` clause is the version
//! guard: a row only changes for a strictly greater version. Applying any set of events, in any
//! order, any number of times, therefore leaves the same tables.

use chrono::NaiveDateTime;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use crate::catalog::{Catalog, Cell, Kind, SqlType};
use crate::event::Event;
use crate::load::arrays::{Array, RawJson};
use crate::load::batch::Batch;
use crate::load::connect::Target;
pub use crate::load::error::DbError;
use crate::load::migrate::Migration;
use crate::load::upsert::Upserts;

/// What a committed batch did, per type present in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub types: Vec<TypeApplied>,
}

/// One type's part of a committed batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeApplied {
    pub kind: Kind,
    /// Events of this type in the batch.
    pub events: u64,
    /// Rows inserted or changed in its table.
    pub changed: u64,
}

// Every statement takes its rows as one array per column and `unnest`s them, in array order, so
// rows are written (and locked) in the order sorted here. Parameters travel in PostgreSQL's
// binary format: no JSON to build in Rust and to parse again in the server, and each statement
// is prepared once per connection. Measured with `cargo run --release -p bench` (100,000
// events) against the former one-JSON-document-per-batch `jsonb_to_recordset`: PostgreSQL CPU
// -25%, the etl's own CPU -12%. Binary COPY into a temp table was not adopted: one unnest of the
// whole backlog already costs the server what the bench's COPY + merge floor does, and per batch
// COPY would add a temp table and more round trips. Each type's upsert is generated from its
// declaration (`load::upsert::upsert_sql`).

//
// A known event id adds no raw row: the row is there (ON CONFLICT), or it was retired to the
// lake and its id is in `retired_events` (kept for `retired_ids_days`).
const INSERT_EVENTS: &str = "
INSERT INTO events (event_id, type, entity_id, event_at, payload, source_file)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::timestamp[], $5::jsonb[], $6::text[])
    AS u(event_id, type, entity_id, event_at, payload, source_file)
 WHERE NOT EXISTS (SELECT 1 FROM retired_events r WHERE r.event_id = u.event_id)
ON CONFLICT (event_id) DO NOTHING";

/// The warehouse: a pool of connections to PostgreSQL.
#[derive(Clone)]
pub struct Warehouse {
    pool: Pool,
    upserts: Upserts,
    /// The target's connect timeout: what one start-up attempt may take to get a connection.
    connect_timeout: std::time::Duration,
}

impl Warehouse {
    /// Builds the pool; connections are made lazily, so this succeeds while the server is down.
    pub fn new(url: &str, max_connections: usize) -> Result<Warehouse, DbError> {
        Warehouse::open(Target::parse(url)?, max_connections)
    }

    /// [`Warehouse::new`] for a parsed target (TLS settings and secrets resolved).
    pub fn open(target: Target, max_connections: usize) -> Result<Warehouse, DbError> {
        let connect_timeout = target.connect_timeout();
        let manager = Manager::from_config(
            target.pg,
            target.tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .build()?;
        Ok(Warehouse {
            pool,
            upserts: Upserts::default(),
            connect_timeout,
        })
    }

    /// How long one connection attempt may take (the URL's `connect_timeout`, or the default).
    pub fn connect_timeout(&self) -> std::time::Duration {
        self.connect_timeout
    }

    /// Applies the pending `migrations`, then checks that every type's table matches its
    /// declaration; returns the versions it applied.
    pub async fn prepare(
        &self,
        migrations: &[Migration],
        catalog: &Catalog,
    ) -> Result<Vec<String>, DbError> {
        let mut client = self.pool.get().await?;
        Warehouse::prepare_on(&mut client, migrations, catalog).await
    }

    /// [`Warehouse::prepare`] on a connection the caller already holds (start-up gets it
    /// within its connect timeout, then migrates without one: a long migration is not a
    /// server that does not answer).
    pub async fn prepare_on(
        client: &mut deadpool_postgres::Object,
        migrations: &[Migration],
        catalog: &Catalog,
    ) -> Result<Vec<String>, DbError> {
        let applied = crate::load::migrate::migrate(client, migrations).await?;
        let problems = crate::load::upsert::check(&***client, catalog.iter()).await?;
        if !problems.is_empty() {
            return Err(DbError::Tables(problems));
        }
        Ok(applied)
    }

    /// A connection from the pool, for the few statements outside [`Warehouse::apply`] (the
    /// dead-letter table).
    pub async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        Ok(self.pool.get().await?)
    }

    /// Succeeds when the database answers a query.
    pub async fn ping(&self) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Whether the database answers a query within two seconds (`/readyz`, the reachability
    /// gauge).
    pub async fn answers(&self) -> bool {
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), self.ping()).await,
            Ok(Ok(()))
        )
    }

    /// Applies a batch in one transaction. On error nothing of it is visible, and the caller
    /// may retry it as is.
    pub async fn apply(&self, batch: &Batch) -> Result<Applied, DbError> {
        let mut raw: Vec<&Event> = batch.events.iter().collect();
        // Sorted keys: concurrent transactions lock index entries in the same order.
        raw.sort_unstable_by_key(|e| e.meta.event_id);
        let raw = RawColumns::new(&raw);
        let mut applied = Applied::default();
        let mut tables = Vec::new();
        for (kind, events, winners) in batch.winners() {
            tables.push((kind.clone(), Columns::new(kind, &winners)?));
            applied.types.push(TypeApplied {
                kind: kind.clone(),
                events,
                changed: 0,
            });
        }

        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let insert_events = tx.prepare_cached(INSERT_EVENTS).await?;
        tx.execute(&insert_events, &raw.params()).await?;
        for ((kind, columns), counts) in tables.iter().zip(&mut applied.types) {
            let upsert = tx.prepare_cached(&self.upserts.sql_for(kind)).await?;
            counts.changed = tx.execute(&upsert, &columns.params()).await?;
        }
        tx.commit().await?;
        crash_point!(LoadCommitted);
        Ok(applied)
    }
}

/// The raw zone rows of a batch, one array per column of `events`.
struct RawColumns<'a> {
    event_id: Array<Uuid>,
    kind: Array<&'a str>,
    entity_id: Array<i64>,
    event_at: Array<NaiveDateTime>,
    payload: Array<RawJson<'a>>,
    source_file: Array<&'a str>,
}

impl<'a> RawColumns<'a> {
    fn new(events: &[&'a Event]) -> RawColumns<'a> {
        RawColumns {
            event_id: Array(events.iter().map(|e| e.meta.event_id).collect()),
            kind: Array(events.iter().map(|e| e.kind().name()).collect()),
            entity_id: Array(events.iter().map(|e| e.entity_id()).collect()),
            event_at: Array(events.iter().map(|e| e.meta.event_at).collect()),
            payload: Array(events.iter().map(|e| RawJson(e.raw_payload())).collect()),
            source_file: Array(events.iter().map(|e| e.origin.as_str()).collect()),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.event_id,
            &self.kind,
            &self.entity_id,
            &self.event_at,
            &self.payload,
            &self.source_file,
        ]
    }
}

/// The winners of one type as the array parameters of its upsert: one per declared column,
/// then the guard columns every type shares.
struct Columns<'a> {
    declared: Vec<Values<'a>>,
    event_at: Array<NaiveDateTime>,
    event_id: Array<Uuid>,
}

/// One column's values, in the Rust type that PostgreSQL's binary format expects for it.
enum Values<'a> {
    BigInt(Array<Option<i64>>),
    Integer(Array<Option<i32>>),
    Double(Array<Option<f64>>),
    Boolean(Array<Option<bool>>),
    Text(Array<Option<&'a str>>),
    Timestamp(Array<Option<NaiveDateTime>>),
    Uuid(Array<Option<Uuid>>),
    Json(Array<Option<Json<&'a serde_json::Value>>>),
}

impl<'a> Columns<'a> {
    /// `winners` are one event per entity of `kind`, sorted by id (the lock order).
    fn new(kind: &Kind, winners: &[&'a Event]) -> Result<Columns<'a>, DbError> {
        let n = winners.len();
        let mut declared: Vec<Values<'a>> = kind
            .columns
            .iter()
            .map(|c| Values::with_capacity(&c.sql_type, n))
            .collect();
        for event in winners {
            for ((values, cell), column) in declared.iter_mut().zip(&event.row).zip(&kind.columns) {
                values.push(cell).map_err(|cell| {
                    DbError::Internal(format!(
                        "type {}: column {} got {cell:?}",
                        kind.name, column.name
                    ))
                })?;
            }
        }
        Ok(Columns {
            declared,
            event_at: Array(winners.iter().map(|e| e.meta.event_at).collect()),
            event_id: Array(winners.iter().map(|e| e.meta.event_id).collect()),
        })
    }

    /// The parameters of the type's upsert, in its column order.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> =
            self.declared.iter().map(Values::as_param).collect();
        params.push(&self.event_at);
        params.push(&self.event_id);
        params
    }
}

impl<'a> Values<'a> {
    fn with_capacity(sql_type: &SqlType, n: usize) -> Values<'a> {
        match sql_type {
            SqlType::BigInt => Values::BigInt(Array(Vec::with_capacity(n))),
            SqlType::Integer => Values::Integer(Array(Vec::with_capacity(n))),
            SqlType::Double => Values::Double(Array(Vec::with_capacity(n))),
            SqlType::Boolean => Values::Boolean(Array(Vec::with_capacity(n))),
            SqlType::Text | SqlType::Other(_) => Values::Text(Array(Vec::with_capacity(n))),
            SqlType::Timestamp => Values::Timestamp(Array(Vec::with_capacity(n))),
            SqlType::Uuid => Values::Uuid(Array(Vec::with_capacity(n))),
            SqlType::Jsonb => Values::Json(Array(Vec::with_capacity(n))),
        }
    }

    /// Appends `cell`; a cell of another type than the column's (which decoding, typing each
    /// cell by the same declaration, never produces) is handed back as an error.
    fn push(&mut self, cell: &'a Cell) -> Result<(), &'a Cell> {
        match (self, cell) {
            (Values::BigInt(v), Cell::Int(x)) => v.0.push(Some(*x)),
            (Values::Integer(v), Cell::Int(x)) => {
                v.0.push(Some(i32::try_from(*x).map_err(|_| cell)?))
            }
            (Values::Double(v), Cell::Float(x)) => v.0.push(Some(*x)),
            (Values::Boolean(v), Cell::Bool(x)) => v.0.push(Some(*x)),
            (Values::Text(v), Cell::Text(x)) => v.0.push(Some(x)),
            (Values::Timestamp(v), Cell::Timestamp(x)) => v.0.push(Some(*x)),
            (Values::Uuid(v), Cell::Uuid(x)) => v.0.push(Some(*x)),
            (Values::Json(v), Cell::Json(x)) => v.0.push(Some(Json(x))),
            (values, Cell::Null) => values.push_null(),
            _ => return Err(cell),
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match self {
            Values::BigInt(v) => v.0.push(None),
            Values::Integer(v) => v.0.push(None),
            Values::Double(v) => v.0.push(None),
            Values::Boolean(v) => v.0.push(None),
            Values::Text(v) => v.0.push(None),
            Values::Timestamp(v) => v.0.push(None),
            Values::Uuid(v) => v.0.push(None),
            Values::Json(v) => v.0.push(None),
        }
    }

    fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Values::BigInt(v) => v,
            Values::Integer(v) => v,
            Values::Double(v) => v,
            Values::Boolean(v) => v,
            Values::Text(v) => v,
            Values::Timestamp(v) => v,
            Values::Uuid(v) => v,
            Values::Json(v) => v,
        }
    }
}
