//! The lake's scheduled pass inside `etl run`: the export, then the retirement of raw rows the
//! lake holds, one replica at a time.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::housekeeping::lock;
use crate::lake::{export, retention, LakeError, Watermark};
use crate::load::connect;
use crate::ops::metrics::{LAKE_EXPORTED_ROWS, LAKE_LAST_EXPORT, RAW_RETIRED};

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
            retired_ids: Duration::from_secs(config.lake.retired_ids_days.max(1) * 86_400),
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
    if !lock::take(&client, lock::LAKE).await? {
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
