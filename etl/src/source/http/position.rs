//! Where an API source stands (the `http_positions` table), and the advisory lock that lets one
//! `etl` at a time pull a given source's schedule or backfill.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::page::Next;
use crate::config::http::Window;
use crate::load::DbError;

/// A run's position: its window, the next page to ask for, and what it has pulled so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Position {
    pub window: Window,
    /// None: the window's first page (or, when `done`, nothing left).
    pub next: Option<Next>,
    pub pages: i64,
    pub items: i64,
    pub done: bool,
}

impl Position {
    /// The start of `window`.
    pub fn start(window: Window) -> Position {
        Position {
            window,
            next: None,
            pages: 0,
            items: 0,
            done: false,
        }
    }
}

/// The stored position of `source`'s `run` (`schedule`, or `backfill <window>`).
pub async fn load(
    client: &tokio_postgres::Client,
    source: &str,
    run: &str,
) -> Result<Option<Position>, DbError> {
    let row = client
        .query_opt(
            "SELECT window_from, window_to, next, pages, items, done
               FROM http_positions WHERE source = $1 AND run = $2",
            &[&source, &run],
        )
        .await?;
    Ok(row.map(|row| Position {
        window: Window {
            from: row.get::<_, DateTime<Utc>>(0),
            to: row.get::<_, DateTime<Utc>>(1),
        },
        // A value this version cannot read (written by another) restarts the window: the
        // events it pulls again are the same events.
        next: row
            .get::<_, Option<Value>>(2)
            .and_then(|v| serde_json::from_value(v).ok()),
        pages: row.get(3),
        items: row.get(4),
        done: row.get(5),
    }))
}

/// Seconds since a page of `source` was last settled, by any replica; none if never.
pub async fn since_last_page(
    client: &tokio_postgres::Client,
    source: &str,
) -> Result<Option<f64>, DbError> {
    let row = client
        .query_one(
            "SELECT extract(epoch FROM now() - max(last_page_at))::float8
               FROM http_positions WHERE source = $1",
            &[&source],
        )
        .await?;
    Ok(row.get(0))
}

/// Stores `position` as `source`'s `run`'s; `page_settled` when a page has just been.
pub async fn save(
    client: &tokio_postgres::Client,
    source: &str,
    run: &str,
    position: &Position,
    page_settled: bool,
) -> Result<(), DbError> {
    let next = position
        .next
        .as_ref()
        .and_then(|n| serde_json::to_value(n).ok());
    client
        .execute(
            "INSERT INTO http_positions
                    (source, run, window_from, window_to, next, pages, items, done, last_page_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $9 THEN now() END)
             ON CONFLICT (source, run) DO UPDATE
                SET window_from = $3, window_to = $4, next = $5, pages = $6, items = $7,
                    done = $8, updated_at = now(),
                    last_page_at = CASE WHEN $9 THEN now() ELSE http_positions.last_page_at END",
            &[
                &source,
                &run,
                &position.window.from,
                &position.window.to,
                &next,
                &position.pages,
                &position.items,
                &position.done,
                &page_settled,
            ],
        )
        .await?;
    Ok(())
}

/// The session-level advisory lock of `source`'s `run`, held by this connection until
/// [`unlock`] (or until the connection ends: a replica that dies releases it). False if another
/// session holds it.
pub async fn try_lock(
    client: &tokio_postgres::Client,
    source: &str,
    run: &str,
) -> Result<bool, DbError> {
    advisory(client, "pg_try_advisory_lock", source, run).await
}

/// Releases the lock; false if this session did not hold it.
pub async fn unlock(
    client: &tokio_postgres::Client,
    source: &str,
    run: &str,
) -> Result<bool, DbError> {
    advisory(client, "pg_advisory_unlock", source, run).await
}

/// `function` (one of PostgreSQL's advisory lock functions) on the key of `source`'s `run`.
async fn advisory(
    client: &tokio_postgres::Client,
    function: &'static str,
    source: &str,
    run: &str,
) -> Result<bool, DbError> {
    let sql = format!("SELECT {function}(hashtextextended('etl http ' || $1 || ' ' || $2, 0))");
    let row = client.query_one(sql.as_str(), &[&source, &run]).await?;
    Ok(row.get(0))
}
