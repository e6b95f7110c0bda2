//! The warehouse connection pool and the one transaction that applies a batch.
//!
//! Every batch goes to the raw zone (`events`, deduplicated by event id) and, reduced to one
//! winner per entity, to the entity tables through an upsert whose `WHERE` clause is the version
//! guard: a row only changes for a strictly greater version. Applying any set of events, in any
//! order, any number of times, therefore leaves the same tables.

use std::time::Duration;

use chrono::NaiveDateTime;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::{Serialize, Serializer};
use tokio_postgres::types::Json;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::event::{timestamp, Event, Kind, Payload};
use crate::transform::Batch;

/// A failure of the database, never of the events: the caller retries the whole batch.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("cannot build the connection pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("cannot get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// What a committed batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events in the batch, per kind (index: `Kind as usize`).
    pub events: [u64; 2],
    /// Rows inserted or changed in the entity tables, per kind.
    pub changed: [u64; 2],
    /// Events whose id was already in the raw zone (replays and duplicates).
    pub duplicates: u64,
}

const INSERT_EVENTS: &str = "
INSERT INTO events (event_id, type, entity_id, event_at, payload, source_file)
SELECT r.event_id, r.type, r.entity_id, r.event_at, r.payload, r.source_file
FROM jsonb_to_recordset($1::jsonb) AS r(
    event_id uuid, type text, entity_id bigint, event_at timestamp, payload jsonb, source_file text)
ORDER BY r.event_id
ON CONFLICT (event_id) DO NOTHING";

const UPSERT_USERS: &str = "
INSERT INTO users AS t (id, name, address, job, score, event_at, event_id)
SELECT r.id, r.name, r.address, r.job, r.score, r.event_at, r.event_id
FROM jsonb_to_recordset($1::jsonb) AS r(
    id bigint, name text, address text, job text, score double precision,
    event_at timestamp, event_id uuid)
ORDER BY r.id
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, address = EXCLUDED.address, job = EXCLUDED.job,
    score = EXCLUDED.score, event_at = EXCLUDED.event_at, event_id = EXCLUDED.event_id
WHERE (t.event_at, t.event_id) < (EXCLUDED.event_at, EXCLUDED.event_id)";

const UPSERT_CARDS: &str = "
INSERT INTO cards AS t (id, user_id, created_by_name, created_at, updated_at, active, event_at, event_id)
SELECT r.id, r.user_id, r.created_by_name, r.created_at, r.updated_at, r.active, r.event_at, r.event_id
FROM jsonb_to_recordset($1::jsonb) AS r(
    id bigint, user_id bigint, created_by_name text, created_at timestamp,
    updated_at timestamp, active boolean, event_at timestamp, event_id uuid)
ORDER BY r.id
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
        let mut pg: tokio_postgres::Config = url.parse().map_err(DbError::Url)?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(5));
        }
        pg.application_name("etl");
        let manager = Manager::from_config(
            pg,
            NoTls,
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
        let mut raw: Vec<RawRow<'_>> = batch.events.iter().map(RawRow).collect();
        raw.sort_unstable_by_key(|r| r.0.meta.event_id);
        for event in &batch.events {
            applied.events[event.kind() as usize] += 1;
        }

        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let insert_events = tx.prepare_cached(INSERT_EVENTS).await?;
        let inserted = tx.execute(&insert_events, &[&Json(&raw)]).await?;
        applied.duplicates = raw.len() as u64 - inserted;
        for kind in Kind::ALL {
            let rows: Vec<EntityRow<'_>> = batch.winners(kind).into_iter().map(EntityRow).collect();
            if rows.is_empty() {
                continue;
            }
            let upsert = tx.prepare_cached(upsert_sql(kind)).await?;
            applied.changed[kind as usize] = tx.execute(&upsert, &[&Json(&rows)]).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }
}

/// An event as a row of the raw zone.
#[derive(Debug)]
struct RawRow<'a>(&'a Event);

impl Serialize for RawRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Row<'a> {
            event_id: Uuid,
            #[serde(rename = "type")]
            kind: Kind,
            entity_id: i64,
            #[serde(with = "timestamp")]
            event_at: NaiveDateTime,
            payload: &'a serde_json::Value,
            source_file: String,
        }
        let event = self.0;
        let source_file = source_name(event);
        Row {
            event_id: event.meta.event_id,
            kind: event.kind(),
            entity_id: event.entity_id(),
            event_at: event.meta.event_at,
            payload: &event.raw_payload,
            source_file,
        }
        .serialize(s)
    }
}

/// `<type folder>/<file name>`: where the file was found, relative to the inbox.
fn source_name(event: &Event) -> String {
    let name = event
        .source
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    format!("{}/{}", event.kind().folder(), name)
}

/// An event as a row of its entity table: the typed payload plus the guard columns.
#[derive(Debug)]
struct EntityRow<'a>(&'a Event);

impl Serialize for EntityRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Row<'a, P> {
            #[serde(flatten)]
            payload: &'a P,
            #[serde(with = "timestamp")]
            event_at: NaiveDateTime,
            event_id: Uuid,
        }
        let (event_at, event_id) = (self.0.meta.event_at, self.0.meta.event_id);
        match &self.0.payload {
            Payload::User(payload) => Row {
                payload,
                event_at,
                event_id,
            }
            .serialize(s),
            Payload::Card(payload) => Row {
                payload,
                event_at,
                event_id,
            }
            .serialize(s),
        }
    }
}
