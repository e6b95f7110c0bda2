//! `etl check`: the daemon's own validation, offline, with every reason printed. A file the
//! daemon would not load whatever its contents (a FIFO, a file in an inbox folder that names no
//! declared type) is not "ok" either: the line says why it would be left alone.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::decode::Decoder;
use crate::rejection::Rejection;
use crate::source::inbox::read::{read_untrusted, Contents};

/// The verdict on one file, as printed. The file is read exactly as the daemon reads it (no
/// symlinks, no FIFOs, bounded), so `etl check` is as safe to point at anything.
pub fn check_file(path: &Path, catalog: &Catalog, config: &Config) -> Result<(), Unloadable> {
    // No settle window: offline, a truncated file is simply invalid.
    let bytes = match read_untrusted(path, config.inbox.max_file_bytes) {
        Ok(Contents::Bytes { bytes, .. }) => bytes,
        Ok(Contents::TooLarge(r)) => return Err(Unloadable::Rejected(r)),
        Ok(Contents::Gone) => return Err(Unloadable::Gone),
        Ok(Contents::Ignored(why)) => return Err(Unloadable::Ignored(why)),
        Err(e) => return Err(Unloadable::Unreadable(e)),
    };
    // A file the daemon would never read: in an inbox folder that names no declared type.
    if let Some(folder) = undeclared_inbox_folder(path, catalog, config) {
        return Err(Unloadable::Undeclared {
            folder: crate::names::encode(&folder).into_owned(),
            declared: catalog.names(),
        });
    }
    let decoder = Decoder {
        max_future_skew: config.max_future_skew(),
        horizon: Default::default(),
    };
    // The folder decides the type, as it does for the daemon. Outside a type's folder, the
    // document's own `metadata.type` does.
    let folder = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|name| catalog.get(name));
    let declared = declared_type(&bytes);
    let kind = match (folder, declared.as_deref()) {
        (Some(kind), _) => Some(kind),
        (None, Some(declared)) => match catalog.by_envelope(declared) {
            Some(kind) => Some(kind),
            None => {
                return Err(Unloadable::UnknownType {
                    envelope: declared.to_owned(),
                    declared: catalog.names(),
                })
            }
        },
        // Not JSON, or no type in it: any type's decoder says what is wrong with it first.
        (None, None) => catalog.iter().next(),
    };
    let Some(kind) = kind else {
        return Err(Unloadable::NoTypes);
    };
    decoder
        .check(kind, &bytes)
        .map(drop)
        .map_err(Unloadable::Rejected)
}

/// Why the daemon would not load a file, as `etl check` prints it.
#[derive(Debug, thiserror::Error)]
pub enum Unloadable {
    /// The daemon would refuse it, for this reason.
    #[error("{}", explained(.0))]
    Rejected(Rejection),
    #[error("no such file")]
    Gone,
    /// Not a file the daemon reads (a FIFO, a symlink…).
    #[error("ignored by the daemon: {0}")]
    Ignored(&'static str),
    #[error("cannot read: {0}")]
    Unreadable(std::io::Error),
    #[error(
        "ignored by the daemon: it is in the inbox folder {folder}/, which names no declared type \
         (declared: {declared}); it stays there unread until a type of that name is declared \
         (types/, then a restart) or it is moved into its type's folder"
    )]
    Undeclared { folder: String, declared: String },
    #[error("metadata.type is {envelope:?}, which no declared type ({declared}) uses")]
    UnknownType { envelope: String, declared: String },
    #[error("no event type is declared")]
    NoTypes,
}

/// The name of the folder `path` is in, if that folder is an inbox folder naming no declared
/// type: its parent is the configured inbox (`<data_dir>/events/inbox/`), or is laid out like
/// one (`…/events/inbox/<folder>/<file>`, e.g. another host's data folder).
fn undeclared_inbox_folder(path: &Path, catalog: &Catalog, config: &Config) -> Option<OsString> {
    // Absolute, so that `etl check a.json` run inside the folder is judged the same way.
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let folder = parent.unwrap_or(Path::new(".")).canonicalize().ok()?;
    let name = folder.file_name()?;
    if name.to_str().is_some_and(|n| catalog.get(n).is_some()) {
        return None;
    }
    let root = folder.parent()?;
    let shaped_like_an_inbox = root.file_name() == Some(OsStr::new("inbox"))
        && root.parent().and_then(Path::file_name) == Some(OsStr::new("events"));
    let is_the_inbox = || config.inbox_root().canonicalize().ok().as_deref() == Some(root);
    (shaped_like_an_inbox || is_the_inbox()).then(|| name.to_owned())
}

/// The `metadata.type` a document declares, if it is JSON and has one.
fn declared_type(bytes: &[u8]) -> Option<String> {
    let document = crate::decode::json::parse(std::str::from_utf8(bytes).ok()?).ok()?;
    Some(document.pointer("/metadata/type")?.as_str()?.to_owned())
}

/// The reason as `etl check` prints it: the sentence, then the schema keyword that failed.
fn explained(r: &Rejection) -> String {
    let mut text = r.reason.clone();
    if let Some(schema) = r.schema_location.as_deref() {
        text.push_str(&format!(" [schema {schema}]"));
    }
    text
}
