//! The dead-letter place of the sources that have no `failed/` folder: the `rejected_events`
//! table. A broker message leaves the stream, and an API item lets its page's position move on,
//! only by a commit or by a row here (its bytes as received, its reason). `etl dead-letters`
//! lists the rows and replays the broker's into the stream after a fix (an API source's are
//! replayed by pulling their window again: `etl pull`).

use async_nats::jetstream;
use serde_json::Value;

use crate::broker::BrokerError;
use crate::config::Config;
use crate::load::{DbError, Warehouse};
use crate::rejection::Rejection;

/// One record that could not be loaded.
pub struct DeadLetter<'a> {
    /// The kind of source: `jetstream` or `http`.
    pub source: &'a str,
    /// Where it was held: `<stream>#<sequence>`, or `<landed page>:<line>`.
    pub origin: &'a str,
    /// The broker subject, or the API source's name.
    pub subject: &'a str,
    /// The type its subject or source names, declared or not.
    pub type_name: Option<&'a str>,
    pub bytes: &'a [u8],
    pub rejection: &'a Rejection,
}

/// Stores `letter`; only then may the message be terminated in the stream (or the page's
/// position move past it). False if the same record was already dead-lettered for the same
/// reason (pulled or delivered again): it is not reported twice.
pub async fn store(
    client: &tokio_postgres::Client,
    letter: &DeadLetter<'_>,
) -> Result<bool, DbError> {
    let reason = serde_json::to_value(letter.rejection).unwrap_or(Value::Null);
    let event_id = serde_json::from_slice::<Value>(letter.bytes)
        .ok()
        .and_then(|doc| {
            doc.pointer("/metadata/event_id")?
                .as_str()
                .map(str::to_owned)
        });
    let inserted = client
        .execute(
            "INSERT INTO rejected_events (source, origin, subject, type, event_id, code, reason, bytes)
             VALUES ($8, $1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (source, subject, code, md5(bytes)) DO NOTHING",
            &[
                &letter.origin,
                &letter.subject,
                &letter.type_name,
                &event_id,
                &letter.rejection.code.as_str(),
                &reason,
                &letter.bytes,
                &letter.source,
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// Which dead letters a command acts on: all, or those of one type and/or whose reason (or
/// code) contains a text, case-insensitively.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub type_name: Option<String>,
    /// Only those of one kind of source (`jetstream`, `http`).
    pub source: Option<String>,
    pub reason: Option<String>,
}

/// A stored dead letter, as listed.
#[derive(Debug)]
pub struct Stored {
    pub id: i64,
    /// `jetstream` or `http`.
    pub source: String,
    pub rejected_at: String,
    pub subject: String,
    pub type_name: Option<String>,
    pub event_id: Option<String>,
    pub code: String,
    pub reason: String,
    pub bytes: Vec<u8>,
}

/// The types the dead letters are stored under: the declared ones, and the undeclared types
/// named by the subjects of broker messages that were dead-lettered for it.
pub async fn types_held(warehouse: &Warehouse) -> Result<Vec<String>, DbError> {
    let client = warehouse.client().await?;
    let rows = client
        .query(
            "SELECT DISTINCT type FROM rejected_events WHERE type IS NOT NULL ORDER BY type",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The dead letters matching `filter`, oldest first.
pub async fn list(warehouse: &Warehouse, filter: &Filter) -> Result<Vec<Stored>, DbError> {
    let client = warehouse.client().await?;
    let pattern = filter.reason.as_ref().map(|r| format!("%{r}%"));
    let rows = client
        .query(
            "SELECT id, to_char(rejected_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.MSOF'), subject, type,
                    event_id, code, reason->>'reason', bytes, source
               FROM rejected_events
              WHERE ($1::text IS NULL OR type = $1)
                AND ($2::text IS NULL OR reason->>'reason' ILIKE $2 OR code ILIKE $2)
                AND ($3::text IS NULL OR source = $3)
              ORDER BY id",
            &[&filter.type_name, &pattern, &filter.source],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Stored {
            id: r.get(0),
            rejected_at: r.get(1),
            subject: r.get(2),
            type_name: r.get(3),
            event_id: r.get(4),
            code: r.get(5),
            reason: r.get::<_, Option<String>>(6).unwrap_or_default(),
            bytes: r.get(7),
            source: r.get(8),
        })
        .collect())
}

/// Why a replay of broker dead letters stopped (those replayed before it are gone from the
/// table; the rest stay).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Broker(#[from] BrokerError),
    #[error("{0}")]
    Db(#[from] DbError),
}

/// Publishes each matching broker dead letter back to its subject, then deletes its row. The
/// publish's message id is `replay-<row id>`, not the event id (which the broker's duplicate
/// window may still hold from the first delivery), so a replay interrupted between publish and
/// delete and run again is dropped as a duplicate. Returns how many were replayed.
pub async fn replay(
    warehouse: &Warehouse,
    js: &jetstream::Context,
    config: &Config,
    filter: &Filter,
) -> Result<usize, ReplayError> {
    crate::broker::ensure_stream(js, config).await?;
    let filter = Filter {
        source: Some("jetstream".into()),
        ..filter.clone()
    };
    let letters = list(warehouse, &filter).await?;
    let client = warehouse.client().await?;
    for letter in &letters {
        let publish = jetstream::message::PublishMessage::build()
            .payload(letter.bytes.clone().into())
            .message_id(format!("replay-{}", letter.id));
        js.send_publish(letter.subject.clone(), publish)
            .await
            .map_err(BrokerError::from)?
            .await
            .map_err(BrokerError::from)?;
        client
            .execute("DELETE FROM rejected_events WHERE id = $1", &[&letter.id])
            .await
            .map_err(DbError::from)?;
    }
    Ok(letters.len())
}
