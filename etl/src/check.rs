//! `etl check`: the daemon's own validation, offline, with every reason printed.

use std::path::Path;

use crate::config::Config;
use crate::event::Kind;
use crate::extract::decode::refuse_future;
use crate::extract::schema::Schemas;
use crate::extract::{decode, RejectCode, Rejection};
use crate::source::inbox::read::{read_untrusted, Contents};

/// The verdict on one file, as printed. The file is read exactly as the daemon reads it (no
/// symlinks, no FIFOs, bounded), so `etl check` is as safe to point at anything.
pub fn check_file(path: &Path, schemas: &Schemas, config: &Config) -> Result<(), String> {
    // No settle window: offline, a truncated file is simply invalid.
    let bytes = match read_untrusted(path, config.max_file_bytes) {
        Ok(Contents::Bytes { bytes, .. }) => bytes,
        Ok(Contents::TooLarge(r)) => return Err(explained(&r)),
        Ok(Contents::Gone) => return Err("no such file".into()),
        Ok(Contents::Ignored(why)) => return Err(format!("ignored by the daemon: {why}")),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let verdict = |kind: Kind| {
        let event = decode::decode(kind, &bytes, schemas)?;
        let now = chrono::Utc::now().naive_utc();
        refuse_future(&event, now, config.max_future_skew())
    };
    // The folder decides the type, as it does for the daemon. Outside an inbox folder, try the
    // users schema and fall back to cards if the document says it is a card.
    let folder_kind = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(Kind::from_folder);
    let mut checked = verdict(folder_kind.unwrap_or(Kind::User));
    if folder_kind.is_none() {
        if let Err(r) = &checked {
            if r.code == RejectCode::WrongFolder {
                checked = verdict(Kind::Card);
            }
        }
    }
    checked.map_err(|r| explained(&r))
}

/// The reason as `etl check` prints it: the sentence, then the schema keyword that failed.
fn explained(r: &Rejection) -> String {
    let mut text = r.reason.clone();
    if let Some(schema) = r.schema_location.as_deref() {
        text.push_str(&format!(" [schema {schema}]"));
    }
    text
}
