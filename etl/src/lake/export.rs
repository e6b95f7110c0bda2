//! `etl export`: the curated zone (each type's current table, one consistent snapshot) and the
//! raw zone (`events`, incremental by ingestion time, Hive-partitioned by date) as Parquet.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::{Client, IsolationLevel, Row, Transaction};

use super::parquet::{select_list, LakeColumn, LakeType, ParquetFile};
use super::{LakeError, Watermark};
use crate::catalog::Catalog;
use crate::load::upsert::quoted_table;

/// Rows fetched from the server at a time: the export streams, whatever the table's size.
const FETCH_ROWS: i32 = 8192;

/// The file a type's snapshot is published as (replaced whole by each export).
pub const SNAPSHOT_FILE: &str = "snapshot.parquet";

/// One table's snapshot, written.
#[derive(Debug)]
pub struct Snapshot {
    pub type_name: String,
    pub rows: u64,
    pub path: PathBuf,
}

/// Exports the current table of every type (or only `only`) into `<dir>/<type>/snapshot.parquet`,
/// all from one REPEATABLE READ transaction, so the tables agree with each other. Each file
/// replaces the previous snapshot atomically.
pub async fn snapshots(
    client: &mut Client,
    catalog: &Catalog,
    only: Option<&str>,
    dir: &Path,
) -> Result<Vec<Snapshot>, LakeError> {
    let tx = snapshot_transaction(client).await?;
    let mut written = Vec::new();
    for kind in catalog
        .iter()
        .filter(|k| only.is_none_or(|o| o == k.name()))
    {
        let mut columns: Vec<LakeColumn> = kind
            .columns
            .iter()
            .map(|c| {
                let (lake_type, cast) = LakeType::of(&c.sql_type);
                LakeColumn::new(&c.name, lake_type, cast, true)
            })
            .collect();
        columns.push(LakeColumn::new("event_at", LakeType::Timestamp, "", true));
        columns.push(LakeColumn::new("event_id", LakeType::Text, "::text", true));
        let sql = format!(
            "SELECT {} FROM {} ORDER BY \"{}\"",
            select_list(&columns),
            quoted_table(&kind.table),
            kind.columns[kind.key].name
        );
        let path = dir.join(kind.name()).join(SNAPSHOT_FILE);
        // The lock is ours: a temporary file there is an interrupted export's.
        super::parquet::remove_temporaries(&dir.join(kind.name()))?;
        let mut file = ParquetFile::create(&path, &columns)?;
        let statement = tx.prepare(&sql).await?;
        let portal = tx.bind(&statement, &[]).await?;
        loop {
            let rows = tx.query_portal(&portal, FETCH_ROWS).await?;
            if rows.is_empty() {
                break;
            }
            file.write(&rows)?;
        }
        let rows = file.rows;
        let path = file.publish()?;
        written.push(Snapshot {
            type_name: kind.name().to_owned(),
            rows,
            path,
        });
    }
    tx.commit().await?;
    Ok(written)
}

/// What one raw-zone export added.
#[derive(Debug)]
pub struct RawExport {
    pub rows: u64,
    pub files: Vec<PathBuf>,
    /// The lake's raw zone now holds every row ingested before this instant.
    pub through: DateTime<Utc>,
}

/// The raw zone's columns: `events` as stored, the payload as its JSON text.
fn raw_columns() -> Vec<LakeColumn> {
    vec![
        LakeColumn::new("event_id", LakeType::Text, "::text", false),
        LakeColumn::new("type", LakeType::Text, "", false),
        LakeColumn::new("entity_id", LakeType::Int64, "", false),
        LakeColumn::new("event_at", LakeType::Timestamp, "", false),
        LakeColumn::new("payload", LakeType::Text, "::text", false),
        LakeColumn::new("source_file", LakeType::Text, "", false),
        LakeColumn::new("ingested_at", LakeType::TimestampUtc, "", false),
    ]
}

/// Exports the raw rows ingested since the lake's watermark (or since `since`, for a lake
/// folder's first raw export) into `<dir>/events/date=YYYY-MM-DD/part-<from>-<to>.parquet`, then
/// moves the watermark (`<dir>/events/_etl_watermark.json`). Each row reaches the lake once:
/// the range ends at a mark no later commit can fall behind (see [`mark`]), the next export
/// starts there, and files an interrupted export left beyond the watermark are removed first.
pub async fn raw(
    client: &mut Client,
    dir: &Path,
    since: Option<DateTime<Utc>>,
) -> Result<RawExport, LakeError> {
    let zone = dir.join("events");
    let state = Watermark::read(&zone)?;
    if let (Some(through), Some(since)) = (state.through, since) {
        return Err(LakeError::Refused(format!(
            "--since {}: {} already holds the raw zone through {}, and each export continues \
             from there (no gap, no second copy); --since only applies to a lake folder's first \
             raw export",
            since.to_rfc3339(),
            zone.display(),
            through.to_rfc3339()
        )));
    }
    let from = state.through.or(since);
    remove_orphans(&zone, state.through)?;
    let through = mark(client).await?;
    let mut export = RawExport {
        rows: 0,
        files: Vec::new(),
        through,
    };
    if from.is_some_and(|from| from >= through) {
        return Ok(export);
    }
    let columns = raw_columns();
    let sql = format!(
        "SELECT {} FROM events e
          WHERE ($1::timestamptz IS NULL OR e.ingested_at >= $1) AND e.ingested_at < $2
            AND NOT EXISTS (SELECT 1 FROM retired_events r WHERE r.event_id = e.event_id)
          ORDER BY e.ingested_at",
        select_list(&columns)
    );
    let name = format!(
        "part-{}-{}.parquet",
        from.map_or(0, |f| f.timestamp_micros()),
        through.timestamp_micros()
    );
    let ingested_at = columns.len() - 1;
    let tx = snapshot_transaction(client).await?;
    let statement = tx.prepare(&sql).await?;
    let portal = tx.bind(&statement, &[&from, &through]).await?;
    let mut open: Option<(NaiveDate, ParquetFile)> = None;
    loop {
        let rows = tx.query_portal(&portal, FETCH_ROWS).await?;
        if rows.is_empty() {
            break;
        }
        // Rows come in ingestion order: each run of one UTC date goes to that date's file.
        let mut start = 0;
        while start < rows.len() {
            let date = date_of(&rows[start], ingested_at)?;
            let end = start
                + rows[start..]
                    .iter()
                    .position(|r| date_of(r, ingested_at).map_or(true, |d| d != date))
                    .unwrap_or(rows.len() - start);
            if open.as_ref().is_none_or(|(d, _)| *d != date) {
                if let Some((_, file)) = open.take() {
                    export.rows += file.rows;
                    export.files.push(file.publish()?);
                }
                let path = zone.join(format!("date={date}")).join(&name);
                open = Some((date, ParquetFile::create(&path, &columns)?));
            }
            if let Some((_, file)) = open.as_mut() {
                file.write(&rows[start..end])?;
                crash_point!(LakeExportWritten);
            }
            start = end;
        }
    }
    if let Some((_, file)) = open.take() {
        export.rows += file.rows;
        export.files.push(file.publish()?);
    }
    crash_point!(LakeExportPublished);
    tx.commit().await?;
    Watermark {
        from: state.from.or(since),
        through: Some(through),
    }
    .write(&zone)?;
    Ok(export)
}

fn date_of(row: &Row, column: usize) -> Result<NaiveDate, LakeError> {
    Ok(row.try_get::<_, DateTime<Utc>>(column)?.date_naive())
}

/// An instant such that every row of `events` ingested before it is committed, and none will
/// ever be committed with an earlier `ingested_at`: a SHARE lock waits for every transaction
/// writing to `events` (they hold ROW EXCLUSIVE until they end), and a row's `ingested_at` is
/// the clock when its INSERT ran (migration 0005), which for any later insert is after the lock
/// was granted. Ingestion pauses for as long as the in-flight batches take to commit.
async fn mark(client: &mut Client) -> Result<DateTime<Utc>, LakeError> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL lock_timeout = '30s'; LOCK TABLE events IN SHARE MODE")
        .await?;
    let row = tx.query_one("SELECT clock_timestamp()", &[]).await?;
    tx.commit().await?;
    Ok(row.try_get(0)?)
}

/// Removes what an interrupted export left: temporary files, and part files whose range starts
/// at or after the committed watermark (their rows will be exported again from there).
fn remove_orphans(zone: &Path, through: Option<DateTime<Utc>>) -> Result<(), LakeError> {
    let entries = match std::fs::read_dir(zone) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let first_date = through.map(|t| t.date_naive());
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(date) = name
            .strip_prefix("date=")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        // Orphans hold rows from the watermark on, so they sit in its date's folder or later.
        if first_date.is_some_and(|first| date < first) {
            continue;
        }
        for file in std::fs::read_dir(entry.path())? {
            let file = file?;
            let name = file.file_name().to_string_lossy().into_owned();
            let orphan = if super::parquet::is_temporary(&name) {
                true
            } else {
                range_start(&name).is_some_and(|start| {
                    through.is_none_or(|through| start >= through.timestamp_micros())
                })
            };
            if orphan {
                tracing::warn!(file = %file.path().display(), "removing what an interrupted export left");
                std::fs::remove_file(file.path())?;
            }
        }
    }
    Ok(())
}

/// The start (µs) of the range a `part-<from>-<to>.parquet` name says it holds.
fn range_start(name: &str) -> Option<i64> {
    let range = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    range.split('-').next()?.parse().ok()
}

/// A read-only REPEATABLE READ transaction: every statement in it reads the same snapshot, so
/// the tables it exports agree with each other.
async fn snapshot_transaction(client: &mut Client) -> Result<Transaction<'_>, LakeError> {
    Ok(client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

#[cfg(test)]
mod tests {
    use super::range_start;

    #[test]
    fn part_names_say_where_their_range_starts() {
        assert_eq!(range_start("part-0-1700000000000000.parquet"), Some(0));
        assert_eq!(range_start("part-17-18.parquet"), Some(17));
        assert_eq!(range_start("snapshot.parquet"), None);
        assert_eq!(range_start("part-x-1.parquet"), None);
    }
}
