//! The lake: the warehouse exported as Parquet files for analysts and batch jobs — the curated
//! zone (each type's current table) and the raw zone (`events`) — and the retention that lets
//! the raw zone leave the warehouse once the lake holds it.
//!
//! [`export`] writes the files, [`retention`] retires old raw rows and keeps their ids;
//! [`schedule`] runs both inside `etl run`, one replica at a time (a PostgreSQL advisory lock).

pub mod error;
pub mod export;
pub mod parquet;
pub mod retention;
pub mod watermark;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::load::connect;
use crate::ops::metrics::{LAKE_EXPORTED_ROWS, LAKE_LAST_EXPORT, RAW_RETIRED};
pub use error::LakeError;
pub use retention::Horizon;
pub use watermark::Watermark;

/// The lake's advisory lock: one export or retention pass at a time, over every replica and
/// `etl export`. Session-level, so a process that dies releases it with its connection.
const LOCK: &str = "etl lake";

/// `etl export`: waits for the lake's lock, then exports on its own connection.
pub async fn export_once(
    config: &Config,
    catalog: &Catalog,
    dir: &Path,
    only: Option<&str>,
    since: Option<DateTime<Utc>>,
) -> Result<Exported, LakeError> {
    let mut client = connect::session(config).await?;
    connect::advisory_lock(&client, LOCK).await?;
    let snapshots = export::snapshots(&mut client, catalog, only, dir).await?;
    // The raw zone is one table for every type, with one watermark: `--type` refreshes one
    // table's snapshot and leaves the raw zone to a whole export.
    let raw = match only {
        Some(_) => None,
        None => Some(export::raw(&mut client, dir, since).await?),
    };
    Ok(Exported { snapshots, raw })
}

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    pub snapshots: Vec<export::Snapshot>,
    pub raw: Option<export::RawExport>,
}

/// The lake settings of `etl run`.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub dir: PathBuf,
    pub every: Duration,
    /// Raw rows older than this leave the warehouse (after the lake has them); None: kept.
    pub raw_retention: Option<Duration>,
    pub retired_ids: Duration,
}

impl Schedule {
    /// The schedule `config` asks for, if any.
    pub fn from_config(config: &Config) -> Option<Schedule> {
        (config.lake.export_interval_secs > 0).then(|| Schedule {
            dir: config.lake_dir(),
            every: Duration::from_secs(config.lake.export_interval_secs),
            raw_retention: (config.lake.raw_retention_days > 0)
                .then(|| Duration::from_secs(config.lake.raw_retention_days * 86_400)),
            retired_ids: Duration::from_secs(config.lake.retired_ids_days * 86_400),
        })
    }
}

/// Inside `etl run`: a pass at start-up and then every `schedule.every`, each on a fresh
/// connection holding the lake's lock (a replica that finds it held skips its turn). A failed
/// pass is logged and tried again next time; it never stops ingestion.
pub async fn schedule(
    config: Config,
    catalog: Catalog,
    schedule: Schedule,
    stop: CancellationToken,
) {
    loop {
        match pass(&config, &catalog, &schedule).await {
            Ok(Some(report)) => tracing::info!(
                dir = %schedule.dir.display(),
                tables = report.tables,
                table_rows = report.table_rows,
                raw_rows = report.raw_rows,
                raw_through = %report.raw_through.to_rfc3339(),
                retired = report.retired,
                forgotten = report.forgotten,
                "lake export"
            ),
            Ok(None) => tracing::debug!("lake pass skipped: another replica holds the lock"),
            Err(error) => {
                tracing::warn!(%error, dir = %schedule.dir.display(), "lake pass failed; trying again at the next interval")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(schedule.every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// What a scheduled pass did.
#[derive(Debug)]
pub struct PassReport {
    pub tables: usize,
    pub table_rows: u64,
    pub raw_rows: u64,
    pub raw_through: DateTime<Utc>,
    pub retired: u64,
    pub forgotten: u64,
}

/// One pass: snapshots, the raw increment, then (with a retention) the retirement of raw rows
/// the lake now holds, and the forgetting of old retired ids. None if another process holds the
/// lake's lock.
pub async fn pass(
    config: &Config,
    catalog: &Catalog,
    schedule: &Schedule,
) -> Result<Option<PassReport>, LakeError> {
    let mut client = connect::session(config).await?;
    if !connect::try_advisory_lock(&client, LOCK).await? {
        return Ok(None);
    }
    let snapshots = export::snapshots(&mut client, catalog, None, &schedule.dir).await?;
    let raw = export::raw(&mut client, &schedule.dir, None).await?;
    metrics::counter!(LAKE_EXPORTED_ROWS, "zone" => "raw").increment(raw.rows);
    let (mut retired, mut forgotten) = (0, 0);
    if let Some(retention) = schedule.raw_retention {
        let lake = Watermark::read(&schedule.dir.join("events"))?;
        let older_than =
            Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX / 2);
        retired = retention::retire(&client, &lake, older_than).await?;
        forgotten = retention::forget(&client, schedule.retired_ids).await?;
        metrics::counter!(RAW_RETIRED).increment(retired);
    }
    metrics::gauge!(LAKE_LAST_EXPORT).set(Utc::now().timestamp() as f64);
    // The connection ends here, and the lock with it.
    Ok(Some(PassReport {
        tables: snapshots.len(),
        table_rows: snapshots.iter().map(|s| s.rows).sum(),
        raw_rows: raw.rows,
        raw_through: raw.through,
        retired,
        forgotten,
    }))
}

/// Keeps `horizon` equal to the stored one, re-read every [`retention::REFRESH`] through the
/// warehouse's pool.
pub async fn follow_horizon(
    warehouse: crate::load::Warehouse,
    horizon: Horizon,
    stop: CancellationToken,
) {
    loop {
        let loaded = async {
            let client = warehouse.client().await?;
            retention::load_horizon(&horizon, &client).await
        };
        let before = horizon.get();
        match loaded.await {
            Ok(()) if horizon.get() != before => tracing::info!(
                forgotten_through = ?horizon.get(),
                "the raw zone's horizon moved: events at or before it are refused (beyond_horizon)"
            ),
            Ok(()) => {}
            Err(error) => tracing::warn!(%error, "cannot read the raw zone's horizon"),
        }
        tokio::select! {
            _ = tokio::time::sleep(retention::REFRESH) => {}
            _ = stop.cancelled() => return,
        }
    }
}
