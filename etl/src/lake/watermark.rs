//! The raw zone's commit point: `_etl_watermark.json`, written after the files it covers.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::LakeError;
use super::parquet;

/// What the raw zone of a lake folder holds: every row ingested in `[from, through)` (`from`
/// unset: since the beginning). Kept in `<lake>/events/_etl_watermark.json`, written after the
/// files it covers, so it is the export's commit point.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    pub from: Option<DateTime<Utc>>,
    pub through: Option<DateTime<Utc>>,
}

const WATERMARK_FILE: &str = "_etl_watermark.json";

impl Watermark {
    /// The watermark of the raw zone folder `zone` (empty if it has none yet).
    pub fn read(zone: &Path) -> Result<Watermark, LakeError> {
        match std::fs::read(zone.join(WATERMARK_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                LakeError::Refused(format!(
                    "{} is not a watermark this version can read ({e}); move the folder aside",
                    zone.join(WATERMARK_FILE).display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Watermark::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes it atomically (temporary file, fsync, rename, fsync of the folder).
    pub fn write(&self, zone: &Path) -> Result<(), LakeError> {
        use std::io::Write;
        std::fs::create_dir_all(zone)?;
        let path = zone.join(WATERMARK_FILE);
        let temporary = zone.join(format!(".{WATERMARK_FILE}.{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, &path)?;
        parquet::sync_dir(&path)?;
        Ok(())
    }
}
