//! Retiring the raw zone: rows the lake already holds and older than the retention leave the
//! warehouse in short batches, their ids kept (without payload) in `retired_events` so a
//! replayed file or a re-pulled API window is still known; ids older than their own horizon are
//! forgotten, and an event that old is then refused instead ([`Horizon`]).

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use tokio_postgres::Client;

use super::{LakeError, Watermark};

/// Rows deleted per transaction: each batch locks only its own rows, briefly.
pub const BATCH: i64 = 5_000;

/// How long a new horizon is announced before the ids it covers are deleted: longer than
/// [`REFRESH`], so every running decoder refuses those events before their ids are gone.
const ANNOUNCE: &str = "1 minute";

/// How often a running daemon re-reads the horizon.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Deletes the raw rows ingested before `older_than` that the lake at `lake` holds (ingested
/// inside its watermark's range), recording their ids in `retired_events` in the same
/// transaction. Returns how many it retired.
pub async fn retire(
    client: &Client,
    lake: &Watermark,
    older_than: DateTime<Utc>,
) -> Result<u64, LakeError> {
    let Some(through) = lake.through else {
        return Ok(0);
    };
    let bound = older_than.min(through);
    let statement = client
        .prepare(
            "WITH batch AS (
                 SELECT event_id FROM events
                  WHERE ingested_at < $1 AND ($2::timestamptz IS NULL OR ingested_at >= $2)
                  LIMIT $3),
             gone AS (
                 DELETE FROM events e USING batch b WHERE e.event_id = b.event_id
                 RETURNING e.event_id, e.type, e.entity_id, e.event_at),
             kept AS (
                 INSERT INTO retired_events (event_id, type, entity_id, event_at)
                 SELECT * FROM gone ON CONFLICT (event_id) DO NOTHING)
             SELECT count(*) FROM gone",
        )
        .await?;
    let mut retired = 0u64;
    loop {
        crash_point!(LakeRetire);
        let row = client
            .query_one(&statement, &[&bound, &lake.from, &BATCH])
            .await?;
        let n: i64 = row.try_get(0)?;
        retired += n as u64;
        if n < BATCH {
            return Ok(retired);
        }
    }
}

/// Forgets retired ids: first those the horizon announced at least [`ANNOUNCE`] ago covers,
/// then moves the horizon up to the newest `event_at` among ids retired more than `keep` ago.
/// Returns how many ids it deleted.
pub async fn forget(client: &Client, keep: Duration) -> Result<u64, LakeError> {
    let delete = client
        .prepare(&format!(
            "WITH batch AS (
                 SELECT r.event_id FROM retired_events r, raw_horizon h
                  WHERE h.set_at < now() - interval '{ANNOUNCE}' AND r.event_at <= h.forgotten_through
                  LIMIT $1)
             DELETE FROM retired_events r USING batch b WHERE r.event_id = b.event_id"
        ))
        .await?;
    let mut forgotten = 0;
    loop {
        let n = client.execute(&delete, &[&BATCH]).await?;
        forgotten += n;
        if n < BATCH as u64 {
            break;
        }
    }
    let keep_secs = keep.as_secs_f64();
    client
        .execute(
            "UPDATE raw_horizon h SET forgotten_through = s.newest, set_at = now()
               FROM (SELECT max(event_at) AS newest FROM retired_events
                      WHERE retired_at < now() - make_interval(secs => $1)) s
              WHERE s.newest IS NOT NULL
                AND (h.forgotten_through IS NULL OR s.newest > h.forgotten_through)",
            &[&keep_secs],
        )
        .await?;
    Ok(forgotten)
}

// The horizon itself is the decoder's (it refuses events at it); retention stores and loads it.
pub use crate::decode::Horizon;

/// Reads the stored horizon into `horizon`.
pub async fn load_horizon(horizon: &Horizon, client: &Client) -> Result<(), LakeError> {
    let row = client
        .query_opt("SELECT forgotten_through FROM raw_horizon", &[])
        .await?;
    let through = match row {
        Some(row) => row.try_get::<_, Option<NaiveDateTime>>(0)?,
        None => None,
    };
    horizon.set(through);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_starts_empty_and_keeps_what_is_set() {
        let horizon = Horizon::default();
        assert_eq!(horizon.get(), None);
        let at = chrono::NaiveDate::from_ymd_opt(2026, 1, 2)
            .and_then(|d| d.and_hms_opt(3, 4, 5))
            .expect("a date");
        horizon.clone().set(Some(at));
        assert_eq!(horizon.get(), Some(at));
        horizon.set(None);
        assert_eq!(horizon.get(), None);
    }
}
