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

use crate::event::{Event, Kind, Payload};
use crate::load::connect::Target;
use crate::transform::Batch;

/// A failure of the database, never of the events: the caller retries the whole batch.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database URL: {}", causes(.0))]
    Url(#[source] tokio_postgres::Error),
    #[error("cannot build the connection pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("cannot get a database connection: {}", causes(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {}", causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Setup(#[from] crate::load::connect::SetupError),
}

/// An error and its sources on one line: tokio-postgres says only "error connecting to server"
/// and keeps the useful part ("Connection refused") in its source.
pub(crate) fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What a committed batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events in the batch, per kind (index: `Kind as usize`).
    pub events: [u64; 2],
    /// Rows inserted or changed in the entity tables, per kind.
    pub changed: [u64; 2],
}

// Every statement takes its rows as one array per column and `unnest`s them, in array order, so
// rows are written (and locked) in the order sorted here. Parameters travel in PostgreSQL's
// binary format: no JSON to build in Rust and to parse again in the server, and each statement
// is prepared once per connection. Measured with `cargo run --release -p bench` (100,000
// events) against the former one-JSON-document-per-batch `jsonb_to_recordset`: PostgreSQL CPU
// -25%, the etl's own CPU -12%. Binary COPY into a temp table was not adopted: one unnest of the
// whole backlog already costs the server what the bench's COPY + merge floor does, and per batch
// COPY would add a temp table and more round trips.

const INSERT_EVENTS: &str = "
INSERT INTO events (event_id, type, entity_id, event_at, payload, source_file)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::timestamp[], $5::jsonb[], $6::text[])
ON CONFLICT (event_id) DO NOTHING";

const UPSERT_USERS: &str = "
INSERT INTO users AS t (id, name, address, job, score, event_at, event_id)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::float8[],
                     $6::timestamp[], $7::uuid[])
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, address = EXCLUDED.address, job = EXCLUDED.job,
    score = EXCLUDED.score, event_at = EXCLUDED.event_at, event_id = EXCLUDED.event_id
WHERE (t.event_at, t.event_id) < (EXCLUDED.event_at, EXCLUDED.event_id)";

const UPSERT_CARDS: &str = "
INSERT INTO cards AS t (id, user_id, created_by_name, created_at, updated_at, active, event_at, event_id)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamp[], $5::timestamp[],
                     $6::boolean[], $7::timestamp[], $8::uuid[])
ON CONFLICT (id) DO UPDATE SET
    user_id = EXCLUDED.user_id, created_by_name = EXCLUDED.created_by_name,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
    active = EXCLUDED.active, event_at = EXCLUDED.event_at, event_id = EXCLUDED.event_id
WHERE (t.updated_at, t.event_at, t.event_id) < (EXCLUDED.updated_at, EXCLUDED.event_at, EXCLUDED.event_id)";

/// The guarded upsert of each kind; the guard tuple is [`crate::event::Version`].
fn upsert_sql(kind: Kind) -> &'static str {
    match kind {
        Kind::User => UPSERT_USERS,
        Kind::Card => UPSERT_CARDS,
    }
}

/// The warehouse: a pool of connections to PostgreSQL.
#[derive(Clone)]
pub struct Warehouse {
    pool: Pool,
}

impl Warehouse {
    /// Builds the pool; connections are made lazily, so this succeeds while the server is down.
    pub fn new(url: &str, max_connections: usize) -> Result<Warehouse, DbError> {
        Warehouse::open(Target::parse(url)?, max_connections)
    }

    /// [`Warehouse::new`] for a parsed target (TLS settings and secrets resolved).
    pub fn open(target: Target, max_connections: usize) -> Result<Warehouse, DbError> {
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
        Ok(Warehouse { pool })
    }

    /// Applies the pending migrations; returns the names of those it applied.
    pub async fn migrate(&self) -> Result<Vec<&'static str>, DbError> {
        let mut client = self.pool.get().await?;
        Ok(crate::load::migrate::migrate(&mut client).await?)
    }

    /// Succeeds when the database answers a query.
    pub async fn ping(&self) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Applies a batch in one transaction. On error nothing of it is visible, and the caller
    /// may retry it as is.
    pub async fn apply(&self, batch: &Batch) -> Result<Applied, DbError> {
        let mut applied = Applied::default();
        let mut raw: Vec<&Event> = batch.events.iter().collect();
        // Sorted keys: concurrent transactions lock index entries in the same order.
        raw.sort_unstable_by_key(|e| e.meta.event_id);
        for event in &raw {
            applied.events[event.kind() as usize] += 1;
        }
        let raw = RawColumns::new(&raw);
        let entities: Vec<EntityColumns<'_>> = Kind::ALL
            .into_iter()
            .map(|kind| EntityColumns::new(kind, &batch.winners(kind)))
            .collect();

        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let insert_events = tx.prepare_cached(INSERT_EVENTS).await?;
        tx.execute(&insert_events, &raw.params()).await?;
        for (kind, columns) in Kind::ALL.into_iter().zip(&entities) {
            if columns.is_empty() {
                continue;
            }
            let upsert = tx.prepare_cached(upsert_sql(kind)).await?;
            applied.changed[kind as usize] = tx.execute(&upsert, &columns.params()).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }
}

/// The raw zone rows of a batch, one array per column of `events`.
struct RawColumns<'a> {
    event_id: Vec<Uuid>,
    kind: Vec<&'static str>,
    entity_id: Vec<i64>,
    event_at: Vec<NaiveDateTime>,
    payload: Vec<Json<&'a serde_json::Value>>,
    source_file: Vec<&'a str>,
}

impl<'a> RawColumns<'a> {
    fn new(events: &[&'a Event]) -> RawColumns<'a> {
        RawColumns {
            event_id: events.iter().map(|e| e.meta.event_id).collect(),
            kind: events.iter().map(|e| e.kind().as_str()).collect(),
            entity_id: events.iter().map(|e| e.entity_id()).collect(),
            event_at: events.iter().map(|e| e.meta.event_at).collect(),
            payload: events.iter().map(|e| Json(&e.raw_payload)).collect(),
            source_file: events.iter().map(|e| e.origin.as_str()).collect(),
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

/// The winners of one kind as the columns of its entity table: the typed payload, then the
/// guard columns every kind shares.
struct EntityColumns<'a> {
    payload: PayloadColumns<'a>,
    event_at: Vec<NaiveDateTime>,
    event_id: Vec<Uuid>,
}

/// The payload columns, which differ by kind (in table order).
enum PayloadColumns<'a> {
    User {
        id: Vec<i64>,
        name: Vec<&'a str>,
        address: Vec<&'a str>,
        job: Vec<&'a str>,
        score: Vec<f64>,
    },
    Card {
        id: Vec<i64>,
        user_id: Vec<Option<i64>>,
        created_by_name: Vec<&'a str>,
        created_at: Vec<NaiveDateTime>,
        updated_at: Vec<NaiveDateTime>,
        active: Vec<bool>,
    },
}

impl<'a> EntityColumns<'a> {
    /// `winners` are one event per entity of `kind`, sorted by id (the lock order); an event of
    /// another kind, which `Batch::winners` never returns, would be left out.
    fn new(kind: Kind, winners: &[&'a Event]) -> EntityColumns<'a> {
        let n = winners.len();
        let mut columns = EntityColumns {
            payload: match kind {
                Kind::User => PayloadColumns::User {
                    id: Vec::with_capacity(n),
                    name: Vec::with_capacity(n),
                    address: Vec::with_capacity(n),
                    job: Vec::with_capacity(n),
                    score: Vec::with_capacity(n),
                },
                Kind::Card => PayloadColumns::Card {
                    id: Vec::with_capacity(n),
                    user_id: Vec::with_capacity(n),
                    created_by_name: Vec::with_capacity(n),
                    created_at: Vec::with_capacity(n),
                    updated_at: Vec::with_capacity(n),
                    active: Vec::with_capacity(n),
                },
            },
            event_at: Vec::with_capacity(n),
            event_id: Vec::with_capacity(n),
        };
        for event in winners {
            if columns.payload.push(&event.payload) {
                columns.event_at.push(event.meta.event_at);
                columns.event_id.push(event.meta.event_id);
            }
        }
        columns
    }

    fn is_empty(&self) -> bool {
        self.event_id.is_empty()
    }

    /// The parameters of [`upsert_sql`], in its column order.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = match &self.payload {
            PayloadColumns::User {
                id,
                name,
                address,
                job,
                score,
            } => vec![id, name, address, job, score],
            PayloadColumns::Card {
                id,
                user_id,
                created_by_name,
                created_at,
                updated_at,
                active,
            } => vec![id, user_id, created_by_name, created_at, updated_at, active],
        };
        params.push(&self.event_at);
        params.push(&self.event_id);
        params
    }
}

impl<'a> PayloadColumns<'a> {
    /// Appends `payload` if it is of this kind; false (and nothing appended) otherwise.
    fn push(&mut self, payload: &'a Payload) -> bool {
        match (self, payload) {
            (
                PayloadColumns::User {
                    id,
                    name,
                    address,
                    job,
                    score,
                },
                Payload::User(user),
            ) => {
                id.push(user.id);
                name.push(&user.name);
                address.push(&user.address);
                job.push(&user.job);
                score.push(user.score);
                true
            }
            (
                PayloadColumns::Card {
                    id,
                    user_id,
                    created_by_name,
                    created_at,
                    updated_at,
                    active,
                },
                Payload::Card(card),
            ) => {
                id.push(card.id);
                user_id.push(card.user_id);
                created_by_name.push(&card.created_by_name);
                created_at.push(card.created_at);
                updated_at.push(card.updated_at);
                active.push(card.active);
                true
            }
            _ => false,
        }
    }
}
