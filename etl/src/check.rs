//! `etl check`: the daemon's own validation, offline, with every reason printed.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::event::Kind;
use crate::extract::read::{intake, Intake, Limits};
use crate::extract::schema::Schemas;
use crate::extract::RejectCode;

/// The verdict on one file, as printed. The file is read exactly as the daemon reads it (no
/// symlinks, no FIFOs, bounded), so `etl check` is as safe to point at anything.
pub fn check_file(path: &Path, schemas: &Schemas, config: &Config) -> Result<(), String> {
    // No settle window: offline, a truncated file is simply invalid.
    let limits = Limits {
        max_file_bytes: config.max_file_bytes,
        settle: Duration::ZERO,
        max_future_skew: config.max_future_skew(),
    };
    // The folder decides the type, as it does for the daemon. Outside an inbox folder, try the
    // users schema and fall back to cards if the document says it is a card.
    let folder_kind = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(Kind::from_folder);
    let mut verdict = intake(path, folder_kind.unwrap_or(Kind::User), limits, schemas);
    if folder_kind.is_none() {
        if let Ok(Intake::Rejected(r)) = &verdict {
            if r.code == RejectCode::WrongFolder {
                verdict = intake(path, Kind::Card, limits, schemas);
            }
        }
    }
    match verdict {
        Ok(Intake::Event(_)) => Ok(()),
        Ok(Intake::Rejected(r)) => {
            let mut text = r.reason.clone();
            if let Some(schema) = r.schema_location.as_deref() {
                text.push_str(&format!(" [schema {schema}]"));
            }
            Err(text)
        }
        Ok(Intake::Unsettled) => Err("still being written".into()),
        Ok(Intake::Gone) => Err("no such file".into()),
        Ok(Intake::Ignored(why)) => Err(format!("ignored by the daemon: {why}")),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}
