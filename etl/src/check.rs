//! `etl check`: the daemon's own validation, offline, with every reason printed.

use std::path::Path;
use std::time::Duration;

use crate::event::Kind;
use crate::extract::read::{intake, Intake, Limits};
use crate::extract::schema::Schemas;

/// The verdict on one file, as printed.
pub fn check_file(path: &Path, schemas: &Schemas, max_file_bytes: u64) -> Result<(), String> {
    let kind = kind_for(path).ok_or_else(|| {
        "cannot tell its type: it is not in a users/ or cards/ folder and has no readable metadata.type".to_owned()
    })?;
    // No settle window: offline, a truncated file is simply invalid.
    let limits = Limits {
        max_file_bytes,
        settle: Duration::ZERO,
    };
    match intake(path, kind, limits, schemas) {
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

/// The folder decides, as it does for the daemon; outside an inbox, `metadata.type` does.
fn kind_for(path: &Path) -> Option<Kind> {
    let folder = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    if let Some(kind) = folder.and_then(Kind::from_folder) {
        return Some(kind);
    }
    let bytes = std::fs::read(path).ok()?;
    let document: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let declared = document.pointer("/metadata/type")?.as_str()?;
    Kind::ALL.into_iter().find(|k| k.as_str() == declared)
}
