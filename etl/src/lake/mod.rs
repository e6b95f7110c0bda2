//! The lake: the warehouse exported as Parquet files for analysts and batch jobs — the curated
//! zone (each type's current table) and the raw zone (`events`) — and the retention that lets
//! the raw zone leave the warehouse once the lake holds it.
//!
//! [`export`] writes the files, [`retention`] retires old raw rows and keeps their ids;
//! `crate::housekeeping::lake` runs both inside `etl run`, one replica at a time.

pub mod error;
pub mod export;
pub mod parquet;
pub mod retention;
pub mod watermark;

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::housekeeping::lock;
use crate::load::connect;
pub use error::LakeError;
pub use retention::Horizon;
pub use watermark::Watermark;

/// `etl export`: waits for the lake's lock, then exports on its own connection.
pub async fn export_once(
    config: &Config,
    catalog: &Catalog,
    dir: &Path,
    only: Option<&str>,
    since: Option<DateTime<Utc>>,
) -> Result<Exported, LakeError> {
    let mut client = connect::session(config).await?;
    lock::wait(&client, lock::LAKE).await?;
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
